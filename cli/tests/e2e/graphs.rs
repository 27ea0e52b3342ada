//! Graph schema migrations end to end: plugins and graphs, the history contract,
//! a 10,000-node graph migrated across two versions while its event stream follows,
//! writes refused during a run and allowed after a failed one (repair, then retry),
//! and concurrent re-migrate requests. Cancelling runs: `migration_exits.rs`.

use crate::harness;

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use harness::TestFleet;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use switchyard_bus::Doorbell;
use switchyard_domain::status::MigrationRunStatus;
use switchyard_workers::migrator::{Migrator, MigratorConfig, Worked};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

/// Registers plugin `net` at version 1 and a graph `slug` on it.
async fn plugin_and_graph(fleet: &TestFleet, slug: &str) {
    let (status, body) = fleet
        .post(
            "/plugins",
            json!({"name": "net", "versions": [{"version": 1, "steps": []}]}),
        )
        .await;
    assert!(
        status == StatusCode::CREATED || status == StatusCode::CONFLICT,
        "{body}"
    );
    let (status, body) = fleet
        .post("/graphs", json!({"slug": slug, "plugin": "net"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// Writes `count` nodes `n00000…` with `colour` and no `weight`, 1,000 per request.
async fn write_nodes(fleet: &TestFleet, slug: &str, count: usize) {
    for chunk in (0..count).collect::<Vec<_>>().chunks(1000) {
        let nodes: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"id": format!("n{i:05}"), "data": {"colour": "red", "kind": "sw"}}))
            .collect();
        let (status, body) = fleet
            .post(&format!("/graphs/{slug}/nodes"), json!({"nodes": nodes}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

async fn add_version(fleet: &TestFleet, version: i32, steps: Value) {
    let (status, body) = fleet
        .post(
            "/plugins/net/versions",
            json!({"version": version, "steps": steps}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// A migrator outside the fleet, for tests that stop it where they want.
fn migrator(pool: &PgPool) -> Migrator {
    let (doorbell, _relay_gone) = Doorbell::channel(1);
    Migrator {
        pool: pool.clone(),
        doorbell,
        config: MigratorConfig::default(),
        name: "test".to_owned(),
        shutdown: CancellationToken::new(),
        limits: switchyard_domain::json::Limits {
            max_bytes: 512 * 1024,
            max_depth: 64,
        },
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn plugins_and_graphs_register_and_refuse_bad_input(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    for (body, why) in [
        (
            json!({"name": "net", "versions": [{"version": 2, "steps": []}]}),
            "expected version 1",
        ),
        (
            json!({"name": "net", "versions": [{"version": 1, "steps": [{"op": "remove", "property": "a"}]}]}),
            "steps must be empty",
        ),
        (
            json!({"name": "net", "versions": [{"version": 1, "steps": []}, {"version": 2, "steps": [{"op": "rename", "from": "a", "to": "a"}]}]}),
            "version 2: step 1",
        ),
        (
            json!({"name": "net", "versions": [{"version": 1, "steps": []}, {"version": 2, "steps": [{"op": "explode"}]}]}),
            "explode",
        ),
        (
            json!({"name": "Net", "versions": [{"version": 1, "steps": []}]}),
            "not a slug",
        ),
    ] {
        let (status, refused) = fleet.post("/plugins", body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {refused}"
        );
        assert!(
            message(&refused).contains(why),
            "{refused} should say {why}"
        );
    }
    plugin_and_graph(&fleet, "edge").await;
    let (status, _) = fleet
        .post(
            "/plugins",
            json!({"name": "net", "versions": [{"version": 1, "steps": []}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, refused) = fleet
        .post("/plugins/net/versions", json!({"version": 3, "steps": []}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(message(&refused).contains("must be 2"), "{refused}");
    add_version(
        &fleet,
        2,
        json!([{"op": "set_default", "property": "weight", "value": 1}]),
    )
    .await;
    let (_, plugin) = fleet.get("/plugins/net").await;
    assert_eq!(plugin["current_version"], 2);
    assert_eq!(plugin["versions"][1]["steps"][0]["op"], "set_default");
    let (status, _) = fleet.get("/plugins/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _) = fleet
        .post("/graphs", json!({"slug": "edge", "plugin": "net"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = fleet
        .post("/graphs", json!({"slug": "core", "plugin": "nope"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, graph) = fleet
        .post("/graphs", json!({"slug": "core", "plugin": "net"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        graph["schema_version"], 2,
        "a graph starts at the plugin's current version"
    );
    write_nodes(&fleet, "edge", 3).await;
    let (_, edge) = fleet.get("/graphs/edge").await;
    assert_eq!(
        (&edge["node_count"], &edge["schema_version"]),
        (&json!(3), &json!(1))
    );
    let (_, page) = fleet.get("/graphs/edge/nodes?limit=2").await;
    assert_eq!(page["items"][0]["id"], "n00000");
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = fleet
        .get(&format!("/graphs/edge/nodes?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    let (status, refused) = fleet
        .post(
            "/graphs/edge/nodes",
            json!({"nodes": [{"id": "a", "data": {}}, {"id": "a", "data": {}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(message(&refused).contains("twice"), "{refused}");
    let (status, refused) = fleet
        .post("/graphs/edge/re-migrate", json!({"target_version": 5}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    let (status, refused) = fleet.post("/graphs/core/re-migrate", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        message(&refused).contains("already at version 2"),
        "{refused}"
    );

    // A new version can request a run for every graph on the plugin.
    let (status, added) = fleet
        .post(
            "/plugins/net/versions?migrate_graphs=true",
            json!({"version": 3, "steps": [{"op": "remove", "property": "kind"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    let runs = added["migration_runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{added}");
    assert!(
        runs.iter()
            .all(|r| r["to_version"] == 3 && r["status"] == "pending")
    );
    harness::eventually(Duration::from_secs(30), || async {
        let (_, edge) = fleet.get("/graphs/edge").await;
        let (_, core) = fleet.get("/graphs/core").await;
        edge["schema_version"] == 3 && core["schema_version"] == 3
    })
    .await;
    let (_, nodes) = fleet.get("/graphs/edge/nodes").await;
    assert_eq!(
        nodes["items"][0]["data"],
        json!({"colour": "red", "weight": 1})
    );

    // Each change committed with its audit row and its event; refusals wrote neither.
    let trail = |entity: &'static str, key: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar!(
                "select action from audit_log where entity = $1 and entity_key = $2 order by id",
                entity,
                key,
            )
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(
        trail("plugin", "net").await,
        ["registered", "version_added", "version_added"]
    );
    assert_eq!(
        trail("graph", "edge").await,
        ["created", "nodes_written", "migration_requested"]
    );
    let subjects: Vec<String> = sqlx::query_scalar!(
        "select subject as \"subject!\" from outbox where subject like 'graph.edge.%' or subject like 'plugin.%'
         order by position",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let before_the_run: Vec<&str> = subjects.iter().map(String::as_str).take(5).collect();
    assert_eq!(
        before_the_run,
        [
            "plugin.net.version",
            "graph.edge.created",
            "plugin.net.version",
            "graph.edge.nodes.written",
            "graph.edge.migration.requested",
        ]
    );
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn the_migration_history_contract(pool: PgPool) {
    let fleet = TestFleet::api_only(&pool).await;
    let (status, _) = fleet.get("/graphs/nope/migrations").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    plugin_and_graph(&fleet, "a").await;
    plugin_and_graph(&fleet, "b").await;
    let (status, runs) = fleet.get("/graphs/a/migrations").await;
    assert_eq!(
        (status, runs),
        (StatusCode::OK, json!({"items": [], "next_cursor": null})),
        "never migrated"
    );
    for query in [
        "limit=0",
        "limit=501",
        "limit=-1",
        "limit=many",
        "cursor=nope",
        "cursor=0190a0a0-0000-7000-8000-000000000000",
    ] {
        let (status, body) = fleet.get(&format!("/graphs/a/migrations?{query}")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
    }
    // Five finished runs on `a`, two of them at the same instant, and one on `b`.
    let graph = |slug: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar!("select id from graphs where slug = $1", slug)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let (a, b) = (graph("a").await, graph("b").await);
    let insert = |graph: Uuid, at: &'static str| {
        let pool = pool.clone();
        async move {
            let id = Uuid::now_v7();
            sqlx::query!(
                "insert into graph_migration_runs
                   (id, graph_id, from_version, to_version, status, workflow_run_id, created_at, finished_at)
                 values ($1, $2, 1, 1, 'failed', 'w', $3::text::timestamptz, $3::text::timestamptz)",
                id,
                graph,
                at,
            )
            .execute(&pool)
            .await
            .unwrap();
            id
        }
    };
    let oldest = insert(a, "2026-01-01T00:00:00Z").await;
    let tie_first = insert(a, "2026-01-02T00:00:00Z").await;
    let tie_second = insert(a, "2026-01-02T00:00:00Z").await;
    let newest = insert(a, "2026-01-03T00:00:00Z").await;
    let other = insert(b, "2026-01-04T00:00:00Z").await;
    let ids = |page: &Value| -> Vec<Uuid> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().parse().unwrap())
            .collect()
    };
    let (_, runs) = fleet.get("/graphs/a/migrations").await;
    // Newest first; the tie broken by id, descending (the later UUIDv7 first).
    assert_eq!(ids(&runs), [newest, tie_second, tie_first, oldest]);
    assert!(
        !ids(&runs).contains(&other),
        "another graph's run leaked in"
    );
    for field in [
        "graph_id",
        "from_version",
        "to_version",
        "status",
        "error",
        "workflow_run_id",
        "processed",
        "total",
        "created_at",
        "started_at",
        "finished_at",
    ] {
        assert!(runs["items"][0].get(field).is_some(), "{field} missing");
    }
    assert!(runs["next_cursor"].is_null(), "{runs}");
    // Pages follow the same order, across the tie, through `next_cursor`.
    let (_, first) = fleet.get("/graphs/a/migrations?limit=2").await;
    assert_eq!(ids(&first), [newest, tie_second]);
    assert_eq!(first["next_cursor"], json!(tie_second.to_string()));
    let (_, second) = fleet
        .get(&format!("/graphs/a/migrations?limit=2&cursor={tie_second}"))
        .await;
    assert_eq!(ids(&second), [tie_first, oldest]);
    assert!(second["next_cursor"].is_null(), "{second}");
    let (_, runs) = fleet.get("/graphs/b/migrations?limit=500").await;
    assert_eq!(ids(&runs), [other]);
    // Another graph's run is not a cursor of this one.
    let (status, body) = fleet
        .get(&format!("/graphs/a/migrations?cursor={other}"))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_10000_node_graph_migrates_across_two_versions_while_its_stream_follows(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    plugin_and_graph(&fleet, "big").await;
    write_nodes(&fleet, "big", 10_000).await;
    add_version(
        &fleet,
        2,
        json!([{"op": "rename", "from": "colour", "to": "color"}]),
    )
    .await;
    add_version(
        &fleet,
        3,
        json!([
            {"op": "set_default", "property": "weight", "value": 1},
            {"op": "map_values", "property": "kind", "mapping": [{"from": "sw", "to": "switch"}]}
        ]),
    )
    .await;
    let response = fleet
        .http
        .get(fleet.url("/graphs/big/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut frames = Box::pin(response.bytes_stream().eventsource().map(Result::unwrap));
    let snapshot = frames.next().await.unwrap();
    assert_eq!(snapshot.event, "snapshot");

    let (status, run) = fleet.post("/graphs/big/re-migrate", json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    assert_eq!(
        (&run["from_version"], &run["to_version"], &run["status"]),
        (&json!(1), &json!(3), &json!("pending"))
    );
    let mut seen = Vec::new();
    let followed = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(frame) = frames.next().await {
            seen.push(frame.event.clone());
            if frame.event == "migration.succeeded" || frame.event == "migration.failed" {
                return frame;
            }
        }
        panic!("the stream ended");
    })
    .await
    .expect("the migration did not end within 120s");
    assert_eq!(followed.event, "migration.succeeded", "{}", followed.data);
    assert_eq!(seen[0], "migration.requested");
    assert_eq!(seen[1], "migration.running");
    assert!(
        seen.iter().filter(|e| *e == "migration.progress").count() >= 10,
        "{seen:?}"
    );

    let (_, runs) = fleet.get("/graphs/big/migrations").await;
    let run = &runs["items"][0];
    assert_eq!(
        (&run["status"], &run["processed"], &run["total"]),
        (&json!("succeeded"), &json!(10_000), &json!(10_000))
    );
    assert!(run["started_at"].is_string() && run["finished_at"].is_string());
    let (_, graph) = fleet.get("/graphs/big").await;
    assert_eq!(
        (
            &graph["schema_version"],
            &graph["status"],
            &graph["read_only_reason"]
        ),
        (&json!(3), &json!("ready"), &Value::Null)
    );
    let migrated: i64 = sqlx::query_scalar!(
        r#"select count(*) as "count!" from graph_nodes where schema_version = 3
           and data = '{"color": "red", "kind": "switch", "weight": 1}'"#,
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(migrated, 10_000);
    let (status, _) = fleet
        .post(
            "/graphs/big/nodes",
            json!({"nodes": [{"id": "late", "data": {}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "writable again");
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn writes_are_refused_during_a_run_and_repair_then_retry_leaves_a_failed_one(pool: PgPool) {
    // No migrator in the fleet: the test works the run itself, step by step.
    let fleet = TestFleet::api_only(&pool).await;
    plugin_and_graph(&fleet, "g").await;
    write_nodes(&fleet, "g", 5).await;
    fleet
        .post(
            "/graphs/g/nodes",
            json!({"nodes": [{"id": "odd", "data": {"shade": "/srv/app/secret"}}]}),
        )
        .await;
    add_version(&fleet, 2, json!([{"op": "require", "property": "colour"}])).await;
    // No body at all: the plugin's current version.
    let (status, run) = harness::read(
        fleet
            .http
            .post(fleet.url("/graphs/g/re-migrate"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    let run_id: Uuid = run["id"].as_str().unwrap().parse().unwrap();

    let worker = migrator(&pool);
    assert_eq!(
        worker.work(run_id, 0).await.unwrap(),
        Worked::Paused,
        "claimed, then stopped"
    );
    let (status, refused) = fleet
        .post(
            "/graphs/g/nodes",
            json!({"nodes": [{"id": "x", "data": {}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        message(&refused).contains("read-only (migrating)"),
        "{refused}"
    );

    assert_eq!(
        worker.work(run_id, usize::MAX).await.unwrap(),
        Worked::Ended(MigrationRunStatus::Failed)
    );
    let (_, runs) = fleet.get("/graphs/g/migrations").await;
    let error = runs["items"][0]["error"].as_str().unwrap();
    assert_eq!(
        error,
        "node \"odd\": version 2 step 1 (require colour) failed: property \"colour\" is missing"
    );
    for internal in [
        "/srv",
        "secret",
        "panicked",
        ".rs:",
        "backtrace",
        "SQLSTATE",
    ] {
        assert!(
            !error.contains(internal),
            "the error leaks {internal:?}: {error}"
        );
    }
    // Failed: the graph is migration_failed, and writable so the data can be repaired.
    let (_, graph) = fleet.get("/graphs/g").await;
    assert_eq!(
        (
            &graph["status"],
            &graph["read_only_reason"],
            &graph["schema_version"]
        ),
        (&json!("migration_failed"), &Value::Null, &json!(1))
    );
    let (status, repaired) = fleet
        .post(
            "/graphs/g/nodes",
            json!({"nodes": [{"id": "odd", "data": {"colour": "blue"}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{repaired}");
    assert_eq!(
        repaired["schema_version"], 1,
        "written at the graph's version"
    );

    // Retrying now succeeds; the graph takes the new version and is ready.
    let (status, run) = fleet.post("/graphs/g/re-migrate", json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    assert_eq!(worker.run_until_idle().await.unwrap(), 1);
    let (_, graph) = fleet.get("/graphs/g").await;
    assert_eq!(
        (
            &graph["status"],
            &graph["read_only_reason"],
            &graph["schema_version"]
        ),
        (&json!("ready"), &Value::Null, &json!(2))
    );
    let (_, nodes) = fleet.get("/graphs/g/nodes").await;
    let odd = nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "odd")
        .unwrap();
    assert_eq!(
        (&odd["data"]["colour"], &odd["schema_version"]),
        (&json!("blue"), &json!(2))
    );
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn concurrent_re_migrate_requests_create_one_run(pool: PgPool) {
    let fleet = TestFleet::api_only(&pool).await;
    plugin_and_graph(&fleet, "g").await;
    add_version(&fleet, 2, json!([])).await;
    let requests = (0..6).map(|_| fleet.post("/graphs/g/re-migrate", json!({})));
    let statuses: Vec<StatusCode> = futures::future::join_all(requests)
        .await
        .into_iter()
        .map(|(status, _)| status)
        .collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::ACCEPTED)
            .count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count(),
        5,
        "{statuses:?}"
    );
    let runs: i64 = sqlx::query_scalar!(r#"select count(*) as "count!" from graph_migration_runs"#)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(runs, 1);
    let (_, refused) = fleet.post("/graphs/g/re-migrate", json!({})).await;
    assert!(message(&refused).contains("in flight"), "{refused}");
    fleet.stop().await;
}

/// Every item of a list, following `next_cursor` with pages of `limit`, and the
/// number of pages it took.
async fn every_page(fleet: &TestFleet, path: &str, limit: usize) -> (Vec<Value>, usize) {
    let viewer = harness::client_with(&harness::token(
        &fleet.config,
        switchyard_api::auth::Role::Viewer,
    ));
    let (mut items, mut pages) = (Vec::new(), 0);
    let mut url = fleet.url(&format!("{path}?limit={limit}"));
    loop {
        let (status, page) = harness::read(viewer.get(&url).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(cursor) => url = fleet.url(&format!("{path}?limit={limit}&cursor={cursor}")),
            None => return (items, pages),
        }
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn plugins_and_graphs_are_listed_by_name_a_page_at_a_time(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    for name in ["zeta", "alpha", "mid"] {
        let (status, body) = fleet
            .post(
                "/plugins",
                json!({"name": name, "versions": [{"version": 1, "steps": []}]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = fleet
            .post(
                "/graphs",
                json!({"slug": format!("{name}-graph"), "plugin": name}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = fleet
        .post(
            "/plugins/mid/versions",
            json!({"version": 2, "steps": [{"op": "remove", "property": "x"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let (plugins, pages) = every_page(&fleet, "/plugins", 2).await;
    assert_eq!(pages, 2);
    let summary: Vec<(&str, i64)> = plugins
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["current_version"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(summary, [("alpha", 1), ("mid", 2), ("zeta", 1)]);
    for plugin in &plugins {
        assert!(plugin["created_at"].is_string() && plugin["updated_at"].is_string());
        assert!(
            plugin.get("versions").is_none(),
            "a list item carries steps: {plugin}"
        );
    }

    let (graphs, pages) = every_page(&fleet, "/graphs", 2).await;
    assert_eq!(pages, 2);
    let summary: Vec<(&str, &str, i64)> = graphs
        .iter()
        .map(|g| {
            (
                g["slug"].as_str().unwrap(),
                g["plugin"].as_str().unwrap(),
                g["schema_version"].as_i64().unwrap(),
            )
        })
        .collect();
    // `mid-graph` was created at version 1; version 2 was added without ?migrate_graphs.
    assert_eq!(
        summary,
        [
            ("alpha-graph", "alpha", 1),
            ("mid-graph", "mid", 1),
            ("zeta-graph", "zeta", 1)
        ]
    );
    let (status, body) = fleet.get("/plugins?limit=501").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    fleet.stop().await;
}
