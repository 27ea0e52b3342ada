//! How the API reads requests, whatever the resource: every refusal has a JSON error
//! body (hyper's own parse errors included), 404 and 405 name the full path, a JSON
//! Patch arrives in either media type, an explicit `null` is never read as "left
//! out", and every message names an operation as `ops[N]`.

use crate::harness;

use std::time::Duration;

use harness::TestFleet;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use switchyard_api::auth::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

/// Asserts the usual error shape, with a code and a message, and returns the message.
fn error_message(status: StatusCode, body: &Value, case: &str) -> String {
    let code = body["error"]["code"].as_str().unwrap_or_default();
    let text = message(body);
    assert!(
        !code.is_empty() && !text.is_empty(),
        "{case}: {status} without a JSON error body: {body}"
    );
    text.to_owned()
}

/// An answer read off the wire: status, head and body.
struct Raw {
    status: StatusCode,
    head: String,
    body: Value,
}

/// Reads one answer from `stream`: its head, then `content-length` bytes of body.
async fn read_answer(stream: &mut TcpStream) -> Raw {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        assert!(n > 0, "the connection closed without an answer: {bytes:?}");
        bytes.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(bytes[..head_end].to_vec()).unwrap();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .unwrap_or(0);
    while bytes.len() < head_end + length {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the body was cut off");
        bytes.extend_from_slice(&chunk[..n]);
    }
    let status = StatusCode::from_u16(head[9..12].parse().unwrap()).unwrap();
    let body = serde_json::from_slice(&bytes[head_end..head_end + length]).unwrap_or(Value::Null);
    Raw { status, head, body }
}

