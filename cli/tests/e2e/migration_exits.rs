//! Every way out of a migration run that should not go on, over HTTP: cancelling a
//! pending run, a failed one (the graph is ready again), a running one (it stops at
//! its next batch boundary, also when its migrator died first), and the refusals
//! (an ended run, a superseded failure, an unknown run). Each is audited and announced.

use crate::harness;

use harness::TestFleet;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use switchyard_bus::Doorbell;
use switchyard_domain::status::MigrationRunStatus;
use switchyard_workers::migrator::{Migrator, MigratorConfig, Worked};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A migrator outside the fleet with `batch_size`, for tests that drive it.
fn migrator(pool: &PgPool, batch_size: usize) -> Migrator {
    let (doorbell, _relay_gone) = Doorbell::channel(1);
    Migrator {
        pool: pool.clone(),
        doorbell,
        config: MigratorConfig {
            batch_size,
            ..MigratorConfig::default()
        },
        name: "test".to_owned(),
        shutdown: CancellationToken::new(),
        limits: switchyard_domain::json::Limits {
            max_bytes: 512 * 1024,
            max_depth: 64,
        },
    }
}

/// Plugin `net` (version 2: `steps`), graph `g` at version 1 with `nodes` nodes
/// `n00000…` holding `colour`, and a pending run to version 2, whose id is returned.
async fn graph_with_pending_run(fleet: &TestFleet, nodes: usize, steps: Value) -> Uuid {
    let (status, body) = fleet
        .post(
            "/plugins",
            json!({"name": "net", "versions": [{"version": 1, "steps": []}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = fleet
        .post("/graphs", json!({"slug": "g", "plugin": "net"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for chunk in (0..nodes).collect::<Vec<_>>().chunks(1000) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"id": format!("n{i:05}"), "data": {"colour": "red"}}))
            .collect();
        let (status, body) = fleet.post("/graphs/g/nodes", json!({"nodes": batch})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = fleet
        .post(
            "/plugins/net/versions",
            json!({"version": 2, "steps": steps}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    request_run(fleet).await
}

async fn request_run(fleet: &TestFleet) -> Uuid {
    let (status, run) = fleet.post("/graphs/g/re-migrate", json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    run["id"].as_str().unwrap().parse().unwrap()
}

async fn cancel(fleet: &TestFleet, run: Uuid) -> (StatusCode, Value) {
    fleet
        .post(&format!("/graphs/g/migrations/{run}/cancel"), json!({}))
        .await
}

/// (graph status, graph schema_version, nodes at version 2).
async fn graph_state(fleet: &TestFleet) -> (String, i64, i64) {
    let (_, graph) = fleet.get("/graphs/g").await;
    let migrated: i64 = sqlx::query_scalar!(
        r#"select count(*) as "count!" from graph_nodes where schema_version = 2"#
    )
    .fetch_one(&fleet.pool)
    .await
    .unwrap();
    (
        graph["status"].as_str().unwrap().to_owned(),
        graph["schema_version"].as_i64().unwrap(),
        migrated,
    )
}

/// Event types staged for run `run`, in order, and the graph's audit actions.
async fn trail(pool: &PgPool, run: Uuid) -> (Vec<String>, Vec<String>) {
    let events = sqlx::query_scalar!(
        r#"select event->>'type' as "type!" from outbox where event->'data'->>'run_id' = $1::uuid::text
         order by position"#,
        run,
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let audit = sqlx::query_scalar!(
        "select action from audit_log where entity = 'graph' and detail->>'run_id' = $1::uuid::text
         order by id",
        run,
    )
    .fetch_all(pool)
    .await
    .unwrap();
    (events, audit)
}

#[sqlx::test(migrations = "../migrations")]
async fn a_pending_run_is_cancelled_at_once(pool: PgPool) {
    let fleet = TestFleet::api_only(&pool).await;
    let run = graph_with_pending_run(&fleet, 3, json!([])).await;
    let (status, cancelled) = cancel(&fleet, run).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled["finished_at"].is_string());
    assert_eq!(graph_state(&fleet).await, ("ready".into(), 1, 0));
    // A migrator that gets the old announcement finds nothing to do.
    assert_eq!(
        migrator(&pool, 100).work(run, usize::MAX).await.unwrap(),
        Worked::Over
    );
    let (events, audit) = trail(&pool, run).await;
    assert_eq!(events, ["migration.requested", "migration.cancelled"]);
    assert_eq!(audit, ["migration_requested", "migration_cancelled"]);
    // Ended: a second cancel is refused, naming the status.
    let (status, refused) = cancel(&fleet, run).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already ended (cancelled)"),
        "{refused}"
    );
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn cancelling_a_failed_run_makes_the_graph_ready_at_its_version(pool: PgPool) {
    let fleet = TestFleet::api_only(&pool).await;
    let steps = json!([
        {"op": "rename", "from": "colour", "to": "color"},
        {"op": "require", "property": "size"}
    ]);
    let first = graph_with_pending_run(&fleet, 5, steps).await;
    let worker = migrator(&pool, 100);
    assert_eq!(
        worker.work(first, usize::MAX).await.unwrap(),
        Worked::Ended(MigrationRunStatus::Failed)
    );
    assert_eq!(graph_state(&fleet).await, ("migration_failed".into(), 1, 0));

    // A retry that fails again supersedes the first failure: only the latest is cancelled.
    let second = request_run(&fleet).await;
    let (status, refused) = cancel(&fleet, first).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("superseded"),
        "{refused}"
    );
    assert_eq!(
        worker.work(second, usize::MAX).await.unwrap(),
        Worked::Ended(MigrationRunStatus::Failed)
    );

    let (status, cancelled) = cancel(&fleet, second).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert!(
        cancelled["error"]
            .as_str()
            .unwrap()
            .contains("require size"),
        "the failure stays on record: {cancelled}"
    );
    assert_eq!(graph_state(&fleet).await, ("ready".into(), 1, 0));
    let (events, audit) = trail(&pool, second).await;
    assert_eq!(
        events,
        [
            "migration.requested",
            "migration.running",
            "migration.failed",
            "migration.cancelled"
        ]
    );
    assert_eq!(audit, ["migration_requested", "migration_cancelled"]);
    // Unknown runs are a 404, ended ones a 409.
    let (status, _) = cancel(&fleet, Uuid::now_v7()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = cancel(&fleet, second).await;
    assert_eq!(status, StatusCode::CONFLICT);
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_running_run_stops_at_its_next_batch_boundary(pool: PgPool) {
    let fleet = TestFleet::api_only(&pool).await;
    let steps = json!([{"op": "rename", "from": "colour", "to": "color"}]);
    let run = graph_with_pending_run(&fleet, 1000, steps).await;
    // Hold one node of the second batch, so the migrator is caught mid-run.
    let mut held = pool.begin().await.unwrap();
    sqlx::query!("select 1 as locked from graph_nodes where id = 'n00150' for update")
        .fetch_all(&mut *held)
        .await
        .unwrap();
    let worker = migrator(&pool, 100);
    let working = tokio::spawn(async move { worker.work(run, usize::MAX).await });
    harness::eventually(std::time::Duration::from_secs(30), || async {
        let (_, runs) = fleet.get("/graphs/g/migrations").await;
        runs["items"][0]["processed"] == 100
    })
    .await;

    let (status, requested) = cancel(&fleet, run).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{requested}");
    assert_eq!(requested["status"], "running");
    assert!(requested["cancel_requested_at"].is_string());
    // Asking again is the same answer, and writes nothing more.
    let (status, again) = cancel(&fleet, run).await;
    assert_eq!((status, &again), (StatusCode::ACCEPTED, &requested));
    held.rollback().await.unwrap();
    // The batch in flight finishes; then the run ends, cancelled.
    assert_eq!(
        working.await.unwrap().unwrap(),
        Worked::Ended(MigrationRunStatus::Cancelled)
    );
    let (_, runs) = fleet.get("/graphs/g/migrations").await;
    let last = &runs["items"][0];
    assert_eq!(
        (&last["status"], &last["processed"], &last["total"]),
        (&json!("cancelled"), &json!(200), &json!(1000))
    );
    // Ready at the old version; the nodes it migrated keep the new one.
    assert_eq!(graph_state(&fleet).await, ("ready".into(), 1, 200));
    let (status, body) = fleet
        .post(
            "/graphs/g/nodes",
            json!({"nodes": [{"id": "new", "data": {"colour": "blue"}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "writable again: {body}");
    let (events, audit) = trail(&pool, run).await;
    assert_eq!(
        (events.first(), events.last()),
        (
            Some(&"migration.requested".to_owned()),
            Some(&"migration.cancelled".to_owned())
        )
    );
    assert!(events.contains(&"migration.cancel_requested".to_owned()));
    assert_eq!(audit, ["migration_requested", "migration_cancel_requested"]);

    // A later run migrates the rest, each node once.
    let rest = request_run(&fleet).await;
    assert_eq!(
        migrator(&pool, 100).work(rest, usize::MAX).await.unwrap(),
        Worked::Ended(MigrationRunStatus::Succeeded)
    );
    let (_, runs) = fleet.get("/graphs/g/migrations").await;
    assert_eq!(
        runs["items"][0]["total"], 801,
        "the 800 left behind and the new node"
    );
    assert_eq!(graph_state(&fleet).await, ("ready".into(), 2, 1001));
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_cancel_requested_while_no_migrator_holds_the_run_ends_it_at_the_next_claim(
    pool: PgPool,
) {
    let fleet = TestFleet::api_only(&pool).await;
    let steps = json!([{"op": "rename", "from": "colour", "to": "color"}]);
    let run = graph_with_pending_run(&fleet, 300, steps).await;
    // One batch, then the migrator stops (as at shutdown, or dies and its lease runs out).
    assert_eq!(
        migrator(&pool, 100).work(run, 1).await.unwrap(),
        Worked::Paused
    );
    let (status, _) = cancel(&fleet, run).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // Whoever claims it next ends it without migrating more.
    assert_eq!(
        migrator(&pool, 100).work(run, usize::MAX).await.unwrap(),
        Worked::Ended(MigrationRunStatus::Cancelled)
    );
    assert_eq!(graph_state(&fleet).await, ("ready".into(), 1, 100));
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn cancelling_the_retry_of_a_failed_run_leaves_the_graph_ready(pool: PgPool) {
    let fleet = TestFleet::api_only(&pool).await;
    let failed =
        graph_with_pending_run(&fleet, 3, json!([{"op": "require", "property": "size"}])).await;
    assert_eq!(
        migrator(&pool, 100).work(failed, usize::MAX).await.unwrap(),
        Worked::Ended(MigrationRunStatus::Failed)
    );
    // A retry, cancelled before it starts: whatever the run, a cancel means ready.
    let retry = request_run(&fleet).await;
    let (status, body) = cancel(&fleet, retry).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(graph_state(&fleet).await, ("ready".into(), 1, 0));
    // The failure it retried no longer holds the graph: nothing to cancel there.
    let (status, refused) = cancel(&fleet, failed).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("has left that failure"),
        "{refused}"
    );
    fleet.stop().await;
}
