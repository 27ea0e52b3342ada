//! The HTTP surface: the happy path of every route, and bad input answered with a
//! clear 4xx that writes nothing.

use crate::harness;

use std::time::Duration;

use harness::{TestFleet, add};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

#[sqlx::test(migrations = "../migrations")]
async fn topology_and_mutation_round_trip(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let (status, created) = fleet
        .post(
            "/topologies",
            json!({"name": "edge", "document": {"nodes": {}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        (created["version"].clone(), created["status"].clone()),
        (json!(0), json!("idle"))
    );
    let id = created["id"].as_str().unwrap();

    let response = fleet
        .http
        .post(fleet.url(&format!("/topologies/{id}/mutations")))
        .json(&json!({"ops": [{"op": "add", "path": "/nodes/a", "value": {"kind": "router"}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let (_, accepted) = harness::read(response).await;
    assert_eq!(
        (accepted["seq"].clone(), accepted["status"].clone()),
        (json!(1), json!("pending"))
    );
    assert_eq!(
        location,
        format!("/api/v1/mutations/{}", accepted["id"].as_str().unwrap())
    );

    fleet.settle(Duration::from_secs(10)).await;
    let (_, mutation) = fleet.get(&location.replace("/api/v1", "")).await;
    assert_eq!(mutation["status"], "applied");
    assert_eq!(mutation["applied_version"], 1);
    assert!(mutation["finished_at"].is_string());
    let (_, topology) = fleet.get(&format!("/topologies/{id}")).await;
    assert_eq!(
        topology["document"],
        json!({"nodes": {"a": {"kind": "router"}}})
    );
    assert_eq!(
        (topology["version"].clone(), topology["status"].clone()),
        (json!(1), json!("idle"))
    );
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn lists_page_with_cursors_and_filter_by_status(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    for i in 0..5 {
        fleet.create_topology(&format!("t{i}"), json!({})).await;
    }
    let (_, first) = fleet.get("/topologies?limit=2").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = fleet
        .get(&format!("/topologies?limit=2&cursor={cursor}"))
        .await;
    let (_, third) = fleet
        .get(&format!(
            "/topologies?limit=2&cursor={}",
            second["next_cursor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(third["items"].as_array().unwrap().len(), 1);
    assert!(third["next_cursor"].is_null());
    let names: Vec<Value> = [&first, &second, &third]
        .iter()
        .flat_map(|page| {
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].clone())
        })
        .collect();
    assert_eq!(names, ["t0", "t1", "t2", "t3", "t4"].map(Value::from));

    let topology = fleet.create_topology("m", json!({"a": 1})).await;
    fleet.enqueue(topology, add("b", json!(2))).await;
    fleet
        .enqueue(topology, json!([{"op": "remove", "path": "/missing"}]))
        .await;
    fleet.enqueue(topology, add("c", json!(3))).await;
    fleet.settle(Duration::from_secs(10)).await;
    let (_, failed) = fleet
        .get(&format!("/topologies/{topology}/mutations?status=failed"))
        .await;
    let failed = failed["items"].as_array().unwrap().clone();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["seq"], 2);
    let (_, page) = fleet
        .get(&format!("/topologies/{topology}/mutations?limit=2"))
        .await;
    assert_eq!(page["next_cursor"], "2");
    let (_, rest) = fleet
        .get(&format!("/topologies/{topology}/mutations?cursor=2"))
        .await;
    assert_eq!(rest["items"][0]["seq"], 3);
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn health_and_readiness(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let healthz = fleet
        .http
        .get(format!("{}/healthz", fleet.base))
        .send()
        .await
        .unwrap();
    assert_eq!(healthz.status(), StatusCode::OK);
    let (status, ready) = harness::read(
        fleet
            .http
            .get(format!("{}/readyz", fleet.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ready, json!({"postgres": "ok", "nats": "ok"}));
    fleet.stop().await;
}

/// Sends a raw body and returns the status and the error message.
async fn raw(
    fleet: &TestFleet,
    path: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, String) {
    let response = fleet
        .http
        .post(fleet.url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, body) = harness::read(response).await;
    (
        status,
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[sqlx::test(migrations = "../migrations")]
async fn bad_input_gets_a_clear_4xx_and_writes_nothing(pool: PgPool) {
    let mut config = harness::isolated_config();
    config.http.body_limit_bytes = 4096;
    config.http.max_ops_per_mutation = 3;
    let fleet = TestFleet::start(&pool, config, switchyard::fleet::Roles::ALL).await;
    let topology = fleet.create_topology("t", json!({})).await;
    let mutations = format!("/topologies/{topology}/mutations");
    let unknown = format!("/topologies/{}/mutations", Uuid::now_v7());
    let json = "application/json";
    let op = json!({"op": "add", "path": "/a", "value": 1});
    let cases: Vec<(&str, &str, String, StatusCode, &str)> = vec![
        (
            unknown.as_str(),
            json,
            json!({"ops": [op]}).to_string(),
            StatusCode::NOT_FOUND,
            "does not exist",
        ),
        (
            &mutations,
            json,
            "{\"ops\": [".into(),
            StatusCode::BAD_REQUEST,
            "EOF",
        ),
        (
            &mutations,
            "text/plain",
            json!({"ops": [op]}).to_string(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/json",
        ),
        (
            &mutations,
            json,
            json!({"ops": [op], "force": true}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field `force`",
        ),
        (
            &mutations,
            json,
            json!({"ops": []}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "at least one",
        ),
        (
            &mutations,
            json,
            json!({"ops": [op, op, op, op]}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "limit is 3",
        ),
        (
            &mutations,
            json,
            json!({"ops": [{"op": "jump", "path": "/a"}]}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "ops[0]: unknown op",
        ),
        (
            &mutations,
            json,
            json!({"ops": [{"op": "add", "path": "a", "value": 1}]}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "ops[0]",
        ),
        (
            &mutations,
            json,
            json!({"ops": [op], "if_version": -1}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "if_version",
        ),
        (
            &mutations,
            json,
            json!({"ops": [{"op": "add", "path": "/a", "value": "x".repeat(5000)}]}).to_string(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "http.body_limit_bytes",
        ),
        (
            "/topologies",
            json,
            json!({"name": ""}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name must be",
        ),
        (
            "/topologies",
            json,
            json!({"name": "x", "version": 3}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field `version`",
        ),
        (
            "/topologies",
            json,
            json!({"name": "x", "id": Uuid::now_v7()}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field `id`",
        ),
        (
            "/topologies",
            json,
            json!({"name": "x", "status": "idle"}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field `status`",
        ),
        (
            "/topologies",
            json,
            json!({"name": "x", "created_at": "2026-01-01T00:00:00Z"}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field `created_at`",
        ),
        (
            &mutations,
            json,
            json!({"ops": [op], "status": "applied"}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field `status`",
        ),
        (
            "/topologies/not-a-uuid/mutations",
            json,
            json!({"ops": [op]}).to_string(),
            StatusCode::BAD_REQUEST,
            "UUID",
        ),
    ];
    for (path, content_type, body, expected, needle) in cases {
        let (status, message) = raw(&fleet, path, content_type, body.clone()).await;
        assert_eq!(status, expected, "{path} {body}: {message}");
        assert!(
            message.contains(needle),
            "{path} {body}: {message:?} lacks {needle:?}"
        );
    }
    for (query, needle) in [
        ("limit=0", "between 1 and 500"),
        ("limit=501", "between 1 and 500"),
        ("status=done", "unknown variant"),
        ("cursor=x", "cursor"),
        ("colour=red", "unknown field"),
    ] {
        let (status, body) = fleet.get(&format!("{mutations}?{query}")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(needle),
            "{query}: {body}"
        );
    }
    let (status, body) = fleet.get(&format!("/mutations/{}", Uuid::now_v7())).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let row = sqlx::query!(
        r#"select (select count(*) from topologies) as "topologies!", (select count(*) from mutations) as "mutations!", (select count(*) from outbox) as "outbox!""#,
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let written = (row.topologies, row.mutations, row.outbox);
    // One topology and its creation event; nothing from the refused requests.
    assert_eq!(written, (1, 0, 1), "bad input wrote rows");
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn an_enqueue_whose_outbox_write_fails_commits_nothing_and_leaks_nothing(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let topology = fleet.create_topology("t", json!({})).await;
    sqlx::query!(
        "create function refuse_outbox() returns trigger language plpgsql as
         $$ begin raise exception 'secret internal detail: outbox disk full'; end $$",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query!("create trigger refuse before insert on outbox_commits for each row execute function refuse_outbox()")
        .execute(&pool)
        .await
        .unwrap();

    let (status, body) = fleet
        .post(
            &format!("/topologies/{topology}/mutations"),
            json!({"ops": add("a", json!(1))}),
        )
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["error"]["code"], "internal");
    assert!(
        !body.to_string().contains("secret"),
        "500 leaked internals: {body}"
    );
    let row = sqlx::query!(
        r#"select (select count(*) from mutations) as "mutations!", last_seq from topologies"#
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let written = (row.mutations, row.last_seq);
    assert_eq!(written, (0, 0), "the mutation committed without its event");
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn wrong_methods_and_unready_dependencies_answer_in_json(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let (status, body) = harness::read(
        fleet
            .http
            .delete(fleet.url("/topologies"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("DELETE"),
        "{body}"
    );

    // An API whose database is gone is not ready, and says which dependency is down.
    let (doorbell, _relay) = switchyard_bus::Doorbell::channel(1);
    let closed = harness::own_pool(&pool).await;
    closed.close().await;
    let bus = switchyard_bus::Bus::connect(&fleet.config.bus, "test")
        .await
        .unwrap();
    let state = switchyard_api::AppState::new(
        closed,
        &bus,
        doorbell,
        fleet.config.api_settings(),
        b"unused",
        Default::default(),
    );
    let response = tower::ServiceExt::oneshot(
        switchyard_api::router(state),
        axum::http::Request::get("/readyz")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body, json!({"postgres": "unreachable", "nats": "ok"}));
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn document_size_and_request_time_are_limited(pool: PgPool) {
    let mut config = harness::isolated_config();
    config.documents.max_bytes = 64;
    let fleet = TestFleet::start(&pool, config, switchyard::fleet::Roles::ALL).await;
    let (status, body) = fleet
        .post(
            "/topologies",
            json!({"name": "big", "document": {"x": "y".repeat(100)}}),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("documents.max_bytes"),
        "{body}"
    );
    // A value that can never fit is refused on arrival.
    let topology = fleet.create_topology("small", json!({})).await;
    let (status, body) = fleet
        .post(
            &format!("/topologies/{topology}/mutations"),
            json!({"ops": add("x", json!("y".repeat(100)))}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the limit is 64 (documents.max_bytes)"),
        "{body}"
    );
    // A mutation that would grow the document past the limit fails, readably.
    let y40 = "y".repeat(40);
    let mutation = fleet
        .enqueue(
            topology,
            json!([{"op": "add", "path": "/x", "value": y40}, {"op": "add", "path": "/z", "value": y40}]),
        )
        .await;
    fleet.settle(Duration::from_secs(10)).await;
    let (_, failed) = fleet.get(&format!("/mutations/{mutation}")).await;
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["error"].as_str().unwrap().contains("limit is 64"),
        "{failed}"
    );
    fleet.stop().await;

    let mut config = harness::isolated_config();
    config.http.request_timeout = Duration::from_millis(300);
    let fleet = TestFleet::start(&pool, config, switchyard::fleet::Roles::ALL).await;
    // A request stuck behind a lock runs past the limit, however fast the machine.
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query!("lock table topologies in access exclusive mode")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let (status, body) = fleet.get("/topologies").await;
    blocker.rollback().await.unwrap();
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("http.request_timeout"),
        "{body}"
    );
    fleet.stop().await;
}