/// Sends `request` as written, byte for byte (no client fixes it up), and reads the
/// answer.
async fn send_raw(fleet: &TestFleet, request: &str) -> Raw {
    let mut stream = TcpStream::connect(fleet.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    read_answer(&mut stream).await
}

#[sqlx::test(migrations = "../migrations")]
async fn every_refusal_has_a_json_error_body(pool: PgPool) {
    let mut config = harness::isolated_config();
    config.http.body_limit_bytes = 4096;
    let roles = switchyard::fleet::Roles {
        api: true,
        ..switchyard::fleet::Roles::NONE
    };
    let fleet = TestFleet::start(&pool, config, roles).await;
    let token = harness::token(&fleet.config, Role::Admin);
    let auth = format!("Authorization: Bearer {token}\r\n");

    // Requests hyper cannot parse: it answers them itself, before any route runs.
    let long = "a".repeat(70_000);
    let many: String = (0..100).map(|i| format!("x-header-{i}: v\r\n")).collect();
    let unparseable = [
        (
            "an unencoded > in a query",
            format!("GET /api/v1/events?subject=topology.> HTTP/1.1\r\nHost: x\r\n{auth}\r\n"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "a space in a path",
            format!("GET /api/v1/topo logies HTTP/1.1\r\nHost: x\r\n{auth}\r\n"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "a header without a colon",
            format!("GET /api/v1/topologies HTTP/1.1\r\nHost: x\r\n{auth}Not a header\r\n\r\n"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "a URI past 64 KiB",
            format!("GET /api/v1/topologies?x={long} HTTP/1.1\r\nHost: x\r\n{auth}\r\n"),
            StatusCode::URI_TOO_LONG,
        ),
        (
            "more than 100 headers",
            format!("GET /api/v1/topologies HTTP/1.1\r\nHost: x\r\n{auth}{many}\r\n"),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ),
    ];
    for (case, request, expected) in unparseable {
        let answer = send_raw(&fleet, &request).await;
        assert_eq!(answer.status, expected, "{case}: {}", answer.head);
        assert!(
            answer
                .head
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{case}: {}",
            answer.head
        );
        error_message(answer.status, &answer.body, case);
    }
    let answer = send_raw(
        &fleet,
        &format!("GET /api/v1/events?subject=topology.> HTTP/1.1\r\nHost: x\r\n{auth}\r\n"),
    )
    .await;
    assert!(message(&answer.body).contains("%3E"), "{}", answer.body);
    let answer = send_raw(
        &fleet,
        &format!("GET /api/v1/topologies HTTP/1.1\r\nHost: x\r\n{auth}{many}\r\n"),
    )
    .await;
    assert_eq!(
        answer.body["error"]["code"], "headers_too_large",
        "{}",
        answer.body
    );
    assert!(
        message(&answer.body).contains("at most 100 headers"),
        "{}",
        answer.body
    );

    // A connection that served a request, then sends one hyper cannot parse.
    let mut stream = TcpStream::connect(fleet.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let first = read_answer(&mut stream).await;
    assert_eq!(
        (first.status, first.body),
        (StatusCode::OK, json!({"status": "ok"}))
    );
    stream
        .write_all(b"GET /healthz?q=<x> HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let second = read_answer(&mut stream).await;
    assert_eq!(second.status, StatusCode::BAD_REQUEST, "{}", second.head);
    error_message(second.status, &second.body, "after a served request");

    // Requests the routes refuse: a bad path id, a query parameter of the wrong type,
    // bad JSON, a bad header, an unreadable or oversized body.
    let topology = fleet.create_topology("t", json!({})).await;
    let mutations = fleet.url(&format!("/topologies/{topology}/mutations"));
    let http = &fleet.http;
    let cases = [
        (
            "a path id that is not a UUID",
            http.get(fleet.url("/topologies/not-a-uuid")),
            StatusCode::BAD_REQUEST,
            "`id`",
        ),
        (
            "a query parameter of the wrong type",
            http.get(fleet.url("/topologies?limit=many")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "limit",
        ),
        (
            "an encoded query with an unknown parameter",
            http.get(fleet.url("/events?subject=topology.%3E&colour=red")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "colour",
        ),
        (
            "JSON cut short",
            http.post(fleet.url("/topologies"))
                .header("content-type", "application/json")
                .body("{\"name\": "),
            StatusCode::BAD_REQUEST,
            "EOF",
        ),
        (
            "a bad Idempotency-Key",
            http.post(&mutations)
                .header("idempotency-key", "with space")
                .json(&json!({"ops": [{"op": "add", "path": "/a", "value": 1}]})),
            StatusCode::BAD_REQUEST,
            "Idempotency-Key",
        ),
        (
            "a re-migrate body that is not JSON",
            http.post(fleet.url("/graphs/g/re-migrate")).body("{nope"),
            StatusCode::BAD_REQUEST,
            "not JSON",
        ),
        (
            "a re-migrate body past the body limit",
            http.post(fleet.url("/graphs/g/re-migrate"))
                .body(format!("\"{}\"", "x".repeat(8 * 1024))),
            StatusCode::PAYLOAD_TOO_LARGE,
            "http.body_limit_bytes",
        ),
    ];
    for (case, request, expected, named) in cases {
        let (status, body) = harness::read(request.send().await.unwrap()).await;
        assert_eq!(status, expected, "{case}: {body}");
        let text = error_message(status, &body, case);
        assert!(text.contains(named), "{case}: {text}");
    }
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn not_found_and_wrong_method_name_the_full_path(pool: PgPool) {
    let fleet = TestFleet::api_only(&pool).await;
    let (status, body) = fleet.get("/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(message(&body), "no route for GET /api/v1/nope");
    let response = fleet
        .http
        .get(format!("{}/nope", fleet.base))
        .send()
        .await
        .unwrap();
    let (status, body) = harness::read(response).await;
    assert_eq!(
        (status, message(&body)),
        (StatusCode::NOT_FOUND, "no route for GET /nope")
    );

    for (method, path, allowed) in [
        (
            reqwest::Method::DELETE,
            "/api/v1/topologies",
            "GET, HEAD, POST",
        ),
        (
            reqwest::Method::PUT,
            "/api/v1/repos/billing",
            "GET, HEAD, PATCH",
        ),
        (reqwest::Method::POST, "/healthz", "GET, HEAD"),
    ] {
        let response = fleet
            .http
            .request(method.clone(), format!("{}{path}", fleet.base))
            .send()
            .await
            .unwrap();
        let allow = response.headers()["allow"].to_str().unwrap().to_owned();
        let (status, body) = harness::read(response).await;
        assert_eq!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {body}"
        );
        assert_eq!(allow, allowed.replace(", ", ","), "{method} {path}");
        assert_eq!(
            message(&body),
            format!("{path} does not accept {method}; it accepts {allowed}")
        );
    }
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_wrong_method_answer_keeps_its_cors_headers(pool: PgPool) {
    let origin = "https://editor.example.com";
    let mut config = harness::isolated_config();
    config.http.cors_origins = vec![origin.to_owned()];
    let roles = switchyard::fleet::Roles {
        api: true,
        ..switchyard::fleet::Roles::NONE
    };
    let fleet = TestFleet::start(&pool, config, roles).await;
    let response = fleet
        .http
        .delete(fleet.url("/topologies"))
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    let headers = response.headers().clone();
    let (status, body) = harness::read(response).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    // A browser page on the allowed origin may read the answer, message included.
    assert_eq!(headers["access-control-allow-origin"], origin);
    assert_eq!(headers["allow"], "GET,HEAD,POST");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        message(&body),
        "/api/v1/topologies does not accept DELETE; it accepts GET, HEAD, POST"
    );
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_json_patch_arrives_in_either_media_type(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let topology = fleet.create_topology("t", json!({"nodes": {}})).await;
    let path = fleet.url(&format!("/topologies/{topology}/mutations"));
    let patch = json!([{"op": "add", "path": "/nodes/r1", "value": {"kind": "router"}}]);
    let send = |content_type: &str, body: &Value, key: Option<&str>| {
        let mut request = fleet
            .http
            .post(&path)
            .header("content-type", content_type)
            .body(body.to_string());
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        async move { harness::read(request.send().await.unwrap()).await }
    };

    // RFC 6902's own media type: the bare array.
    let (status, created) = send("application/json-patch+json", &patch, Some("k1")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    assert_eq!(
        (&created["ops"], &created["if_version"]),
        (&patch, &Value::Null)
    );
    // A retry with the same key, in either media type, is the same request.
    let (status, again) = send("application/json-patch+json", &patch, Some("k1")).await;
    assert_eq!((status, &again["id"]), (StatusCode::OK, &created["id"]));
    let (status, again) = send("application/json", &json!({"ops": patch}), Some("k1")).await;
    assert_eq!((status, &again["id"]), (StatusCode::OK, &created["id"]));

    // Each shape under the other's media type says which to send.
    let (status, body) = send("application/json", &patch, None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        message(&body).contains("{\"ops\": [...]}")
            && message(&body).contains("application/json-patch+json"),
        "{body}"
    );
    let (status, body) = send("application/json-patch+json", &json!({"ops": patch}), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(message(&body).contains("bare RFC 6902 array"), "{body}");
    let (status, body) = send("text/plain", &patch, None).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert!(
        message(&body).contains("application/json-patch+json"),
        "{body}"
    );
    // Operations are checked the same way in both.
    let (status, body) = send(
        "application/json-patch+json",
        &json!([{"op": "frob", "path": "/a"}]),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(message(&body).starts_with("ops[0]: unknown op"), "{body}");
    // If-Match is refused, not silently ignored.
    let response = fleet
        .http
        .post(&path)
        .header("content-type", "application/json-patch+json")
        .header("if-match", "\"3\"")
        .body(patch.to_string())
        .send()
        .await
        .unwrap();
    let (status, body) = harness::read(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(message(&body).contains("if_version"), "{body}");

    fleet.settle(Duration::from_secs(15)).await;
    let (_, topology) = fleet.get(&format!("/topologies/{topology}")).await;
    assert_eq!(
        (&topology["version"], &topology["document"]),
        (&json!(1), &json!({"nodes": {"r1": {"kind": "router"}}}))
    );
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn null_on_a_field_that_cannot_be_cleared_is_a_422_naming_it(pool: PgPool) {
    let fleet = TestFleet::api_only(&pool).await;
    let (status, body) = fleet
        .post(
            "/repos",
            json!({"slug": "billing", "name": "Billing", "domain": "payments"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = fleet.patch("/repos/billing", json!({"name": null})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        message(&body).contains("name: null is not a value"),
        "{body}"
    );
    // A clearable field still clears.
    let (status, repo) = fleet.patch("/repos/billing", json!({"domain": null})).await;
    assert_eq!(status, StatusCode::OK, "{repo}");
    assert_eq!(
        (&repo["name"], &repo["domain"]),
        (&json!("Billing"), &Value::Null)
    );

    let draft = json!({
        "repo_slug": "billing", "interface_type": "rest_api", "change_type": "breaking",
        "title": "v2", "description": "d", "affected_paths": ["GET /v1"],
        "affected_repo_slugs": ["web"], "planned_for": "2027-01-15"});
    let mut with_null_author = draft.clone();
    with_null_author["author"] = Value::Null;
    let (status, body) = fleet.post("/interface-changes", with_null_author).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(message(&body).contains("author: null"), "{body}");
    let (status, change) = fleet.post("/interface-changes", draft).await;
    assert_eq!(status, StatusCode::CREATED, "{change}");
    let path = format!("/interface-changes/{}", change["id"].as_str().unwrap());
    for field in [
        "interface_type",
        "change_type",
        "title",
        "description",
        "affected_paths",
        "affected_repo_slugs",
        "author",
    ] {
        let (status, body) = fleet.patch(&path, json!({ field: null })).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {body}");
        assert!(message(&body).contains(&format!("{field}: null")), "{body}");
    }
    let (status, edited) = fleet.patch(&path, json!({"planned_for": null})).await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(
        (&edited["planned_for"], &edited["title"]),
        (&Value::Null, &json!("v2"))
    );

    // A topology's document is any JSON value, null included; left out, it is {}.
    let (status, topology) = fleet
        .post("/topologies", json!({"name": "n", "document": null}))
        .await;
    assert_eq!(
        (status, &topology["document"]),
        (StatusCode::CREATED, &Value::Null)
    );
    let (status, topology) = fleet.post("/topologies", json!({"name": "n"})).await;
    assert_eq!(
        (status, &topology["document"]),
        (StatusCode::CREATED, &json!({}))
    );
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn apply_time_failures_name_the_operation_like_arrival_time_refusals(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let topology = fleet.create_topology("t", json!({"a": 1})).await;
    let failed_test = fleet
        .enqueue(
            topology,
            json!([{"op": "add", "path": "/b", "value": 1}, {"op": "test", "path": "/a", "value": 2}]),
        )
        .await;
    let missing_path = fleet
        .enqueue(
            topology,
            json!([{"op": "add", "path": "/b", "value": 1}, {"op": "remove", "path": "/missing"}]),
        )
        .await;
    fleet.settle(Duration::from_secs(15)).await;
    let reader = &fleet;
    let error = |id: Uuid| async move {
        let (_, mutation) = reader.get(&format!("/mutations/{id}")).await;
        assert_eq!(mutation["status"], "failed", "{mutation}");
        mutation["error"].as_str().unwrap().to_owned()
    };
    assert_eq!(
        error(failed_test).await,
        "ops[1] failed at path '/a': value did not match"
    );
    assert_eq!(
        error(missing_path).await,
        "ops[1] failed at path '/missing': there is no value at this path"
    );
    let (status, body) = fleet
        .post(
            &format!("/topologies/{topology}/mutations"),
            json!({"ops": [{"op": "add", "path": "/b", "value": 1}, {"op": "remove", "path": "no-slash"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(message(&body).starts_with("ops[1]: "), "{body}");
    fleet.stop().await;
}
