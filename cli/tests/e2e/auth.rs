//! Authentication before existence, roles (README's table, enforced), stream tokens,
//! `WWW-Authenticate` challenges, request logs, and the served contract.

use crate::harness;

use std::collections::BTreeMap;
use std::time::Duration;

use harness::{TestFleet, client_with, token};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use switchyard_api::auth::{Authenticator, Role, RoutePolicy};
use uuid::Uuid;

/// The role table of README's Authentication section: every `METHOD /path` its rows
/// list, under `/api/v1`, with the role of the row that lists it.
fn readme_role_table() -> BTreeMap<(String, String), Role> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md next to the workspace");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Authentication"))
        .expect("README has an Authentication section");
    let mut table = BTreeMap::new();
    for line in section.lines() {
        let role = [
            ("| `viewer` |", Role::Viewer),
            ("| `operator` |", Role::Operator),
            ("| `admin` |", Role::Admin),
        ]
        .into_iter()
        .find_map(|(start, role)| line.starts_with(start).then_some(role));
        let Some(role) = role else { continue };
        // Backticked spans are the odd pieces between backticks.
        for span in line.split('`').skip(1).step_by(2) {
            let Some((method, path)) = span.split_once(' ') else {
                continue;
            };
            if ["GET", "POST", "PATCH", "PUT", "DELETE"].contains(&method) && path.starts_with('/')
            {
                let key = (method.to_owned(), format!("/api/v1{path}"));
                assert!(
                    table.insert(key, role).is_none(),
                    "README's role table lists {span} twice"
                );
            }
        }
    }
    table
}

/// Every operation the server declares, with the role it enforces.
fn enforced_role_table() -> BTreeMap<(String, String), Role> {
    RoutePolicy::from_openapi(&switchyard_api::openapi())
        .routes()
        .map(|(m, p, r)| ((m.to_string(), p.to_owned()), r))
        .collect()
}

#[test]
fn the_readme_role_table_is_the_enforced_one() {
    let documented = readme_role_table();
    let enforced = enforced_role_table();
    for (operation, role) in &enforced {
        assert_eq!(
            documented.get(operation),
            Some(role),
            "{operation:?} needs {role:?}, but README's role table says otherwise"
        );
    }
    for operation in documented.keys() {
        assert!(
            enforced.contains_key(operation),
            "README's role table lists {operation:?}, which the server does not serve"
        );
    }
    // The rules the table states, so a mis-scoped route fails here as well as above.
    let admin_reads = [("GET", "/api/v1/events"), ("GET", "/api/v1/audit")];
    for ((method, path), role) in &enforced {
        let expected = if admin_reads.contains(&(method.as_str(), path.as_str())) {
            Role::Admin
        } else if method == "GET" || path == "/api/v1/stream-tokens" {
            Role::Viewer
        } else if (path.starts_with("/api/v1/repos") && !path.contains("/inbox/"))
            || path.starts_with("/api/v1/plugins")
            || path == "/api/v1/forge/reconcile"
            || path == "/api/v1/forge/rebuild"
        {
            Role::Admin
        } else {
            Role::Operator
        };
        assert_eq!(*role, expected, "{method} {path}");
    }
}

