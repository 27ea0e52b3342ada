//! No accepted input may poison a topology or blow up memory, over HTTP against a
//! running fleet: document depth and size are checked at creation, on arrival and as
//! each operation applies; a document stored before the limits existed still reads
//! and its mutations fail with a reason; JSON values compare by meaning (RFC 6902
//! §4.6), in `test` and in retried requests; node data and step values keep the
//! same limits.

use crate::harness;

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use harness::{TestFleet, client_with, token};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use switchyard_api::auth::Role;
use switchyard_domain::status::TopologyStatus;
use uuid::Uuid;

/// `{"d": {"d": … 0 …}}`, `levels` objects deep.
fn nested(levels: usize) -> Value {
    (0..levels).fold(json!(0), |inner, _| json!({ "d": inner }))
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

/// Enqueues `ops`, waits for the fleet to settle, and returns the mutation.
async fn outcome(fleet: &TestFleet, topology: Uuid, ops: Value) -> Value {
    let id = fleet.enqueue(topology, ops).await;
    fleet.settle(Duration::from_secs(30)).await;
    let (status, mutation) = fleet.get(&format!("/mutations/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{mutation}");
    mutation
}

/// Every read of `topology` answers 200, for a viewer too: one, the list, the
/// event stream's snapshot.
async fn reads_never_fail(fleet: &TestFleet, topology: Uuid) {
    let viewer = client_with(&token(&fleet.config, Role::Viewer));
    for path in [format!("/topologies/{topology}"), "/topologies".to_owned()] {
        let response = viewer.get(fleet.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        let body = response.text().await.unwrap();
        assert!(body.contains(&topology.to_string()), "GET {path}");
    }
    let path = format!("/topologies/{topology}/events");
    let response = viewer.get(fleet.url(&path)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    let mut frames = Box::pin(response.bytes_stream().eventsource());
    let snapshot = tokio::time::timeout(Duration::from_secs(15), frames.next())
        .await
        .expect("no snapshot")
        .unwrap()
        .unwrap();
    assert_eq!(snapshot.event, "snapshot");
    assert!(snapshot.data.contains(&topology.to_string()));
}

#[sqlx::test(migrations = "../migrations")]
async fn a_document_past_the_depth_limit_is_refused_at_creation_naming_the_limit(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    // The issue's input: 120 levels.
    let (status, body) = fleet
        .post(
            "/topologies",
            json!({"name": "deep", "document": nested(120)}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        message(&body),
        "document is nested 120 levels deep; the limit is 64 (documents.max_depth)"
    );
    // At the limit it is accepted.
    fleet.create_topology("at-limit", nested(64)).await;
    let topologies: i64 = sqlx::query_scalar!(r#"select count(*) as "count!" from topologies"#)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(topologies, 1, "the refused one changed nothing");
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_body_past_what_json_is_read_to_is_a_422_naming_the_limit(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let deep = format!("{}0{}", "[".repeat(200), "]".repeat(200));
    for (body, why) in [
        (
            format!(r#"{{"name": "t", "document": {deep}}}"#),
            "nested deeper than 128 levels",
        ),
        (
            r#"{"name": "t", "document": {"x": 1e400}}"#.to_owned(),
            "numbers must be within ±1e300",
        ),
    ] {
        let (status, refused) = post_raw(&fleet, "/topologies", &body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
        assert!(message(&refused).contains(why), "{refused}");
        assert!(message(&refused).len() < 200, "{refused}");
    }
    let (status, _) = post_raw(&fleet, "/topologies", r#"{"name": "t", "#).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "malformed JSON is still a 400"
    );
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_mutation_that_would_nest_too_deep_is_refused_or_fails_and_reads_never_fail(
    pool: PgPool,
) {
    let fleet = TestFleet::up(&pool).await;
    let topology = fleet
        .create_topology("t", json!({"deep": nested(60), "wide": nested(10)}))
        .await;
    // The issue's mutation shape: deep path, nested value. It can never fit: 422.
    let path = format!("{}/x", "/d".repeat(119));
    let (status, body) = fleet
        .post(
            &format!("/topologies/{topology}/mutations"),
            json!({"ops": [{"op": "add", "path": path, "value": nested(10)}]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        message(&body).starts_with("ops[0]: `path` has 120 tokens; the limit is 64"),
        "{body}"
    );
    let path = format!("/deep{}/x", "/d".repeat(58));
    let (status, body) = fleet
        .post(
            &format!("/topologies/{topology}/mutations"),
            json!({"ops": [{"op": "add", "path": path, "value": nested(10)}]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(message(&body).contains("documents.max_depth"), "{body}");

    // Whether a copy or a move lands too deep depends on the document: it fails.
    let into_deep = format!("/deep{}/x", "/d".repeat(55));
    for op in ["copy", "move"] {
        let mutation = outcome(
            &fleet,
            topology,
            json!([{"op": op, "from": "/wide", "path": into_deep}]),
        )
        .await;
        assert_eq!(mutation["status"], "failed", "{mutation}");
        let error = mutation["error"].as_str().unwrap();
        assert!(
            error.contains("the value is nested 67 levels deep; the limit is 64"),
            "{error}"
        );
    }
    reads_never_fail(&fleet, topology).await;
    // The topology is not poisoned: the next mutation applies.
    let mutation = outcome(&fleet, topology, harness::add("later", json!(1))).await;
    assert_eq!(mutation["status"], "applied", "{mutation}");
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_document_stored_before_the_limits_reads_and_its_mutations_fail_with_a_reason(
    pool: PgPool,
) {
    let fleet = TestFleet::up(&pool).await;
    let topology = fleet.create_topology("legacy", json!({})).await;
    // Deeper than serde_json reads (128), as an earlier version could leave it.
    let deep = format!("{}0{}", "[".repeat(130), "]".repeat(130));
    sqlx::query!(
        "update topologies set document = $1::text::jsonb where id = $2",
        &deep,
        topology,
    )
    .execute(&pool)
    .await
    .unwrap();
    reads_never_fail(&fleet, topology).await;
    let (_, text) = harness::read(
        fleet
            .http
            .get(fleet.url(&format!("/topologies/{topology}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        text.as_str().unwrap_or_default().contains(&"[".repeat(130)),
        "the document as stored"
    );
    for _ in 0..2 {
        let mutation = outcome(&fleet, topology, harness::add("x", json!(1))).await;
        assert_eq!(mutation["status"], "failed", "{mutation}");
        assert!(
            mutation["error"]
                .as_str()
                .unwrap()
                .contains("stored document cannot be read"),
            "{mutation}"
        );
    }
    let status =
        sqlx::query_scalar!(r#"select status as "status: TopologyStatus" from topologies"#)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(status, TopologyStatus::Idle, "nothing left pending");
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_self_copying_mutation_fails_at_the_first_operation_past_the_size_limit(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let topology = fleet
        .create_topology("t", json!({"a": [0, 1, 2, 3, 4, 5, 6, 7]}))
        .await;
    // The issue's input: 22 copies of /a into itself, about 1 KB of request.
    let ops: Vec<Value> = (0..22)
        .map(|_| json!({"op": "copy", "from": "/a", "path": "/a/-"}))
        .collect();
    let mutation = outcome(&fleet, topology, Value::Array(ops)).await;
    assert_eq!(mutation["status"], "failed", "{mutation}");
    let error = mutation["error"].as_str().unwrap();
    // Each copy more than doubles /a (18 · 2^k - 1 bytes after k copies): 512 KiB
    // would be passed at the 15th operation, index 14, which is refused before the
    // copy is made.
    assert!(
        error.starts_with(
            "ops[14] failed at path '/a/-': the document would be at least 589828 bytes"
        ),
        "{error}"
    );
    assert!(
        error.ends_with("bytes; the limit is 524288 (documents.max_bytes)"),
        "{error}"
    );
    let (_, read) = fleet.get(&format!("/topologies/{topology}")).await;
    assert_eq!(
        (&read["document"], &read["version"]),
        (&json!({"a": [0, 1, 2, 3, 4, 5, 6, 7]}), &json!(0))
    );
    let mutation = outcome(&fleet, topology, harness::add("b", json!(1))).await;
    assert_eq!(mutation["status"], "applied", "{mutation}");
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn test_compares_numbers_by_value_as_rfc_6902_says(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    // The issue's input.
    let (status, created) = fleet
        .post(
            "/topologies",
            json!({"name": "num", "document": {"weight": 2.0}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let topology: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let mutation = outcome(
        &fleet,
        topology,
        json!([{"op": "test", "path": "/weight", "value": 2}]),
    )
    .await;
    assert_eq!(mutation["status"], "applied", "{mutation}");

    // Every spelling, also inside arrays and objects; bodies sent as raw JSON text.
    let doc = r#"{"one": 1, "hundred": 100, "zero": 0, "list": [1, {"x": 2.5}], "obj": {"n": 3}}"#;
    let (status, created) = post_raw(
        &fleet,
        "/topologies",
        &format!(r#"{{"name": "n", "document": {doc}}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let topology: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let tests = r#"[
        {"op": "test", "path": "/one", "value": 1.0},
        {"op": "test", "path": "/hundred", "value": 1e2},
        {"op": "test", "path": "/zero", "value": -0.0},
        {"op": "test", "path": "/list", "value": [1.0, {"x": 25e-1}]},
        {"op": "test", "path": "/obj", "value": {"n": 3.0}}
    ]"#;
    let path = format!("/topologies/{topology}/mutations");
    let (status, enqueued) = post_raw(&fleet, &path, &format!(r#"{{"ops": {tests}}}"#)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{enqueued}");
    fleet.settle(Duration::from_secs(30)).await;
    let (_, mutation) = fleet
        .get(&format!("/mutations/{}", enqueued["id"].as_str().unwrap()))
        .await;
    assert_eq!(mutation["status"], "applied", "{mutation}");
    // Different numbers still differ.
    let mutation = outcome(
        &fleet,
        topology,
        json!([{"op": "test", "path": "/one", "value": 1.5}]),
    )
    .await;
    assert_eq!(mutation["status"], "failed", "{mutation}");
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_retry_that_spells_a_number_differently_is_the_same_request(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let topology = fleet.create_topology("t", json!({})).await;
    let path = format!("/topologies/{topology}/mutations");
    let send = |body: &'static str| {
        fleet
            .http
            .post(fleet.url(&path))
            .header("content-type", "application/json")
            .header("idempotency-key", "weigh-1")
            .body(body)
            .send()
    };
    let first = send(r#"{"ops": [{"op": "add", "path": "/w", "value": 2.0}]}"#)
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    let retry = send(r#"{"ops": [{"op": "add", "path": "/w", "value": 2}]}"#)
        .await
        .unwrap();
    assert_eq!(retry.status(), StatusCode::OK, "the original, replayed");
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry["id"], first["id"]);
    let other = send(r#"{"ops": [{"op": "add", "path": "/w", "value": 2.5}]}"#)
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn node_data_and_step_values_keep_the_document_limits(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let (status, body) = fleet
        .post(
            "/plugins",
            json!({"name": "net", "versions": [{"version": 1, "steps": []}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    fleet
        .post("/graphs", json!({"slug": "g", "plugin": "net"}))
        .await;
    let (status, body) = fleet
        .post(
            "/graphs/g/nodes",
            json!({"nodes": [{"id": "ok", "data": {}}, {"id": "deep", "data": {"x": nested(70)}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        message(&body),
        "nodes[1].data is nested 71 levels deep; the limit is 64 (documents.max_depth)"
    );
    let (status, body) = fleet
        .post(
            "/plugins/net/versions",
            json!({"version": 2, "steps": [{"op": "set_default", "property": "x", "value": nested(64)}]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        message(&body),
        "version 2 step 1: a node holding its value as \"x\" is nested 65 levels deep; the limit is 64 (documents.max_depth)"
    );
    // A value that fits alone, but not in a node beside its property name: 413.
    let (status, body) = fleet
        .post(
            "/plugins/net/versions",
            json!({"version": 2, "steps": [{"op": "set_default", "property": "x", "value": "v".repeat(524_282)}]}),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(message(&body).contains("is 524290 bytes"), "{body}");
    let (status, body) = post_raw(
        &fleet,
        "/plugins/net/versions",
        r#"{"version": 2, "steps": [{"op": "set_default", "property": "x", "value": 1.7976931348623157e308}]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(message(&body).contains("±1e300"), "{body}");
    let nodes: i64 = sqlx::query_scalar!(r#"select count(*) as "count!" from graph_nodes"#)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(nodes, 0, "a refused write writes nothing");
    fleet.stop().await;
}

/// POSTs `body` as it is written (numbers keep their spelling).
async fn post_raw(fleet: &TestFleet, path: &str, body: &str) -> (StatusCode, Value) {
    let response = fleet
        .http
        .post(fleet.url(path))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    harness::read(response).await
}
