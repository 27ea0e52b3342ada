//! The migrator against real Postgres, without the bus: driven with `work` and
//! `run_until_idle`, so stops, crashes and take-overs are deterministic.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use switchyard_bus::Doorbell;
use switchyard_domain::status::{GraphStatus, MigrationRunStatus};
use switchyard_workers::migrator::{Migrator, MigratorConfig, Worked, run};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn migrator(pool: &PgPool, name: &str, batch_size: usize) -> Migrator {
    let (doorbell, _relay_gone) = Doorbell::channel(1);
    Migrator {
        pool: pool.clone(),
        doorbell,
        config: MigratorConfig {
            batch_size,
            lease: Duration::from_secs(30),
            busy_retry_delay: Duration::from_millis(100),
            ..MigratorConfig::default()
        },
        name: name.to_owned(),
        shutdown: CancellationToken::new(),
        limits: switchyard_domain::json::Limits {
            max_bytes: 512 * 1024,
            max_depth: 64,
        },
    }
}

/// A doorbell nobody answers: the events stay in the outbox, as after a crash.
fn unanswered_doorbell() -> switchyard_bus::Doorbell {
    switchyard_bus::Doorbell::channel(1).0
}

/// What `migrator(…, batch_size)` gives each batch.
fn batch_limits(size: usize) -> run::BatchLimits {
    run::BatchLimits {
        size,
        lease: Duration::from_secs(1),
        data: switchyard_domain::json::Limits {
            max_bytes: 512 * 1024,
            max_depth: 64,
        },
    }
}

