//! The batched spine: group commit of single enqueues, bulk enqueue, and transactions
//! across topologies in the mutator. The guarantees are those of `mutations.rs`
//! (each mutation once, per-topology seq order), under batching.

use crate::harness;

use std::future::IntoFuture;
use std::time::Duration;

use futures::{StreamExt, stream};
use harness::{Process, TestFleet, add};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use switchyard::fleet::Roles;
use uuid::Uuid;

/// POSTs `body` to `path`, with an `Idempotency-Key` when given.
async fn post_keyed(
    fleet: &TestFleet,
    path: &str,
    key: Option<&str>,
    body: &Value,
) -> (StatusCode, Value) {
    let mut request = fleet.http.post(fleet.url(path)).json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    harness::read(request.send().await.unwrap()).await
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn topologies(fleet: &TestFleet, n: usize) -> Vec<Uuid> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        ids.push(
            fleet
                .create_topology(&format!("t{i}"), json!({"log": []}))
                .await,
        );
    }
    ids
}

#[sqlx::test(migrations = "../migrations")]
async fn ten_thousand_group_committed_mutations_with_retries_apply_once_in_seq_order(pool: PgPool) {
    let mut fleet = TestFleet::up(&pool).await;
    fleet.add_mutators(2).await;
    let topologies = topologies(&fleet, 100).await;
    // 10,000 appends, 100 per topology, interleaved; every fourth is sent twice at
    // once under its key, so retries meet their original inside one group, or after it.
    let requests = (0..10_000).flat_map(|i| {
        let copies = if i % 4 == 0 { 2 } else { 1 };
        std::iter::repeat_n(i, copies)
    });
    let fleet_ref = &fleet;
    let topologies_ref = &topologies;
    let answers: Vec<(usize, StatusCode, Value)> = stream::iter(requests)
        .map(|i| async move {
            let topology = topologies_ref[i % 100];
            let body = json!({"ops": [{"op": "add", "path": "/log/-", "value": i}]});
            let key = format!("append-{i}");
            let path = format!("/topologies/{topology}/mutations");
            let (status, body) = post_keyed(fleet_ref, &path, Some(&key), &body).await;
            (i, status, body)
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut ids: std::collections::HashMap<usize, Value> = Default::default();
    let mut created = 0;
    for (i, status, body) in &answers {
        assert!(
            *status == StatusCode::ACCEPTED || *status == StatusCode::OK,
            "{status} {body}"
        );
        created += usize::from(*status == StatusCode::ACCEPTED);
        let first = ids.entry(*i).or_insert_with(|| body["id"].clone());
        assert_eq!(*first, body["id"], "a retry of {i} got another mutation");
    }
    assert_eq!(created, 10_000, "each request created exactly once");
    fleet.settle(Duration::from_secs(180)).await;
    assert_eq!(
        count(
            &pool,
            "select count(*) from mutations where status = 'applied'"
        )
        .await,
        10_000
    );
    for topology in &topologies {
        harness::assert_applied_in_seq_order(&pool, *topology, 100).await;
    }
    // Group commit happened: some transaction committed more than one enqueue.
    let shared = count(
        &pool,
        "select count(*) from (select commit_id from outbox where subject like '%.mutation.enqueued'
         group by commit_id having count(*) > 1) c",
    )
    .await;
    assert!(shared > 0, "no enqueue shared a transaction");
    fleet.stop().await;
}

/// A fleet whose groups wait long enough for concurrent requests to share one.
async fn patient_fleet(pool: &PgPool) -> TestFleet {
    let mut config = harness::isolated_config();
    config.http.group_commit_wait = Duration::from_millis(300);
    config.http.group_commit_concurrency = 1;
    TestFleet::start(pool, config, Roles::ALL).await
}

#[sqlx::test(migrations = "../migrations")]
async fn one_bad_request_in_a_group_fails_alone(pool: PgPool) {
    let fleet = patient_fleet(&pool).await;
    let topology = fleet.create_topology("t", json!({"log": []})).await;
    let path = format!("/topologies/{topology}/mutations");
    let append = |v: i64| json!({"ops": [{"op": "add", "path": "/log/-", "value": v}]});
    let (status, _) = post_keyed(&fleet, &path, Some("used"), &append(-1)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // A refusal no check on arrival foresees: the database rejects one row.
    sqlx::raw_sql(
        "create function refuse_poison() returns trigger language plpgsql as
         $$ begin if new.ops @> '[{\"value\": \"poison\"}]' then
              raise exception 'poisoned row'; end if; return new; end $$;
         create trigger poison before insert on mutations
           for each row execute function refuse_poison();",
    )
    .execute(&pool)
    .await
    .unwrap();
    let missing = format!("/topologies/{}/mutations", Uuid::now_v7());
    let poison = json!({"ops": [{"op": "add", "path": "/log/-", "value": "poison"}]});
    let fleet_ref = &fleet;
    let path_ref = &path;
    let good = futures::future::join_all(
        (0..20).map(|v| async move { post_keyed(fleet_ref, path_ref, None, &append(v)).await.0 }),
    );
    let (first, other_body) = (append(0), append(99));
    let bad = futures::future::join3(
        post_keyed(&fleet, &missing, None, &first),
        post_keyed(&fleet, &path, Some("used"), &other_body),
        post_keyed(&fleet, &path, None, &poison),
    );
    let (good, (missing, reused, poisoned)) = futures::future::join(good, bad).await;
    assert!(good.iter().all(|s| *s == StatusCode::ACCEPTED), "{good:?}");
    assert_eq!(missing.0, StatusCode::NOT_FOUND, "{}", missing.1);
    assert_eq!(reused.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", reused.1);
    assert_eq!(
        poisoned.0,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        poisoned.1
    );
    fleet.settle(Duration::from_secs(30)).await;
    // The good ones applied in seq order, after the first; the bad ones wrote nothing.
    harness::assert_applied_in_seq_order(&pool, topology, 21).await;
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_batch_is_validated_all_or_nothing_naming_the_item(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let topology = fleet.create_topology("t", json!({})).await;
    let good = json!({"topology_id": topology, "ops": add("a", json!(1))});
    let cases = [
        (
            json!({"mutations": [good, good, {"topology_id": topology, "ops": [{"op": "explode", "path": "/a"}]}]}),
            "mutations[2]: ops[0]: unknown op",
        ),
        (
            json!({"mutations": [good, {"topology_id": Uuid::now_v7(), "ops": add("a", json!(1))}]}),
            "mutations[1]: topology",
        ),
        (
            json!({"mutations": [good, {"topology_id": topology, "ops": add("a", json!(1)), "if_version": -1}]}),
            "mutations[1]: if_version",
        ),
        (json!({"mutations": []}), "at least one"),
    ];
    for (body, expected) in cases {
        let (status, answer) = fleet.post("/mutations/batch", body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
    }
    let too_many: Vec<Value> = (0..1001).map(|_| good.clone()).collect();
    let (status, answer) = fleet
        .post("/mutations/batch", json!({"mutations": too_many}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("http.max_batch_mutations")
    );
    assert_eq!(count(&pool, "select count(*) from mutations").await, 0);
    assert_eq!(count(&pool, "select last_seq from topologies").await, 0);
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_batch_keeps_order_within_and_across_topologies(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let topologies = topologies(&fleet, 3).await;
    let append = |i: usize| json!({"topology_id": topologies[i % 3], "ops": [{"op": "add", "path": "/log/-", "value": i}]});
    // Two batches: seqs continue, in request order within each topology.
    for batch in [0..30, 30..60] {
        let items: Vec<Value> = batch.clone().map(append).collect();
        let (status, answer) = fleet
            .post("/mutations/batch", json!({"mutations": items}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        let created = answer["mutations"].as_array().unwrap();
        assert_eq!(created.len(), 30);
        for (offset, item) in created.iter().enumerate() {
            let i = batch.start + offset;
            assert_eq!(item["topology_id"], json!(topologies[i % 3]));
            assert_eq!(item["seq"], json!(i / 3 + 1), "item {i}");
        }
    }
    fleet.settle(Duration::from_secs(30)).await;
    for topology in &topologies {
        harness::assert_applied_in_seq_order(&pool, *topology, 20).await;
    }
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_batch_idempotency_key_replays_the_batch(pool: PgPool) {
    let fleet = TestFleet::api_only(&pool).await;
    let topology = fleet.create_topology("t", json!({})).await;
    let body = json!({"mutations": [
        {"topology_id": topology, "ops": add("a", json!(1))},
        {"topology_id": topology, "ops": add("b", json!(2))},
    ]});
    let first = post_keyed(&fleet, "/mutations/batch", Some("nightly-7"), &body).await;
    assert_eq!(first.0, StatusCode::ACCEPTED, "{}", first.1);
    let retries = futures::future::join_all(
        (0..3).map(|_| post_keyed(&fleet, "/mutations/batch", Some("nightly-7"), &body)),
    )
    .await;
    for (status, answer) in retries {
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer, first.1, "a retry answers with the original batch");
    }
    let other = json!({"mutations": [{"topology_id": topology, "ops": add("a", json!(3))}]});
    let (status, answer) = post_keyed(&fleet, "/mutations/batch", Some("nightly-7"), &other).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("different body")
    );
    assert_eq!(count(&pool, "select count(*) from mutations").await, 2);
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn three_mutator_processes_apply_across_topologies_once_in_seq_order(pool: PgPool) {
    let fleet = TestFleet::api_only(&pool).await;
    let mutators: Vec<Process> = (0..3)
        .map(|_| Process::spawn(&pool, &fleet.config, &["worker", "--role", "mutator"]))
        .collect();
    let topologies = topologies(&fleet, 50).await;
    // 2,000 appends, 40 per topology, in bulk requests of 200 spread over every topology.
    for round in 0..10 {
        let items: Vec<Value> = (0..200)
            .map(|j| {
                let i = round * 200 + j;
                json!({"topology_id": topologies[i % 50], "ops": [{"op": "add", "path": "/log/-", "value": i}]})
            })
            .collect();
        let (status, answer) = fleet
            .post("/mutations/batch", json!({"mutations": items}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }
    fleet.settle(Duration::from_secs(120)).await;
    for topology in &topologies {
        harness::assert_applied_in_seq_order(&pool, *topology, 40).await;
    }
    assert_eq!(
        count(&pool, "select count(*) from mutation_audit").await,
        2000
    );
    // Some transaction applied the heads of several topologies at once.
    let across = count(
        &pool,
        "select count(*) from (select commit_id from outbox where subject like '%.mutation.applied'
         group by commit_id having count(distinct event->'data'->>'topology_id') > 1) c",
    )
    .await;
    assert!(across > 0, "no transaction spanned topologies");
    harness::eventually(Duration::from_secs(10), || async {
        fleet.stream_count("topology.*.mutation.applied").await == 2000
    })
    .await;
    drop(mutators);
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn commits_holding_more_events_than_jetstream_acks_in_flight_are_all_published(pool: PgPool) {
    // An API whose relay is gone: its commits stay unpublished for a sweep to find.
    let config = harness::isolated_config();
    let (doorbell, receiver) = switchyard_bus::Doorbell::channel(1);
    drop(receiver);
    let bus = switchyard_bus::Bus::connect(&config.bus, "test")
        .await
        .unwrap();
    let state = switchyard_api::AppState::new(
        harness::own_pool(&pool).await,
        &bus,
        doorbell,
        config.api_settings(),
        config.auth.secret.as_deref().unwrap().as_bytes(),
        Default::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/api/v1", listener.local_addr().unwrap());
    let api = tokio::spawn(axum::serve(listener, switchyard_api::router(state)).into_future());
    let http = harness::client_with(&harness::token(&config, switchyard_api::auth::Role::Admin));
    let created = http
        .post(format!("{base}/topologies"))
        .json(&json!({"name": "t"}));
    let (_, topology) = harness::read(created.send().await.unwrap()).await;
    // Eight bulk commits of 1,000 events each: more than the 5,000 publishes JetStream's
    // client lets wait for their acks, so a relay that sent a whole sweep before
    // awaiting any ack would stall on its own backlog.
    for batch in 0..8 {
        let items: Vec<Value> = (0..1000)
            .map(|i| json!({"topology_id": topology["id"], "ops": [{"op": "add", "path": format!("/k{batch}_{i}"), "value": i}]}))
            .collect();
        let request = http
            .post(format!("{base}/mutations/batch"))
            .json(&json!({"mutations": items}));
        let (status, answer) = harness::read(request.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }
    assert!(harness::unpublished(&pool).await >= 8000);

    // A relay that held every pending ack of a sweep would wait on itself until its
    // publish timeout; make that longer than the wait below.
    let mut config = config;
    config.bus.publish_timeout = Duration::from_secs(120);
    let fleet = TestFleet::start(&pool, config, Roles::WORKERS).await;
    harness::eventually(Duration::from_secs(30), || async {
        harness::unpublished(&pool).await == 0
    })
    .await;
    fleet.settle(Duration::from_secs(60)).await;
    assert_eq!(
        fleet.stream_count("topology.*.mutation.enqueued").await,
        8000
    );
    fleet.stop().await;
    api.abort();
}
