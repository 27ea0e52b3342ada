//! The dashboard (`/ui/`) in a real browser: headless Chromium driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`, which `scripts/test` installs;
//! `CHROMIUM_BIN` and `CHROMEDRIVER_BIN` override the paths).
//!
//! Each test saves a screenshot of every page it visits under
//! `target/tmp/dashboard/` for a reviewer to look at.

use crate::harness;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use harness::{TestFleet, token};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use switchyard::fleet::Roles;
use switchyard_api::auth::Role;

/// How long a page may take to show what a test waits for.
const PATIENCE: Duration = Duration::from_secs(45);

/// A headless Chromium session on the fleet's dashboard.
struct Browser {
    client: Client,
    base: String,
    shots: PathBuf,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start(base: &str, test: &str) -> Self {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let driver_bin =
            std::env::var("CHROMEDRIVER_BIN").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let driver = tokio::process::Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting {driver_bin} ({e}): install chromium-driver (scripts/test does)")
            });
        let profile = tempfile::tempdir().unwrap();
        let chromium = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-background-networking", "--disable-sync",
                    "--disable-component-update", "--window-size=1280,1100",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
            // The pages ask before publishing, resolving and cancelling; say yes.
            "unhandledPromptBehavior": "accept",
        });
        let capabilities = match capabilities {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        let url = format!("http://127.0.0.1:{port}");
        let mut last = None;
        let mut client = None;
        for _ in 0..100 {
            match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(c) => {
                    client = Some(c);
                    break;
                }
                Err(e) => {
                    last = Some(e.to_string());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let client = client.unwrap_or_else(|| panic!("no WebDriver session: {last:?}"));
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("dashboard")
            .join(test);
        // A fresh folder: no screenshot of an earlier run is left to mislead.
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).unwrap();
        Self {
            client,
            base: base.to_owned(),
            shots,
            _driver: driver,
            _profile: profile,
        }
    }

    async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    /// Signs in with `token` through the sign-in page.
    async fn sign_in(&self, token: &str) {
        self.goto("/ui/").await;
        // Not signed in: the dashboard sends the browser to the sign-in page.
        let url = self.client.current_url().await.unwrap();
        assert_eq!(url.path(), "/ui/sign-in", "{url}");
        self.shot("sign-in").await;
        self.set("textarea[name=token]", token).await;
        self.click("form[action='/ui/sign-in'] button").await;
        self.until_text("h1", |v| v == "Overview").await;
    }

    /// Sets a form field's value (as typing it would).
    async fn set(&self, css: &str, value: &str) {
        self.client
            .execute(
                "const e = document.querySelector(arguments[0]); if (!e) throw new Error('no ' + arguments[0]); e.value = arguments[1];",
                vec![json!(css), json!(value)],
            )
            .await
            .unwrap();
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Runs `script` until `ok` accepts its result (as text), or fails after
    /// [`PATIENCE`] with the last result and a screenshot.
    async fn until_js(&self, script: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let value = match self.client.execute(script, vec![]).await {
                Ok(Value::String(s)) => s,
                Ok(Value::Null) => String::new(),
                Ok(other) => other.to_string(),
                Err(e) => format!("error: {e}"),
            };
            if ok(&value) {
                return value;
            }
            if tokio::time::Instant::now() > deadline {
                self.shot("timed-out").await;
                panic!("waited {PATIENCE:?} for `{script}`; it last gave {value:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the text of `css` satisfies `ok`; returns it.
    async fn until_text(&self, css: &str, ok: impl Fn(&str) -> bool) -> String {
        self.until_js(
            &format!("return document.querySelector({css:?})?.textContent"),
            ok,
        )
        .await
    }

    /// Waits until the page's live section follows its stream.
    async fn until_live(&self) {
        self.until_js(
            "return document.querySelector('#live').dataset.state",
            |s| s == "live",
        )
        .await;
    }

    /// The text of `css`, or an empty string when the page has none.
    async fn text_of(&self, css: &str) -> String {
        self.client
            .execute(
                "return document.querySelector(arguments[0])?.textContent ?? ''",
                vec![json!(css)],
            )
            .await
            .unwrap()
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn exists(&self, css: &str) -> bool {
        self.client
            .execute(
                "return document.querySelector(arguments[0]) !== null",
                vec![json!(css)],
            )
            .await
            .unwrap()
            == json!(true)
    }

    /// Saves a screenshot as `<name>.png`.
    async fn shot(&self, name: &str) {
        if let Ok(png) = self.client.screenshot().await {
            let _ = std::fs::write(self.shots.join(format!("{name}.png")), png);
        }
    }

    async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// Registers repos `billing` and `web` as admin.
async fn register_repos(fleet: &TestFleet) {
    for slug in ["billing", "web"] {
        let (status, body) = fleet
            .post("/repos", json!({"slug": slug, "name": slug}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn an_operator_drafts_publishes_and_resolves_an_interface_change_from_the_page(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    register_repos(&fleet).await;
    let browser = Browser::start(&fleet.base, "interface-changes").await;
    browser.sign_in(&token(&fleet.config, Role::Operator)).await;
    assert!(browser.text_of("#who").await.contains("(operator)"));
    browser.shot("overview").await;

    // A draft the API refuses: the message is shown inline and the form kept as typed.
    browser.goto("/ui/interface-changes").await;
    browser
        .set("#change-form [name=repo_slug]", "billing")
        .await;
    browser
        .set("#change-form [name=title]", "Invoices move to /v2")
        .await;
    browser
        .set(
            "#change-form [name=description]",
            "v1 invoice endpoints go away.",
        )
        .await;
    browser
        .set("#change-form [name=affected_repo_slugs]", "web, Not A Slug")
        .await;
    browser.click("#change-form button").await;
    let error = browser.until_text(".banner.error", |t| !t.is_empty()).await;
    assert!(error.starts_with("422"), "{error}");
    assert!(error.contains("\"Not\" is not a slug"), "{error}");
    assert_eq!(
        browser
            .client
            .execute(
                "return document.querySelector('#change-form [name=title]').value",
                vec![]
            )
            .await
            .unwrap(),
        json!("Invoices move to /v2"),
        "the form keeps what was typed"
    );
    browser.shot("draft-refused").await;

    // The corrected draft, with a date on the calendar.
    browser
        .set("#change-form [name=affected_repo_slugs]", "web")
        .await;
    browser
        .set(
            "#change-form [name=affected_paths]",
            "GET /v1/invoices\nPOST /v1/invoices",
        )
        .await;
    let planned = chrono::Utc::now().date_naive() + chrono::Days::new(3);
    browser
        .set("#change-form [name=planned_for]", &planned.to_string())
        .await;
    browser.click("#change-form button").await;
    browser
        .until_js("return location.pathname", |p| {
            p.starts_with("/ui/interface-changes/")
        })
        .await;
    let id = browser
        .until_js("return location.pathname.split('/').pop()", |p| {
            p.len() == 36
        })
        .await;
    let (_, change) = fleet.get(&format!("/interface-changes/{id}")).await;
    assert_eq!(change["status"], "draft");
    assert_eq!(
        change["affected_paths"],
        json!(["GET /v1/invoices", "POST /v1/invoices"])
    );
    assert_eq!(change["author"], "tester");

    // Edit it from its page.
    browser
        .set(
            "#change-form [name=title]",
            "Invoices move to /v2 (pagination too)",
        )
        .await;
    browser.click("#change-form button").await;
    browser
        .until_text("h1", |t| t.contains("pagination too"))
        .await;
    browser.shot("draft").await;

    // The drafts table and the calendar show it; publish it from the table.
    browser.goto("/ui/interface-changes").await;
    assert!(
        browser
            .exists(&format!("#drafts tr[data-change='{id}']"))
            .await
    );
    assert!(
        browser
            .exists(&format!(
                "[data-day='{planned}'] a[href='/ui/interface-changes/{id}']"
            ))
            .await,
        "the calendar shows the change on its planned day"
    );
    browser
        .click(&format!("#drafts tr[data-change='{id}'] button"))
        .await;
    browser
        .until_js(
            &format!("return document.querySelector(\".card[data-change='{id}']\") ? 'yes' : ''"),
            |t| t == "yes",
        )
        .await;
    let (_, change) = fleet.get(&format!("/interface-changes/{id}")).await;
    assert_eq!(change["status"], "published");

    // The notifier tells web; the card lists it once it has (reloading the page).
    let notified = format!(".card[data-change='{id}'] .notified");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while browser.text_of(&notified).await != "web" {
        assert!(tokio::time::Instant::now() < deadline, "web never notified");
        tokio::time::sleep(Duration::from_millis(300)).await;
        browser.goto("/ui/interface-changes").await;
    }
    browser.shot("published").await;

    // web's dispatch page shows the change, and follows the repo live: resolving the
    // change elsewhere takes it off the page without a reload.
    browser.goto("/ui/repos/web").await;
    browser.until_live().await;
    assert!(
        browser
            .text_of("#pending-changes")
            .await
            .contains("pagination too")
    );
    // A change published elsewhere reaches the open page: its pending changes and, once
    // the notifier has delivered it, its unread inbox.
    let (status, other) = fleet
        .post(
            "/interface-changes",
            json!({"repo_slug": "billing", "interface_type": "cli", "change_type": "additive",
                   "title": "A --dry-run flag", "description": "Adds --dry-run.",
                   "affected_paths": [], "affected_repo_slugs": ["web"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{other}");
    let (status, body) = fleet
        .post(
            &format!(
                "/interface-changes/{}/publish",
                other["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    browser
        .until_text("#pending-changes", |t| t.contains("A --dry-run flag"))
        .await;
    browser.until_text("#unread-count", |t| t == "2").await;
    browser.shot("repo-dispatch").await;
    browser.goto("/ui/repos").await;
    browser.shot("repos").await;

    // Resolve from the card.
    browser.goto("/ui/interface-changes").await;
    browser
        .click(&format!(".card[data-change='{id}'] button"))
        .await;
    browser
        .until_js(
            &format!(
                "return document.querySelector(\".card[data-change='{id}']\") ? 'yes' : 'gone'"
            ),
            |t| t == "gone",
        )
        .await;
    let (_, change) = fleet.get(&format!("/interface-changes/{id}")).await;
    assert_eq!(change["status"], "resolved");
    browser.shot("resolved").await;

    // Resolving again is the API's 409, shown inline.
    browser.goto(&format!("/ui/interface-changes/{id}")).await;
    assert!(
        !browser.exists("form[action$='/resolve']").await,
        "a resolved change offers no resolve button"
    );
    browser
        .client
        .execute(
            "const f = document.querySelector('header form').cloneNode(true); f.action = arguments[0]; document.body.append(f); f.submit();",
            vec![json!(format!("/ui/interface-changes/{id}/resolve"))],
        )
        .await
        .unwrap();
    let error = browser.until_text(".banner.error", |t| !t.is_empty()).await;
    assert!(error.starts_with("409"), "{error}");
    assert!(error.contains("resolved"), "{error}");

    // Signing out ends the session.
    browser.click("header form button").await;
    browser
        .until_js("return location.pathname", |p| p == "/ui/sign-in")
        .await;
    browser.goto("/ui/topologies").await;
    browser
        .until_js("return location.pathname", |p| p == "/ui/sign-in")
        .await;
    browser.close().await;
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_topology_page_shows_mutations_go_from_pending_to_applied_and_resumes_after_a_drop(
    pool: PgPool,
) {
    // No mutator at first, so the page can be seen holding the mutation pending.
    let roles = Roles {
        mutator: false,
        ..Roles::ALL
    };
    let mut fleet = TestFleet::start(&pool, harness::isolated_config(), roles).await;
    let topology = fleet.create_topology("edge", json!({"n": 0})).await;
    // Pending before the page opens: the snapshot puts it in the live table.
    let zeroth = fleet
        .enqueue(topology, json!([{"op": "add", "path": "/m", "value": 0}]))
        .await;
    let browser = Browser::start(&fleet.base, "topology").await;
    browser.sign_in(&token(&fleet.config, Role::Viewer)).await;
    browser.goto("/ui/topologies").await;
    browser.shot("topologies").await;
    browser.goto(&format!("/ui/topologies/{topology}")).await;
    browser.until_live().await;
    browser
        .until_js(
            &format!(
                "return document.querySelector(\"tr[data-mutation='{zeroth}']\")?.dataset.status"
            ),
            |s| s == "pending",
        )
        .await;
    assert!(
        !browser.exists("#enqueue").await,
        "a viewer is not offered the enqueue form"
    );

    let first = fleet
        .enqueue(
            topology,
            json!([{"op": "replace", "path": "/n", "value": 1}]),
        )
        .await;
    let row =
        format!("return document.querySelector(\"tr[data-mutation='{first}']\")?.dataset.status");
    browser.until_js(&row, |s| s == "pending").await;
    browser.shot("topology-pending").await;

    fleet
        .add_workers(Roles {
            mutator: true,
            ..Roles::NONE
        })
        .await;
    browser.until_js(&row, |s| s == "applied").await;
    // The document part is re-rendered from the server.
    browser.until_text("#version", |v| v == "2").await;
    browser.shot("topology-applied").await;

    // A dropped connection: the page mints a new token and resumes after the last id
    // it saw. The connection stays down while two more mutations finish, so they can
    // only reach the page by the resume's replay. Nothing is lost, and no line is
    // shown twice.
    browser
        .client
        .execute("document.querySelector('#live').syHold()", vec![])
        .await
        .unwrap();
    let second = fleet
        .enqueue(
            topology,
            json!([{"op": "replace", "path": "/n", "value": 2}]),
        )
        .await;
    let third = fleet
        .enqueue(topology, json!([{"op": "test", "path": "/n", "value": 99}]))
        .await;
    harness::eventually(PATIENCE, || async {
        let (_, m) = fleet.get(&format!("/mutations/{third}")).await;
        m["status"] == "failed"
    })
    .await;
    assert!(
        !browser
            .exists(&format!("tr[data-mutation='{second}']"))
            .await,
        "nothing arrives while the connection is down"
    );
    browser
        .client
        .execute("document.querySelector('#live').syResume()", vec![])
        .await
        .unwrap();
    for (id, status) in [(second, "applied"), (third, "failed")] {
        browser
            .until_js(
                &format!(
                    "return document.querySelector(\"tr[data-mutation='{id}']\")?.dataset.status"
                ),
                |s| s == status,
            )
            .await;
    }
    // The server-rendered part follows too, after the resume.
    browser.until_text("#version", |v| v == "3").await;
    let ids = browser
        .client
        .execute(
            "return [...document.querySelectorAll('#live ol.log li')].map(l => l.dataset.id)",
            vec![],
        )
        .await
        .unwrap();
    let ids: Vec<u64> = ids
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().parse().unwrap())
        .collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "a line shown twice: {ids:?}");
    let events: Vec<String> = browser
        .client
        .execute(
            "return [...document.querySelectorAll('#live ol.log li')].map(l => l.dataset.event)",
            vec![],
        )
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    for (kind, count) in [
        ("mutation.enqueued", 3),
        ("mutation.applied", 3),
        ("mutation.failed", 1),
    ] {
        assert_eq!(
            events.iter().filter(|e| *e == kind).count(),
            count,
            "{kind} in {events:?}"
        );
    }
    browser.shot("topology-after-drop").await;

    // The session ends elsewhere (here: every session is deleted): the next re-render
    // finds no session, and the page says so instead of showing a sign-in form inside.
    sqlx::query("delete from ui_sessions")
        .execute(&fleet.pool)
        .await
        .unwrap();
    fleet
        .enqueue(
            topology,
            json!([{"op": "replace", "path": "/n", "value": 3}]),
        )
        .await;
    let banner = browser
        .until_text("#session-ended", |t| !t.is_empty())
        .await;
    assert!(banner.contains("Your session has ended"), "{banner}");
    assert!(
        !browser
            .exists("[data-fragment] form[action='/ui/sign-in']")
            .await
    );
    browser.shot("topology-session-ended").await;
    browser.close().await;
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_graph_page_shows_a_failed_migration_then_its_progress_to_100_percent(pool: PgPool) {
    // Batches of 100 nodes, so a run reports progress several times.
    let mut config = harness::isolated_config();
    config.migrator.batch_size = 100;
    let fleet = TestFleet::start(&pool, config, Roles::ALL).await;
    let (status, body) = fleet
        .post(
            "/plugins",
            json!({"name": "netbox", "versions": [{"version": 1, "steps": []}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = fleet
        .post("/graphs", json!({"slug": "dc-east", "plugin": "netbox"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // 1,500 nodes, one of them without `weight`.
    for chunk in 0..3 {
        let nodes: Vec<Value> = (0..500)
            .map(|i| {
                let n = chunk * 500 + i;
                if n == 700 {
                    json!({"id": format!("n{n}"), "data": {"kind": "sw"}})
                } else {
                    json!({"id": format!("n{n}"), "data": {"kind": "sw", "weight": n}})
                }
            })
            .collect();
        let (status, body) = fleet
            .post("/graphs/dc-east/nodes", json!({"nodes": nodes}))
            .await;
        assert!(status.is_success(), "{body}");
    }
    let (status, body) = fleet
        .post(
            "/plugins/netbox/versions",
            json!({"version": 2, "steps": [{"op": "require", "property": "weight"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let browser = Browser::start(&fleet.base, "graph").await;
    browser.sign_in(&token(&fleet.config, Role::Operator)).await;
    browser.goto("/ui/graphs/dc-east").await;
    browser.until_live().await;
    browser.click("#re-migrate button").await;
    // The run fails on n700: the banner names the reason, live.
    let banner = browser
        .until_text("#banner.migration_failed", |t| !t.is_empty())
        .await;
    assert!(banner.contains("n700"), "{banner}");
    assert!(banner.contains("weight"), "{banner}");
    browser.shot("graph-failed").await;

    // Repair the node over HTTP and migrate again: the open page's bar moves with
    // each batch, reaches 100 % and the banner clears. Nodes the failed run's earlier
    // batches moved are already at version 2, so this run migrates the rest.
    let (status, body) = fleet
        .post(
            "/graphs/dc-east/nodes",
            json!({"nodes": [{"id": "n700", "data": {"kind": "sw", "weight": 1}}]}),
        )
        .await;
    assert!(status.is_success(), "{body}");
    browser.goto("/ui/graphs/dc-east").await;
    browser.until_live().await;
    browser
        .client
        .execute(
            "window.seen = []; document.querySelector('#live').addEventListener('sy:event', (e) => { if (e.detail.name === 'migration.progress') { const p = document.querySelector('progress.migration'); window.seen.push([p.value, p.max]); } });",
            vec![],
        )
        .await
        .unwrap();
    // Requested over HTTP, so the open page (and its listener) sees the whole run.
    let (status, body) = fleet.post("/graphs/dc-east/re-migrate", json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    browser.until_text("#schema-version", |v| v == "2").await;
    let (_, runs) = fleet.get("/graphs/dc-east/migrations?limit=1").await;
    let total = runs["items"][0]["total"].as_i64().unwrap();
    assert!(total > 100, "the retry has several batches: {runs}");
    browser
        .until_js(
            "const p = document.querySelector('progress.migration'); return p.value + '/' + p.max",
            |v| v == format!("{total}/{total}"),
        )
        .await;
    let seen = browser
        .client
        .execute("return window.seen", vec![])
        .await
        .unwrap();
    assert!(
        seen.as_array().unwrap().iter().any(|p| {
            let value = p[0].as_i64().unwrap();
            value > 0 && value < total
        }),
        "the bar moved through a value short of the end before it got there: {seen}"
    );
    assert!(!browser.exists("#banner").await, "the banner clears");
    assert_eq!(
        browser.text_of("#progress-text").await,
        format!("{total} / {total} nodes")
    );
    let history = browser.text_of("#history tbody tr:first-child").await;
    assert!(history.contains("succeeded"), "{history}");
    assert!(
        !browser.exists("#history form[action$='/cancel']").await,
        "no run left to cancel"
    );
    browser.shot("graph-migrated").await;
    browser.goto("/ui/graphs").await;
    browser.shot("graphs").await;
    browser.close().await;
    fleet.stop().await;
}

/// An HTTP client that reports redirects instead of following them (the dashboard
/// answers a form with 303).
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A form post's body, as a browser sends it.
trait FormBody {
    /// `pairs` as an `application/x-www-form-urlencoded` body.
    fn form_body<K: AsRef<str>, V: AsRef<str>>(self, pairs: &[(K, V)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_body<K: AsRef<str>, V: AsRef<str>>(self, pairs: &[(K, V)]) -> Self {
        let mut body = form_urlencoded::Serializer::new(String::new());
        for (key, value) in pairs {
            body.append_pair(key.as_ref(), value.as_ref());
        }
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(body.finish())
    }
}

/// A session cookie and the page's CSRF token, signed in over plain HTTP.
async fn sign_in_http(fleet: &TestFleet, role: Role) -> (reqwest::Client, String) {
    let client = no_redirects();
    let response = client
        .post(format!("{}/ui/sign-in", fleet.base))
        .form_body(&[
            ("token", token(&fleet.config, role).as_str()),
            ("next", "/ui/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age="] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    // The harness's tokens live 600 s: the session lives no longer.
    let max_age: i64 = cookie
        .split("Max-Age=")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|n| n.trim().parse().ok())
        .expect("a Max-Age");
    assert!((0..=600).contains(&max_age), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_owned();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(
            [(
                reqwest::header::COOKIE,
                reqwest::header::HeaderValue::from_str(&session).unwrap(),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap();
    let page = client
        .get(format!("{}/ui/", fleet.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = page
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page carries its CSRF token")
        .to_owned();
    (client, csrf)
}

#[sqlx::test(migrations = "../migrations")]
async fn a_viewer_sees_no_write_buttons_and_forged_posts_are_refused(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    register_repos(&fleet).await;
    let (status, draft) = fleet
        .post(
            "/interface-changes",
            json!({"repo_slug": "billing", "interface_type": "cli", "change_type": "additive",
                   "title": "A new flag", "description": "Adds --dry-run.", "affected_paths": [],
                   "affected_repo_slugs": ["web"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{draft}");
    let id = draft["id"].as_str().unwrap().to_owned();

    // A viewer sees the draft but no button that changes anything.
    let browser = Browser::start(&fleet.base, "viewer").await;
    browser.sign_in(&token(&fleet.config, Role::Viewer)).await;
    browser.goto("/ui/interface-changes").await;
    assert!(
        browser
            .exists(&format!("#drafts tr[data-change='{id}']"))
            .await
    );
    assert!(
        !browser.exists("form[action$='/publish']").await,
        "no publish button"
    );
    assert!(!browser.exists("#change-form").await, "no draft form");
    browser.shot("viewer-interface-changes").await;
    browser.goto(&format!("/ui/interface-changes/{id}")).await;
    assert!(!browser.exists("form[action$='/publish']").await);
    assert!(!browser.exists("#change-form").await, "no edit form");
    browser.close().await;

    let publish = format!("{}/ui/interface-changes/{id}/publish", fleet.base);
    // An operator's session: a post without the CSRF token, or with another, is
    // refused before anything runs.
    let (operator, csrf) = sign_in_http(&fleet, Role::Operator).await;
    for fields in [vec![], vec![("csrf", "0".repeat(64))]] {
        let response = operator
            .post(&publish)
            .form_body(&fields)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(response.text().await.unwrap().contains("CSRF token"));
    }
    // No session at all: the post goes to the sign-in page instead.
    let response = no_redirects()
        .post(&publish)
        .form_body(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/ui/sign-in?next=%2Fui%2F");
    let (_, change) = fleet.get(&format!("/interface-changes/{id}")).await;
    assert_eq!(change["status"], "draft", "nothing was published");

    // A viewer's own session with its own CSRF token: the API's role check refuses it.
    let (viewer, viewer_csrf) = sign_in_http(&fleet, Role::Viewer).await;
    let response = viewer
        .post(&publish)
        .form_body(&[("csrf", viewer_csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let page = response.text().await.unwrap();
    assert!(
        page.contains("this operation needs the operator role; your token has viewer"),
        "{page}"
    );
    let (_, change) = fleet.get(&format!("/interface-changes/{id}")).await;
    assert_eq!(change["status"], "draft");

    // The operator's genuine post works.
    let response = operator
        .post(&publish)
        .form_body(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let (_, change) = fleet.get(&format!("/interface-changes/{id}")).await;
    assert_eq!(change["status"], "published");

    // A stream token is not a way in, and an invalid token is named.
    let authenticator = switchyard_api::auth::Authenticator::new(
        fleet.config.auth.secret.as_deref().unwrap().as_bytes(),
    );
    let (stream_token, _) = authenticator.mint_stream(
        &switchyard_api::auth::Caller {
            subject: "tester".into(),
            role: Role::Admin,
        },
        "/api/v1/events",
        Duration::from_secs(60),
    );
    let response = no_redirects()
        .post(format!("{}/ui/sign-in", fleet.base))
        .form_body(&[("token", stream_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("that is a stream token")
    );
    let response = no_redirects()
        .post(format!("{}/ui/sign-in", fleet.base))
        .form_body(&[("token", "not.a.token")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.text().await.unwrap().contains("not valid"));

    // Behind a TLS front the cookie is Secure.
    let response = no_redirects()
        .post(format!("{}/ui/sign-in", fleet.base))
        .header("x-forwarded-proto", "https")
        .form_body(&[("token", token(&fleet.config, Role::Viewer).as_str())])
        .send()
        .await
        .unwrap();
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.ends_with("; Secure"), "{cookie}");

    // A form sent from another site is refused before anything runs, and so is one the
    // browser marks cross-site.
    for (name, value) in [
        ("origin", "http://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let response = operator
            .post(format!("{}/ui/interface-changes/{id}/resolve", fleet.base))
            .header(name, value)
            .form_body(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{name}: {value}");
        assert!(response.text().await.unwrap().contains("another site"));
    }
    let (_, change) = fleet.get(&format!("/interface-changes/{id}")).await;
    assert_eq!(change["status"], "published", "nothing was resolved");
    // Behind a proxy that rewrites Host, the page's own origin is the forwarded host;
    // a browser's Sec-Fetch-Site: same-origin is believed; Origin: null is foreign.
    for (headers, allowed) in [
        (
            vec![
                ("origin", "https://Dash.Example"),
                ("x-forwarded-host", "dash.example"),
            ],
            true,
        ),
        (
            vec![
                ("origin", "https://dash.example"),
                ("forwarded", "for=10.0.0.1;host=dash.example;proto=https"),
            ],
            true,
        ),
        (
            vec![
                ("origin", "https://dash.example"),
                ("sec-fetch-site", "same-origin"),
            ],
            true,
        ),
        (vec![("origin", "null")], false),
        (
            vec![
                ("origin", "https://evil.example"),
                ("x-forwarded-host", "dash.example"),
            ],
            false,
        ),
    ] {
        let mut request = no_redirects().post(format!("{}/ui/sign-in", fleet.base));
        for (name, value) in &headers {
            request = request.header(*name, *value);
        }
        let response = request
            .form_body(&[("token", token(&fleet.config, Role::Viewer).as_str())])
            .send()
            .await
            .unwrap();
        let want = if allowed {
            StatusCode::SEE_OTHER
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(response.status(), want, "{headers:?}");
    }
    // A `next` that is not a dashboard path, or holds a control character, is /ui/.
    for next in [
        "https://evil.example/",
        "/ui/\r\nSet-Cookie: x=1",
        "//evil.example",
    ] {
        let response = no_redirects()
            .post(format!("{}/ui/sign-in", fleet.base))
            .form_body(&[
                ("token", token(&fleet.config, Role::Viewer).as_str()),
                ("next", next),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{next}");
        assert_eq!(response.headers()["location"], "/ui/", "{next}");
    }
    // A session made under another signing secret (as after rotating auth.secret) no
    // longer signs anyone in, and the sign-in page says the session ended.
    let (rotated, _) = sign_in_http(&fleet, Role::Operator).await;
    sqlx::query("update ui_sessions set key_id = 'an-older-secret'")
        .execute(&fleet.pool)
        .await
        .unwrap();
    let response = rotated
        .get(format!("{}/ui/topologies", fleet.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()["location"],
        "/ui/sign-in?next=%2Fui%2Ftopologies&ended=true"
    );
    let (operator, csrf) = sign_in_http(&fleet, Role::Operator).await;

    // Signing out deletes the session: the cookie no longer opens a page.
    let response = operator
        .post(format!("{}/ui/sign-out", fleet.base))
        .form_body(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let response = operator
        .get(format!("{}/ui/", fleet.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(
        response.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/ui/sign-in")
    );
    // A form posted with the ended session goes to the sign-in page, which says why.
    let response = operator
        .post(&publish)
        .header("referer", format!("{}/ui/interface-changes", fleet.base))
        .form_body(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(
        location,
        "/ui/sign-in?next=%2Fui%2Finterface-changes&ended=true"
    );
    let page = reqwest::get(format!("{}{location}", fleet.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Your session has ended"), "{page}");
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn an_admin_registers_repos_plugins_graphs_and_nodes_and_reads_the_forge_and_audit_pages(
    pool: PgPool,
) {
    let fleet = TestFleet::up(&pool).await;
    let browser = Browser::start(&fleet.base, "registry").await;
    browser.sign_in(&token(&fleet.config, Role::Admin)).await;

    // A repo, registered from the page; a taken slug is the API's 409, inline.
    browser.goto("/ui/repos").await;
    browser.set("#register-repo [name=slug]", "billing").await;
    browser.set("#register-repo [name=name]", "Billing").await;
    browser.click("#register-repo button").await;
    browser
        .until_js("return location.pathname", |p| p == "/ui/repos/billing")
        .await;
    let (status, repo) = fleet.get("/repos/billing").await;
    assert_eq!(status, StatusCode::OK, "{repo}");
    browser.goto("/ui/repos").await;
    browser.set("#register-repo [name=slug]", "billing").await;
    browser
        .set("#register-repo [name=name]", "Billing again")
        .await;
    browser.click("#register-repo button").await;
    let error = browser.until_text(".banner.error", |t| !t.is_empty()).await;
    assert!(error.starts_with("409"), "{error}");
    assert_eq!(
        browser
            .client
            .execute(
                "return document.querySelector('#register-repo [name=name]').value",
                vec![]
            )
            .await
            .unwrap(),
        json!("Billing again")
    );
    browser.shot("repos-register-refused").await;

    // A plugin and its next version, as JSON; a graph on it; nodes written from the
    // graph's page; the version's migration requested with it.
    browser.goto("/ui/plugins").await;
    browser
        .set(
            "#register-plugin textarea",
            r#"{"name": "netbox", "versions": [{"version": 1, "steps": []}]}"#,
        )
        .await;
    browser.click("#register-plugin button").await;
    browser
        .until_js("return location.pathname", |p| p == "/ui/plugins/netbox")
        .await;
    browser.goto("/ui/graphs").await;
    browser.set("#new-graph [name=slug]", "dc-east").await;
    browser.set("#new-graph [name=plugin]", "netbox").await;
    browser.click("#new-graph button").await;
    browser
        .until_js("return location.pathname", |p| p == "/ui/graphs/dc-east")
        .await;
    browser
        .set("#write-nodes textarea", "{\"nodes\": [{\"id\": \"sw1\"")
        .await;
    browser.click("#write-nodes button").await;
    let error = browser.until_text(".banner.error", |t| !t.is_empty()).await;
    assert!(error.contains("the nodes is not valid JSON"), "{error}");
    browser
        .set(
            "#write-nodes textarea",
            r#"{"nodes": [{"id": "sw1", "data": {"colour": "red"}}]}"#,
        )
        .await;
    browser.click("#write-nodes button").await;
    browser
        .until_text(".banner.notice", |t| t == "Nodes written.")
        .await;
    browser.goto("/ui/plugins/netbox").await;
    browser
        .set(
            "#add-version textarea",
            r#"{"version": 2, "steps": [{"op": "rename", "from": "colour", "to": "color"}]}"#,
        )
        .await;
    browser.click("#add-version [name=migrate_graphs]").await;
    browser.click("#add-version button").await;
    browser.until_text("#current-version", |v| v == "2").await;
    browser.shot("plugin").await;
    harness::eventually(PATIENCE, || async {
        let (_, graph) = fleet.get("/graphs/dc-east").await;
        graph["schema_version"] == 2
    })
    .await;
    let (_, nodes) = fleet.get("/graphs/dc-east/nodes").await;
    assert_eq!(nodes["items"][0]["data"], json!({"color": "red"}));

    // Archive the repo from its page.
    browser.goto("/ui/repos/billing").await;
    browser
        .click("form[action='/ui/repos/billing/archive'] button")
        .await;
    browser
        .until_text(".banner.notice", |t| t == "Archived.")
        .await;
    let (_, repo) = fleet.get("/repos/billing").await;
    assert!(!repo["archived_at"].is_null(), "{repo}");

    // The forge pages (an empty cache here: no forge is configured) and a sweep asked
    // for from them; the audit trail shows what this test did, as the token's subject.
    browser.goto("/ui/rfcs").await;
    assert!(browser.exists("#rfcs").await);
    browser.shot("rfcs").await;
    browser.goto("/ui/forge").await;
    browser
        .click("form[action='/ui/forge/reconcile'] button")
        .await;
    browser
        .until_js(
            "return document.querySelector('#sweeps')?.textContent ?? ''",
            |t| t.contains("tester"),
        )
        .await;
    browser.shot("forge").await;
    browser.goto("/ui/audit?entity=repo").await;
    let audit = browser.text_of("#audit").await;
    assert!(
        audit.contains("billing") && audit.contains("tester"),
        "{audit}"
    );
    assert!(audit.contains("archive"), "{audit}");
    browser.shot("audit").await;
    browser.close().await;

    // Others see none of the admin's forms, and no audit link.
    let browser = Browser::start(&fleet.base, "registry-operator").await;
    browser.sign_in(&token(&fleet.config, Role::Operator)).await;
    assert!(!browser.exists("header a[href='/ui/audit']").await);
    for (path, form) in [
        ("/ui/repos", "#register-repo"),
        ("/ui/plugins", "#register-plugin"),
        ("/ui/plugins/netbox", "#add-version"),
        ("/ui/forge", "form[action='/ui/forge/reconcile']"),
    ] {
        browser.goto(path).await;
        assert!(!browser.exists(form).await, "{form} on {path}");
    }
    // An operator does create graphs.
    browser.goto("/ui/graphs").await;
    assert!(browser.exists("#new-graph").await);
    browser.goto("/ui/audit").await;
    assert!(browser.text_of(".banner.error").await.contains("admin"));
    browser.close().await;
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_database_outage_is_a_503_page_with_retry_after_and_then_passes(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let (viewer, _) = sign_in_http(&fleet, Role::Viewer).await;
    // The outage: the test's database refuses new connections, and every open one is
    // ended, from a connection to the server's maintenance database.
    let database: String = sqlx::query_scalar("select current_database()")
        .fetch_one(&pool)
        .await
        .unwrap();
    let mut keeper = <sqlx::PgConnection as sqlx::Connection>::connect(
        &std::env::var("DATABASE_URL").expect("DATABASE_URL names the test server"),
    )
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "alter database \"{database}\" allow_connections false"
    )))
    .execute(&mut keeper)
    .await
    .unwrap();
    sqlx::query("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1")
        .bind(&database)
        .execute(&mut keeper)
        .await
        .unwrap();

    // The session cannot be read: a 503 page with Retry-After, never a 500, on any
    // page.
    for path in ["/ui/", "/ui/topologies"] {
        let response = viewer
            .get(format!("{}{path}", fleet.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(response.headers()["retry-after"], "1", "{path}");
        let page = response.text().await.unwrap();
        assert!(page.contains("unavailable"), "{path}: {page}");
    }

    sqlx::query(sqlx::AssertSqlSafe(format!(
        "alter database \"{database}\" allow_connections true"
    )))
    .execute(&mut keeper)
    .await
    .unwrap();
    drop(keeper);
    harness::eventually(PATIENCE, || async {
        viewer
            .get(format!("{}/ui/topologies", fleet.base))
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
    fleet.stop().await;
}
