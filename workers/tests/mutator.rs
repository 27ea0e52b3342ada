//! The mutator against real Postgres, without the bus: driven with
//! `drain_topology` / `run_until_idle`, so every assertion is deterministic.

use serde_json::{Value, json};
use sqlx::PgPool;
use switchyard_bus::Doorbell;
use switchyard_domain::status::{MutationStatus, TopologyStatus};
use switchyard_workers::mutator::{BatchLimits, Mutator, MutatorConfig, batch};
use uuid::Uuid;

fn mutator(pool: &PgPool, batch_size: usize) -> Mutator {
    let (doorbell, _relay_gone) = Doorbell::channel(1);
    Mutator {
        pool: pool.clone(),
        doorbell,
        config: MutatorConfig {
            batch_size,
            ..MutatorConfig::default()
        },
        limits: switchyard_domain::json::Limits {
            max_bytes: 64 * 1024,
            max_depth: 64,
        },
        finished: Default::default(),
    }
}

async fn topology(pool: &PgPool) -> Uuid {
    sqlx::query_scalar!(
        "insert into topologies (id, name, document) values ($1, 't', '{}') returning id",
        Uuid::now_v7(),
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Enqueues like the API does (seq from the topology row), without an outbox row.
async fn enqueue(pool: &PgPool, topology: Uuid, ops: Value) -> Uuid {
    sqlx::query_scalar!(
        "with next as (update topologies set last_seq = last_seq + 1, status = 'pending'
                       where id = $2 returning last_seq)
         insert into mutations (id, topology_id, seq, ops, actor)
         select $1, $2, last_seq, $3, 'test' from next returning id",
        Uuid::now_v7(),
        topology,
        ops,
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// (mutation status, audit rows for it, outbox events naming it)
async fn trail(pool: &PgPool, mutation: Uuid) -> (MutationStatus, i64, i64) {
    let row = sqlx::query!(
        r#"select status as "status: MutationStatus",
                (select count(*) from mutation_audit where mutation_id = $1) as "audit!",
                (select count(*) from outbox where event->'data'->>'mutation_id' = $1::text) as "events!"
         from mutations where id = $1"#,
        mutation,
    )
    .fetch_one(pool)
    .await
    .unwrap();
    (row.status, row.audit, row.events)
}

#[sqlx::test(migrations = "../migrations")]
async fn each_outcome_commits_with_its_audit_row_and_event(pool: PgPool) {
    let t = topology(&pool).await;
    let ok = enqueue(&pool, t, json!([{"op": "add", "path": "/a", "value": 1}])).await;
    let bad = enqueue(&pool, t, json!([{"op": "remove", "path": "/missing"}])).await;
    let also_ok = enqueue(&pool, t, json!([{"op": "add", "path": "/b", "value": 2}])).await;
    // Batches of two: the three mutations commit in two transactions.
    assert_eq!(mutator(&pool, 2).run_until_idle().await.unwrap(), 3);

    assert_eq!(trail(&pool, ok).await, (MutationStatus::Applied, 1, 1));
    assert_eq!(trail(&pool, bad).await, (MutationStatus::Failed, 1, 1));
    assert_eq!(trail(&pool, also_ok).await, (MutationStatus::Applied, 1, 1));
    let statuses: Vec<Value> = sqlx::query_scalar!(
        r#"select event->'data' as "data!" from outbox where event->>'type' = 'status' order by position"#,
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(statuses.len(), 2, "one status event per committed batch");
    assert_eq!(statuses[1]["version"], 2);
    assert_eq!(statuses[1]["status"], "idle");
    // Running again finds nothing to do and writes nothing.
    assert_eq!(mutator(&pool, 2).run_until_idle().await.unwrap(), 0);
    assert_eq!(trail(&pool, ok).await, (MutationStatus::Applied, 1, 1));
}

#[sqlx::test(migrations = "../migrations")]
async fn a_batch_that_cannot_record_its_audit_commits_nothing(pool: PgPool) {
    let t = topology(&pool).await;
    let first = enqueue(&pool, t, json!([{"op": "add", "path": "/a", "value": 1}])).await;
    let second = enqueue(&pool, t, json!([{"op": "add", "path": "/b", "value": 1}])).await;
    // A stray audit row for the second mutation makes the batch's audit insert fail.
    sqlx::query!(
        "insert into mutation_audit (mutation_id, topology_id, seq, outcome, before_version, after_version, actor, ops)
         values ($1, $2, 2, 'applied', 0, 1, 'stray', '[]')",
        second,
        t,
    )
    .execute(&pool)
    .await
    .unwrap();

    let limits = BatchLimits {
        size: 10,
        document: mutator(&pool, 10).limits,
        lock_timeout: std::time::Duration::from_secs(1),
    };
    assert!(
        batch::run(&pool, &switchyard_bus::Doorbell::channel(1).0, t, limits)
            .await
            .is_err()
    );
    assert_eq!(trail(&pool, first).await, (MutationStatus::Pending, 0, 0));
    let topology = sqlx::query!("select version, document from topologies")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!((topology.version, topology.document), (0, json!({})));
}

/// Makes Postgres refuse to store a document holding the key `poison`, as a store
/// that cannot hold a result would (a data exception: retrying does not cure it).
async fn refuse_poisoned_documents(pool: &PgPool) {
    sqlx::query!(
        "create function refuse_poison() returns trigger language plpgsql as $$
         begin
           if new.document ? 'poison' then
             raise exception 'this store cannot hold it' using errcode = '22023';
           end if;
           return new;
         end $$",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query!(
        "create trigger refuse_poison before update on topologies
         for each row execute function refuse_poison()",
    )
    .execute(pool)
    .await
    .unwrap();
}

#[sqlx::test(migrations = "../migrations")]
async fn a_mutation_whose_outcome_cannot_be_stored_fails_with_a_reason_and_the_rest_apply(
    pool: PgPool,
) {
    refuse_poisoned_documents(&pool).await;
    let t = topology(&pool).await;
    let before = enqueue(&pool, t, json!([{"op": "add", "path": "/a", "value": 1}])).await;
    let poison = enqueue(
        &pool,
        t,
        json!([{"op": "add", "path": "/poison", "value": 1}]),
    )
    .await;
    let after = enqueue(&pool, t, json!([{"op": "add", "path": "/b", "value": 2}])).await;

    // One drain: the batch of three fails, the mutations are retried one at a time, and
    // the one at fault is given up. Nothing is left pending, nothing retried forever.
    let drain = mutator(&pool, 10).drain_topology(t).await.unwrap();
    assert_eq!((drain.finished, drain.more), (3, false), "{drain:?}");
    assert_eq!(trail(&pool, before).await, (MutationStatus::Applied, 1, 1));
    assert_eq!(trail(&pool, poison).await, (MutationStatus::Failed, 1, 1));
    assert_eq!(trail(&pool, after).await, (MutationStatus::Applied, 1, 1));
    let error: String = sqlx::query_scalar!(
        r#"select error as "error!" from mutations where id = $1"#,
        poison,
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(error.contains("could not be applied"), "{error}");
    assert!(!error.contains("cannot hold"), "internals leaked: {error}");
    let topology = sqlx::query!(
        r#"select version, document, status as "status: TopologyStatus" from topologies"#
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (topology.version, topology.document, topology.status),
        (2, json!({"a": 1, "b": 2}), TopologyStatus::Idle)
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn a_topology_held_by_another_worker_is_reported_busy(pool: PgPool) {
    let t = topology(&pool).await;
    let m = enqueue(&pool, t, json!([{"op": "add", "path": "/a", "value": 1}])).await;
    let mut holder = pool.begin().await.unwrap();
    sqlx::query!(
        "select 1 as locked from topologies where id = $1 for no key update",
        t
    )
    .fetch_all(&mut *holder)
    .await
    .unwrap();
    let drain = mutator(&pool, 10).drain_topology(t).await.unwrap();
    assert!(drain.busy && drain.finished == 0);
    // The holder's claim ends with its transaction (commit, rollback or a dead connection).
    holder.rollback().await.unwrap();
    assert_eq!(
        mutator(&pool, 10).drain_topology(t).await.unwrap().finished,
        1
    );
    assert_eq!(trail(&pool, m).await.0, MutationStatus::Applied);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_redelivered_message_is_acked_without_effect(pool: PgPool) {
    use switchyard_bus::Payload;
    use switchyard_bus::payloads::MutationEnqueued;
    use switchyard_workers::consumer::{Outcome, settled};
    let t = topology(&pool).await;
    let m = enqueue(&pool, t, json!([{"op": "add", "path": "/a", "value": 1}])).await;
    let event = MutationEnqueued {
        mutation_id: m,
        topology_id: t,
        seq: 1,
        if_version: None,
        ops_count: 1,
        reannounced: false,
    }
    .event(switchyard_bus::Source::Api);
    let mutator = mutator(&pool, 10);
    // First delivery applies; the same message delivered again (a lost ack) changes nothing.
    assert_eq!(settled(&mutator, &event, 1).await, Outcome::Ack);
    let after_first = trail(&pool, m).await;
    assert_eq!(settled(&mutator, &event, 2).await, Outcome::Ack);
    assert_eq!(trail(&pool, m).await, after_first);
    assert_eq!(after_first, (MutationStatus::Applied, 1, 1));
}

#[sqlx::test(migrations = "../migrations")]
async fn a_batch_holds_at_most_batch_bytes_of_operations(pool: PgPool) {
    let t = topology(&pool).await;
    // Twelve mutations of about 1 MiB of operations each: 12 MiB, past BATCH_BYTES.
    let big = "x".repeat(1024 * 1024);
    for i in 0..12 {
        enqueue(
            &pool,
            t,
            json!([{"op": "test", "path": format!("/k{i}"), "value": big}]),
        )
        .await;
    }
    let limits = BatchLimits {
        size: 100,
        document: mutator(&pool, 100).limits,
        lock_timeout: std::time::Duration::from_secs(1),
    };
    let (result, _) = batch::run(&pool, &switchyard_bus::Doorbell::channel(1).0, t, limits)
        .await
        .unwrap();
    let switchyard_workers::mutator::BatchResult::Committed { finished, more } = result else {
        panic!("busy");
    };
    let budget = switchyard_workers::BATCH_BYTES / (1024 * 1024);
    assert_eq!(
        (finished, more),
        (budget, true),
        "stopped at the byte budget"
    );
    assert_eq!(
        mutator(&pool, 100).run_until_idle().await.unwrap(),
        12 - budget
    );
}
