//! Authentication before existence, roles, stream tokens, and the served contract.

mod harness;

use std::time::Duration;

use harness::{TestFleet, client_with, token};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use switchyard_api::auth::{Role, RoutePolicy};
use uuid::Uuid;

/// A request body that passes validation for each operation that takes one.
fn valid_body(method: &Method, template: &str) -> Option<Value> {
    match (method.as_str(), template) {
        ("POST", "/api/v1/topologies") => Some(json!({"name": "walk"})),
        ("POST", "/api/v1/topologies/{id}/mutations") => {
            Some(json!({"ops": [{"op": "add", "path": "/a", "value": 1}]}))
        }
        ("POST", "/api/v1/stream-tokens") => Some(json!({"path": "/api/v1/events"})),
        ("POST", "/api/v1/repos") => Some(json!({"slug": "walk", "name": "walk"})),
        ("POST", "/api/v1/interface-changes") => Some(json!({
            "repo_slug": "walk", "interface_type": "cli", "change_type": "additive",
            "title": "t", "description": "d", "affected_paths": [], "affected_repo_slugs": []
        })),
        ("POST", "/api/v1/plugins") => {
            Some(json!({"name": "walk", "versions": [{"version": 1, "steps": []}]}))
        }
        ("POST", "/api/v1/plugins/{name}/versions") => Some(json!({"version": 2, "steps": []})),
        ("POST", "/api/v1/graphs") => Some(json!({"slug": "walk", "plugin": "walk"})),
        ("POST", "/api/v1/graphs/{slug}/nodes") => {
            Some(json!({"nodes": [{"id": "a", "data": {}}]}))
        }
        ("PATCH", _) => Some(json!({})),
        (_, _) => None,
    }
}

async fn call(http: &reqwest::Client, base: &str, method: &Method, template: &str) -> StatusCode {
    let path = template
        .replace("{id}", &Uuid::now_v7().to_string())
        .replace("{message_id}", &Uuid::now_v7().to_string())
        .replace("{run_id}", &Uuid::now_v7().to_string())
        .replace("{slug}", "no-such-thing")
        .replace("{name}", "no-such-plugin");
    let mut request = http.request(method.clone(), format!("{base}{path}"));
    if let Some(body) = valid_body(method, template) {
        request = request.json(&body);
    }
    request.send().await.unwrap().status()
}