/// A plugin at version 2 (v2 renames `colour` to `color` and defaults `weight`), a
/// graph at version 1 with `nodes` nodes, and a pending run to version 2. Every
/// update of a node is counted in `node_updates`.
async fn graph_with_run(pool: &PgPool, nodes: i64) -> Uuid {
    let v2 = json!([
        {"op": "rename", "from": "colour", "to": "color"},
        {"op": "set_default", "property": "weight", "value": 1},
        {"op": "require", "property": "color"}
    ]);
    sqlx::query!("insert into plugins (name, current_version) values ('net', 2)")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query!(
        "insert into plugin_versions (plugin, version, steps) values ('net', 1, '[]'), ('net', 2, $1)",
        v2,
    )
    .execute(pool)
    .await
    .unwrap();
    let graph: Uuid = sqlx::query_scalar!(
        "insert into graphs (id, slug, plugin, schema_version) values ($1, 'g', 'net', 1) returning id",
        Uuid::now_v7(),
    )
    .fetch_one(pool)
    .await
    .unwrap();
    sqlx::query!(
        "insert into graph_nodes (graph_id, id, data, schema_version)
         select $1, 'n' || lpad(i::text, 6, '0'), jsonb_build_object('colour', 'red', 'i', i), 1
         from generate_series(1, $2::bigint) as i",
        graph,
        nodes,
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::raw_sql(
        "create table node_updates (id text primary key, n int not null);
         create function count_update() returns trigger language plpgsql as $$
         begin
           insert into node_updates values (new.id, 1)
           on conflict (id) do update set n = node_updates.n + 1;
           return new;
         end $$;
         create trigger count_update after update on graph_nodes
         for each row execute function count_update();",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query_scalar!(
        "insert into graph_migration_runs (id, graph_id, from_version, to_version, workflow_run_id)
         values ($1, $2, 1, 2, 'test') returning id",
        Uuid::now_v7(),
        graph,
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// (status, processed, total, error) of the run.
async fn run_state(pool: &PgPool, run: Uuid) -> (MigrationRunStatus, i64, i64, Option<String>) {
    let row = sqlx::query!(
        r#"select status as "status: MigrationRunStatus", processed, total, error
         from graph_migration_runs where id = $1"#,
        run,
    )
    .fetch_one(pool)
    .await
    .unwrap();
    (row.status, row.processed, row.total, row.error)
}

/// (nodes at version 2 with the migrated shape, nodes updated exactly once, nodes updated more).
async fn nodes_state(pool: &PgPool) -> (i64, i64, i64) {
    // Not checked at build time: `node_updates` is made by the test (see `graph_with_run`).
    sqlx::query_as(
        "select (select count(*) from graph_nodes
                 where schema_version = 2 and data ? 'color' and not data ? 'colour'
                   and data->'weight' = '1'),
                (select count(*) from node_updates where n = 1),
                (select count(*) from node_updates where n > 1)",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrations = "../migrations")]
async fn a_migrator_stopped_midway_and_one_that_crashed_are_resumed_with_every_node_migrated_once(
    pool: PgPool,
) {
    let run = graph_with_run(&pool, 5000).await;
    // A works three batches, then stops (as at shutdown): it gives its lease up.
    let a = migrator(&pool, "a", 500);
    assert_eq!(a.work(run, 3).await.unwrap(), Worked::Paused);
    assert_eq!(
        run_state(&pool, run).await,
        (MigrationRunStatus::Running, 1500, 5000, None)
    );
    let status = sqlx::query_scalar!(r#"select status as "status: GraphStatus" from graphs"#)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, GraphStatus::Migrating);

    // B takes over, works two batches, and "crashes": its claim stays, lease and all.
    let b = migrator(&pool, "b", 500);
    let (claimed, _) = run::claim(
        &pool,
        &unanswered_doorbell(),
        run,
        "b",
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    let mut crashed = claimed.unwrap();
    let versions = run::load_steps(&pool, &crashed).await.unwrap();
    for _ in 0..2 {
        run::batch(
            &pool,
            &unanswered_doorbell(),
            &mut crashed,
            &versions,
            batch_limits(500),
        )
        .await
        .unwrap();
    }
    assert_eq!(run_state(&pool, run).await.1, 2500);
    assert_eq!(
        b.work(run, 1).await.unwrap(),
        Worked::Busy,
        "the lease is live"
    );

    // C waits the lease out and finishes; the crashed claim can no longer write.
    let c = migrator(&pool, "c", 500);
    assert_eq!(c.run_until_idle().await.unwrap(), 1);
    let fenced = run::batch(
        &pool,
        &unanswered_doorbell(),
        &mut crashed,
        &versions,
        batch_limits(500),
    )
    .await;
    assert!(fenced.is_err() || matches!(fenced, Ok((run::Batch::Migrated(0), _))));
    assert_eq!(
        run_state(&pool, run).await,
        (MigrationRunStatus::Succeeded, 5000, 5000, None)
    );
    assert_eq!(
        nodes_state(&pool).await,
        (5000, 5000, 0),
        "every node migrated exactly once"
    );
    let graph =
        sqlx::query!(r#"select schema_version, status as "status: GraphStatus" from graphs"#)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (graph.schema_version, graph.status),
        (2, GraphStatus::Ready)
    );
    let phases: Vec<String> =
        sqlx::query_scalar!(r#"select event->>'type' as "type!" from outbox order by position"#)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        phases.first().map(String::as_str),
        Some("migration.running")
    );
    assert_eq!(
        phases.last().map(String::as_str),
        Some("migration.succeeded")
    );
    assert_eq!(
        phases.iter().filter(|p| *p == "migration.progress").count(),
        10
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn a_failing_step_fails_the_run_naming_the_step_and_the_node(pool: PgPool) {
    let run = graph_with_run(&pool, 10).await;
    sqlx::query!("update graph_nodes set data = '{\"shade\": \"red\"}' where id = 'n000007'")
        .execute(&pool)
        .await
        .unwrap();
    let m = migrator(&pool, "m", 4);
    assert_eq!(
        m.work(run, usize::MAX).await.unwrap(),
        Worked::Ended(MigrationRunStatus::Failed)
    );
    let (status, processed, _, error) = run_state(&pool, run).await;
    assert_eq!(
        (status, processed),
        (MigrationRunStatus::Failed, 4),
        "the first batch committed"
    );
    assert_eq!(
        error.as_deref(),
        Some(
            "node \"n000007\": version 2 step 3 (require color) failed: property \"color\" is missing"
        )
    );
    let graph =
        sqlx::query!(r#"select schema_version, status as "status: GraphStatus" from graphs"#)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (graph.schema_version, graph.status),
        (1, GraphStatus::MigrationFailed)
    );
    let failed: Value = sqlx::query_scalar!(
        r#"select event->'data' as "data!" from outbox where event->>'type' = 'migration.failed'"#,
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(failed["error"], json!(error.unwrap()));
    assert_eq!(m.work(run, usize::MAX).await.unwrap(), Worked::Over);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_run_that_cannot_go_on_fails_with_a_reason_instead_of_retrying_forever(pool: PgPool) {
    // Stored steps that no longer parse (written before validation, or by hand).
    let run = graph_with_run(&pool, 10).await;
    sqlx::query!("update plugin_versions set steps = '[{\"op\": \"explode\"}]' where version = 2")
        .execute(&pool)
        .await
        .unwrap();
    let m = migrator(&pool, "m", 4);
    assert_eq!(
        m.work(run, usize::MAX).await.unwrap(),
        Worked::Ended(MigrationRunStatus::Failed)
    );
    let (status, processed, _, error) = run_state(&pool, run).await;
    assert_eq!((status, processed), (MigrationRunStatus::Failed, 0));
    let error = error.unwrap();
    assert!(
        error.starts_with("the stored steps of plugin \"net\" version 2 cannot be read"),
        "{error}"
    );
    let graph = sqlx::query_scalar!(r#"select status as "status: GraphStatus" from graphs"#)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(graph, GraphStatus::MigrationFailed);

    // A node whose migrated data would pass the size limit fails the run, naming it.
    let run = {
        sqlx::query!(
            "update plugin_versions set steps = $1 where version = 2",
            json!([{"op": "set_default", "property": "pad", "value": "x".repeat(600)}]),
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query_scalar!(
            "insert into graph_migration_runs (id, graph_id, from_version, to_version, workflow_run_id)
             select $1, id, 1, 2, 'test' from graphs returning id",
            Uuid::now_v7(),
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let mut small = migrator(&pool, "m", 4);
    small.limits.max_bytes = 512;
    assert_eq!(
        small.work(run, usize::MAX).await.unwrap(),
        Worked::Ended(MigrationRunStatus::Failed)
    );
    let error = run_state(&pool, run).await.3.unwrap();
    assert!(
        error.starts_with("node \"n000001\": version 2: the migrated data is 6"),
        "{error}"
    );
    assert!(
        error.ends_with("the limit is 512 (documents.max_bytes)"),
        "{error}"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn the_reconciler_reannounces_runs_left_pending_or_abandoned(pool: PgPool) {
    use switchyard_workers::reconciler::{Reconciler, ReconcilerConfig};
    let run = graph_with_run(&pool, 10).await;
    let (doorbell, _relay_gone) = Doorbell::channel(16);
    let reconciler = Reconciler {
        pool: pool.clone(),
        doorbell,
        config: ReconcilerConfig::default(),
    };
    let age = |ago: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query!(
                "update graph_migration_runs set announced_at = now() - $1::text::interval",
                ago,
            )
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    assert_eq!(
        reconciler.pass().await.unwrap().reannounced_runs,
        0,
        "just requested"
    );
    age("2 minutes").await;
    assert_eq!(
        reconciler.pass().await.unwrap().reannounced_runs,
        1,
        "left pending"
    );
    // Claimed with a live lease: its migrator is working on it.
    let (claimed, _) = run::claim(
        &pool,
        &unanswered_doorbell(),
        run,
        "alive",
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert!(claimed.is_ok());
    age("2 minutes").await;
    assert_eq!(
        reconciler.pass().await.unwrap().reannounced_runs,
        0,
        "lease is live"
    );
    // Its migrator died: the lease ran out.
    sqlx::query!("update graph_migration_runs set claim_expires_at = now() - interval '1 second'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        reconciler.pass().await.unwrap().reannounced_runs,
        1,
        "abandoned"
    );
    let requested: i64 = sqlx::query_scalar!(
        r#"select count(*) as "count!" from outbox where event->>'type' = 'migration.requested'"#,
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(requested, 2);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_batch_holds_at_most_batch_bytes_of_node_data(pool: PgPool) {
    let run = graph_with_run(&pool, 12).await;
    // About 1 MiB of data per node: 12 MiB, past BATCH_BYTES.
    sqlx::query!(
        "update graph_nodes set data = data || jsonb_build_object('pad', repeat('x', 1048576))",
    )
    .execute(&pool)
    .await
    .unwrap();
    let mut big = migrator(&pool, "m", 1000);
    big.limits.max_bytes = 2 * 1024 * 1024;
    assert_eq!(big.work(run, 1).await.unwrap(), Worked::Paused);
    let budget = switchyard_workers::BATCH_BYTES as i64 / (1024 * 1024);
    assert_eq!(
        run_state(&pool, run).await.1,
        budget,
        "one batch, stopped at the byte budget"
    );
    assert_eq!(
        big.work(run, usize::MAX).await.unwrap(),
        Worked::Ended(MigrationRunStatus::Succeeded)
    );
    assert_eq!(nodes_state(&pool).await.0, 12, "every node migrated");
}
