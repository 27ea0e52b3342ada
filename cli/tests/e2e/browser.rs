//! A real browser follows a topology: headless Chromium loads a page from another
//! origin, mints a stream token over CORS, opens an `EventSource` with it, and reports
//! what it receives back to the test.
//!
//! Needs Debian's `chromium` (`scripts/test` installs it); `CHROMIUM_BIN` overrides
//! the path.

use crate::harness;

use std::process::Stdio;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::{get, post};
use harness::{TestFleet, token};
use serde_json::{Value, json};
use sqlx::PgPool;
use switchyard::fleet::Roles;
use switchyard_api::auth::Role;
use tokio::sync::mpsc;

/// The page a browser editor would be: it asks the API for a stream token with its
/// viewer token, follows the topology with `EventSource`, and posts every frame back.
const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>switchyard browser test</title>
<script>
const api = "API_BASE", path = "STREAM_PATH", bearer = "VIEWER_TOKEN";
const report = (kind, body) =>
  fetch("/report", {method: "POST", body: JSON.stringify({kind, body})});
fetch(api + "/api/v1/stream-tokens", {
  method: "POST",
  headers: {"Authorization": "Bearer " + bearer, "Content-Type": "application/json"},
  body: JSON.stringify({path}),
}).then(r => r.json()).then(minted => {
  const source = new EventSource(api + path + "?token=" + encodeURIComponent(minted.token));
  for (const kind of ["snapshot", "mutation.enqueued", "mutation.applied", "status"]) {
    source.addEventListener(kind, e => report(kind, {id: e.lastEventId, data: JSON.parse(e.data)}));
  }
  source.onerror = () => report("error", {readyState: source.readyState});
}).catch(e => report("error", {message: String(e)}));
</script>
"#;

#[sqlx::test(migrations = "../migrations")]
async fn a_browser_event_source_receives_a_mutation_live(pool: PgPool) {
    // The page's own origin, bound first so the API can allow it.
    let page_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let page_origin = format!("http://{}", page_listener.local_addr().unwrap());
    let mut config = harness::isolated_config();
    config.http.cors_origins = vec![page_origin.clone()];
    let fleet = TestFleet::start(&pool, config, Roles::ALL).await;
    let topology = fleet.create_topology("t", json!({"n": 0})).await;

    let page = PAGE
        .replace("API_BASE", &fleet.base)
        .replace(
            "STREAM_PATH",
            &format!("/api/v1/topologies/{topology}/events"),
        )
        .replace("VIEWER_TOKEN", &token(&fleet.config, Role::Viewer));
    let (reports, mut received) = mpsc::unbounded_channel::<Value>();
    let site = Router::new()
        .route("/", get(move || async move { Html(page) }))
        .route("/report", post(report))
        .with_state(reports);
    tokio::spawn(async move { axum::serve(page_listener, site).await });

    let profile = tempfile::tempdir().unwrap();
    let _browser = chromium(&format!("{page_origin}/"), profile.path());
    let snapshot = next_of(&mut received, "snapshot").await;
    assert_eq!(snapshot["data"]["topology"]["id"], json!(topology));

    let mutation = fleet
        .enqueue(
            topology,
            json!([{"op": "replace", "path": "/n", "value": 1}]),
        )
        .await;
    let applied = next_of(&mut received, "mutation.applied").await;
    assert_eq!(applied["data"]["data"]["mutation_id"], json!(mutation));
    assert!(
        applied["id"].as_str().unwrap().parse::<u64>().unwrap()
            > snapshot["id"].as_str().unwrap().parse::<u64>().unwrap(),
        "frames carry increasing ids: {snapshot} then {applied}"
    );
    fleet.stop().await;
}

async fn report(State(reports): State<mpsc::UnboundedSender<Value>>, body: String) {
    let _ = reports.send(serde_json::from_str(&body).unwrap_or(Value::String(body)));
}

/// The body of the next report of `kind`, failing on a reported error or a timeout.
async fn next_of(received: &mut mpsc::UnboundedReceiver<Value>, kind: &str) -> Value {
    let wait = async {
        loop {
            let report = received.recv().await.expect("the page server stopped");
            assert_ne!(report["kind"], "error", "the page reported {report}");
            if report["kind"] == kind {
                return report["body"].clone();
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .unwrap_or_else(|_| panic!("the browser reported no {kind} within 60s"))
}

/// Headless Chromium on `url`, killed when dropped. The flags keep it off the
/// network (this machine's is closed) and out of any profile but a fresh one.
fn chromium(url: &str, profile: &std::path::Path) -> tokio::process::Child {
    let bin = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    tokio::process::Command::new(&bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {bin} ({e}): install chromium (scripts/test does)"))
}