fn lower(role: Role) -> Option<Role> {
    match role {
        Role::Viewer => None,
        Role::Operator => Some(Role::Viewer),
        Role::Admin => Some(Role::Operator),
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn every_route_answers_401_then_403_then_404(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let policy = RoutePolicy::from_openapi(&switchyard_api::openapi());
    let routes: Vec<(Method, String, Role)> = policy
        .routes()
        .map(|(m, p, r)| (m.clone(), p.to_owned(), r))
        .collect();
    assert!(
        routes.len() >= 7,
        "the route table is suspiciously small: {routes:?}"
    );
    let anonymous = reqwest::Client::new();
    let forged = client_with("not.a.token");
    let other_secret = client_with(
        &switchyard_api::auth::Authenticator::new(b"a different deployment's secret!!").mint(
            "x",
            Role::Admin,
            Duration::from_secs(60),
        ),
    );
    for (method, template, role) in &routes {
        let what = format!("{method} {template}");
        for client in [&anonymous, &forged, &other_secret] {
            assert_eq!(
                call(client, &fleet.base, method, template).await,
                StatusCode::UNAUTHORIZED,
                "{what}"
            );
        }
        if let Some(weaker) = lower(*role) {
            let weak = client_with(&token(&fleet.config, weaker));
            assert_eq!(
                call(&weak, &fleet.base, method, template).await,
                StatusCode::FORBIDDEN,
                "{what}"
            );
        }
        let strong = client_with(&token(&fleet.config, *role));
        let status = call(&strong, &fleet.base, method, template).await;
        assert!(
            status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
            "{what}: {status}"
        );
        if ["{id}", "{slug}", "{name}"]
            .iter()
            .any(|p| template.contains(p))
        {
            assert_eq!(status, StatusCode::NOT_FOUND, "{what} with an unknown id");
        }
    }
    // HEAD runs the GET handler, so it is held to GET's role.
    let viewer = client_with(&token(&fleet.config, Role::Viewer));
    let head = viewer.head(format!("{}/api/v1/events?subject=topology.>", fleet.base));
    assert_eq!(head.send().await.unwrap().status(), StatusCode::FORBIDDEN);
    let head = anonymous.head(format!("{}/api/v1/topologies", fleet.base));
    assert_eq!(
        head.send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // Paths no route serves: 401 first, 404 only with credentials.
    assert_eq!(
        call(
            &anonymous,
            &fleet.base,
            &Method::GET,
            "/api/v1/nothing/here"
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(
            &fleet.http,
            &fleet.base,
            &Method::GET,
            "/api/v1/nothing/here"
        )
        .await,
        StatusCode::NOT_FOUND
    );
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn the_actor_is_the_token_subject(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let topology = fleet.create_topology("t", json!({})).await;
    let secret = fleet.config.auth.secret.clone().unwrap();
    let ada = client_with(
        &switchyard_api::auth::Authenticator::new(secret.as_bytes()).mint(
            "ada",
            Role::Operator,
            Duration::from_secs(60),
        ),
    );
    let response = ada
        .post(fleet.url(&format!("/topologies/{topology}/mutations")))
        .json(&json!({"ops": [{"op": "add", "path": "/a", "value": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    fleet.settle(Duration::from_secs(10)).await;
    let actor: String = sqlx::query_scalar("select actor from mutation_audit")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(actor, "ada");
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn stream_tokens_are_scoped_and_api_tokens_stay_out_of_urls(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let path = format!("/api/v1/topologies/{}/events", Uuid::now_v7());
    let (status, minted) = fleet.post("/stream-tokens", json!({"path": path})).await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    let stream_token = minted["token"].as_str().unwrap();
    let expires =
        chrono::DateTime::parse_from_rfc3339(minted["expires_at"].as_str().unwrap()).unwrap();
    let ttl = expires.signed_duration_since(chrono::Utc::now());
    assert!(
        ttl <= chrono::Duration::minutes(5) && ttl > chrono::Duration::zero(),
        "{ttl}"
    );

    let anonymous = reqwest::Client::new();
    let get = |url: String| {
        let anonymous = anonymous.clone();
        async move { harness::read(anonymous.get(url).send().await.unwrap()).await }
    };
    // Not a header credential, and not a key to other routes.
    let (status, _) = harness::read(
        client_with(stream_token)
            .get(fleet.url("/topologies"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = get(format!("{}?token={stream_token}", fleet.url("/topologies"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stream"),
        "{body}"
    );
    // Two credentials at once are refused, whatever is in the query.
    let response = fleet
        .http
        .get(format!("{}?token={stream_token}", fleet.url("/topologies")))
        .send()
        .await
        .unwrap();
    let (status, body) = harness::read(response).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("one credential"),
        "{body}"
    );
    // A long-lived API token is refused in a query string, with a pointer to stream tokens.
    let api_token = token(&fleet.config, Role::Admin);
    let (status, body) = get(format!("{}?token={api_token}", fleet.url("/topologies"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/api/v1/stream-tokens"),
        "{body}"
    );
    // Only event-stream paths can be minted for.
    let (status, body) = fleet
        .post("/stream-tokens", json!({"path": "/api/v1/topologies"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn the_contract_and_its_docs_are_served_without_credentials(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let anonymous = reqwest::Client::new();
    let spec: Value = anonymous
        .get(format!("{}/openapi.json", fleet.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        spec["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        spec["openapi"]
    );
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let operation = &spec["paths"]["/api/v1/topologies/{id}/mutations"]["post"];
    for status in ["202", "401", "403", "404", "422"] {
        assert!(
            operation["responses"][status].is_object(),
            "POST mutations lacks {status}"
        );
    }
    let docs = anonymous
        .get(format!("{}/docs/", fleet.base))
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    let html = docs.text().await.unwrap();
    assert!(html.contains("swagger"), "not the docs UI");
    assert!(
        !html.contains("https://"),
        "the docs page fetches assets from elsewhere"
    );
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn tokens_never_reach_the_logs(pool: PgPool) {
    let config = harness::isolated_config();
    let log_path = std::env::temp_dir().join(format!("switchyard-log-{}.json", Uuid::now_v7()));
    let log = std::fs::File::create(&log_path).unwrap();
    let verbose = [
        ("SWITCHYARD_LOG__FILTER", "debug"),
        ("SWITCHYARD_LOG__FORMAT", "json"),
        ("RUST_LOG", "debug"),
    ];
    let mut up = harness::Process::spawn_with(&pool, &config, &["up"], &verbose, log);
    up.ready(Duration::from_secs(30)).await;
    let api_token = token(&config, Role::Admin);
    let http = client_with(&api_token);
    let path = "/api/v1/events";
    let minted: Value = http
        .post(format!("{}/api/v1/stream-tokens", up.base))
        .json(&json!({"path": path}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stream_token = minted["token"].as_str().unwrap().to_owned();
    for url in [
        format!("{}{path}?token={stream_token}", up.base),
        format!("{}/api/v1/topologies?token={api_token}", up.base),
    ] {
        reqwest::get(url).await.unwrap();
    }
    http.get(format!("{}/api/v1/topologies", up.base))
        .send()
        .await
        .unwrap();
    up.signal("TERM");
    assert_eq!(up.exit_code(Duration::from_secs(30)).await, Some(0));
    let logged = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    assert!(
        logged.contains("/api/v1/topologies"),
        "the requests were not logged at all"
    );
    assert!(
        !logged.contains(&stream_token),
        "a stream token reached the log"
    );
    assert!(!logged.contains(&api_token), "an API token reached the log");
}