/// A request body that passes validation for each operation that takes one.
fn valid_body(method: &Method, template: &str) -> Option<Value> {
    match (method.as_str(), template) {
        ("POST", "/api/v1/topologies") => Some(json!({"name": "walk"})),
        ("POST", "/api/v1/topologies/{id}/mutations") => {
            Some(json!({"ops": [{"op": "add", "path": "/a", "value": 1}]}))
        }
        ("POST", "/api/v1/stream-tokens") => Some(json!({
            "path": format!("/api/v1/topologies/{}/events", Uuid::now_v7())
        })),
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

/// The status of one call of `template`, and its `WWW-Authenticate` challenge if any.
async fn call(
    http: &reqwest::Client,
    base: &str,
    method: &Method,
    template: &str,
) -> (StatusCode, Option<String>) {
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
    let response = request.send().await.unwrap();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status(), challenge)
}

const NO_TOKEN: &str = r#"Bearer realm="switchyard""#;
const BAD_TOKEN: &str = r#"Bearer realm="switchyard", error="invalid_token""#;

#[sqlx::test(migrations = "../migrations")]
async fn every_route_answers_401_then_403_then_404(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let routes = readme_role_table();
    assert_eq!(
        routes,
        enforced_role_table(),
        "README's table is not enforced"
    );
    assert!(
        routes.len() >= 40,
        "the route table is suspiciously small: {routes:?}"
    );
    let anonymous = reqwest::Client::new();
    let forged = client_with("not.a.token");
    let other_secret = client_with(
        &Authenticator::new(b"a different deployment's secret!!").mint(
            "x",
            Role::Admin,
            Duration::from_secs(60),
        ),
    );
    let roles = [Role::Viewer, Role::Operator, Role::Admin];
    for ((method, template), role) in &routes {
        let method: Method = method.parse().unwrap();
        let what = format!("{method} {template}");
        for (client, challenge) in [
            (&anonymous, NO_TOKEN),
            (&forged, BAD_TOKEN),
            (&other_secret, BAD_TOKEN),
        ] {
            assert_eq!(
                call(client, &fleet.base, &method, template).await,
                (StatusCode::UNAUTHORIZED, Some(challenge.to_owned())),
                "{what}"
            );
        }
        // Every role below the documented one is refused, and the refusal names it.
        for weaker in roles.iter().filter(|r| *r < role) {
            let weak = client_with(&token(&fleet.config, *weaker));
            assert_eq!(
                call(&weak, &fleet.base, &method, template).await.0,
                StatusCode::FORBIDDEN,
                "{what} as {weaker:?}"
            );
        }
        let strong = client_with(&token(&fleet.config, *role));
        let (status, _) = call(&strong, &fleet.base, &method, template).await;
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
        (StatusCode::UNAUTHORIZED, Some(NO_TOKEN.to_owned()))
    );
    assert_eq!(
        call(
            &fleet.http,
            &fleet.base,
            &Method::GET,
            "/api/v1/nothing/here"
        )
        .await,
        (StatusCode::NOT_FOUND, None)
    );
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn the_actor_is_the_token_subject(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let topology = fleet.create_topology("t", json!({})).await;
    let secret = fleet.config.auth.secret.clone().unwrap();
    let ada = client_with(&Authenticator::new(secret.as_bytes()).mint(
        "ada",
        Role::Operator,
        Duration::from_secs(60),
    ));
    let response = ada
        .post(fleet.url(&format!("/topologies/{topology}/mutations")))
        .json(&json!({"ops": [{"op": "add", "path": "/a", "value": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    fleet.settle(Duration::from_secs(10)).await;
    let actor: String = sqlx::query_scalar!("select actor from mutation_audit")
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
    assert!(
        operation["responses"]["401"]["headers"]["WWW-Authenticate"].is_object(),
        "the 401 does not document its challenge"
    );
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

/// A client whose every request carries `Authorization: <value>`.
fn client_with_header(value: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, value.parse().unwrap());
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

#[sqlx::test(migrations = "../migrations")]
async fn every_401_carries_a_bearer_challenge_and_the_scheme_is_case_insensitive(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let topologies = fleet.url("/topologies");
    let api_token = token(&fleet.config, Role::Viewer);
    // Any spelling of the scheme works (RFC 9110 §11.1).
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let client = client_with_header(&format!("{scheme} {api_token}"));
        let status = client.get(&topologies).send().await.unwrap().status();
        assert_eq!(status, StatusCode::OK, "scheme {scheme:?}");
    }

    let secret = fleet.config.auth.secret.clone().unwrap();
    let authenticator = Authenticator::new(secret.as_bytes());
    let expired = authenticator.mint("x", Role::Admin, Duration::ZERO);
    let (stream_token, _) = authenticator.mint_stream(
        &switchyard_api::auth::Caller {
            subject: "x".into(),
            role: Role::Admin,
        },
        "/api/v1/events",
        Duration::from_secs(60),
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let anonymous = reqwest::Client::new();
    let cases = [
        // No bearer token at all: a challenge without an error code (RFC 6750 §3.1).
        (anonymous.get(&topologies), NO_TOKEN),
        (
            client_with_header("Basic dXNlcjpwYXNz").get(&topologies),
            NO_TOKEN,
        ),
        (client_with_header("Bearer ").get(&topologies), NO_TOKEN),
        // A token that was presented and refused.
        (client_with(&expired).get(&topologies), BAD_TOKEN),
        (client_with("forged.not.jwt").get(&topologies), BAD_TOKEN),
        (client_with(&stream_token).get(&topologies), BAD_TOKEN),
        (
            anonymous.get(format!("{topologies}?token={api_token}")),
            BAD_TOKEN,
        ),
        // Two credentials at once: a malformed request.
        (
            client_with(&api_token).get(format!(
                "{}/api/v1/events?subject=x&token={stream_token}",
                fleet.base
            )),
            r#"Bearer realm="switchyard", error="invalid_request""#,
        ),
    ];
    for (i, (request, challenge)) in cases.into_iter().enumerate() {
        let response = request.send().await.unwrap();
        let header = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let (status, body) = harness::read(response).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "case {i}: {body}");
        assert_eq!(header.as_deref(), Some(challenge), "case {i}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized", "case {i}");
    }
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn stream_tokens_are_minted_only_for_streams_the_role_may_open(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let mint = |role: Role, path: String| {
        let client = client_with(&token(&fleet.config, role));
        let url = fleet.url("/stream-tokens");
        async move {
            let response = client
                .post(url)
                .json(&json!({"path": path}))
                .send()
                .await
                .unwrap();
            harness::read(response).await
        }
    };
    let topology = format!("/api/v1/topologies/{}/events", Uuid::now_v7());
    for role in [Role::Viewer, Role::Operator, Role::Admin] {
        let (status, body) = mint(role, topology.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{role:?}: {body}");
        assert_eq!(body["path"], json!(topology));
    }
    // The stream of every event is an admin's: refused when minted, naming the role.
    for (role, name) in [(Role::Viewer, "viewer"), (Role::Operator, "operator")] {
        let (status, body) = mint(role, "/api/v1/events".to_owned()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{role:?}: {body}");
        assert_eq!(body["error"]["code"], "forbidden");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("/api/v1/events")
                && message.contains("needs the admin role")
                && message.contains(name),
            "{message}"
        );
    }
    let (status, minted) = mint(Role::Admin, "/api/v1/events".to_owned()).await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    // And the admin's token opens that stream.
    let url = format!(
        "{}/api/v1/events?subject=topology.>&token={}",
        fleet.base,
        minted["token"].as_str().unwrap()
    );
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    drop(response);
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn each_request_is_one_info_line_without_its_query(pool: PgPool) {
    let config = harness::isolated_config();
    let log_path = std::env::temp_dir().join(format!("switchyard-log-{}.json", Uuid::now_v7()));
    let log = std::fs::File::create(&log_path).unwrap();
    // The default level; RUST_LOG is set too, so the caller's own cannot override it.
    let at_info = [
        ("SWITCHYARD_LOG__FILTER", "info"),
        ("SWITCHYARD_LOG__FORMAT", "json"),
        ("RUST_LOG", "info"),
    ];
    let mut up = harness::Process::spawn_with(&pool, &config, &["up"], &at_info, log);
    up.ready(Duration::from_secs(30)).await;
    let api_token = token(&config, Role::Viewer);
    let http = client_with(&api_token);
    let listed = http
        .get(format!("{}/api/v1/topologies?limit=7", up.base))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    let refused = reqwest::get(format!("{}/api/v1/repos?token={api_token}", up.base))
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    up.signal("TERM");
    assert_eq!(up.exit_code(Duration::from_secs(30)).await, Some(0));
    let logged = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    assert!(!logged.contains(&api_token), "an API token reached the log");
    assert!(
        !logged.contains("limit=7"),
        "a query string reached the log"
    );
    let lines: Vec<Value> = logged
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    for (path, status) in [("/api/v1/topologies", 200), ("/api/v1/repos", 401)] {
        let of_path: Vec<&Value> = lines
            .iter()
            .filter(|line| line["span"]["path"] == path)
            .collect();
        assert_eq!(
            of_path.len(),
            1,
            "one line per request for {path}: {logged}"
        );
        let line = of_path[0];
        assert_eq!(line["level"], "INFO", "{line}");
        assert_eq!(line["span"]["method"], "GET", "{line}");
        assert_eq!(line["status"], status, "{line}");
        assert!(line["latency_ms"].as_f64().is_some(), "{line}");
    }
}
