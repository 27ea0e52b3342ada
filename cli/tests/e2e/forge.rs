//! The forge metadata cache against a Gitea stand-in that speaks Gitea's API and sends
//! its signed webhooks: webhook and sweep keep the cache, bad deliveries are refused,
//! an outage is retried, tombstones and parse errors are kept, the person behind a
//! bot-opened pull request is found, a rebuild equals the kept cache, and a refresh
//! that read Gitea earlier never overwrites one that read later.

use crate::harness;

use std::time::Duration;

use harness::{TestFleet, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use switchyard::config::Config;
use switchyard::fleet::Roles;
use switchyard_api::auth::Role;
use switchyard_domain::status::SweepTrigger;
use switchyard_gitea_standin::{Delivery, GiteaStandin};
use switchyard_workers::forge::Forge;

const TOKEN: &str = "gitea-token-for-tests";
const SECRET: &str = "webhook-secret-for-tests";
const META: &str = "acme/meta";
const BOT: &str = "switchyard-bot";

/// An RFC entry's text.
fn entry(slug: &str, title: &str, repo: Option<&str>) -> String {
    let repo = repo.map(|r| format!("repo: {r}\n")).unwrap_or_default();
    format!(
        "---\nslug: {slug}\ntitle: {title}\nstate: active\nid: 7\n{repo}proposed_by: ada\nproposed_at: 2024-05-01\nowners: [ada, bob]\ntags: [cache]\n---\n# {title}\n\nThe body of {slug}.\n"
    )
}

/// A Gitea with the meta repo holding entries `a` (graduated, repo `acme/rfc-a` with
/// `RFC.md` and a branch `draft-1`) and `b`.
async fn gitea() -> GiteaStandin {
    let gitea = GiteaStandin::start(TOKEN).await;
    gitea.create_repo(META);
    gitea.put_file(
        META,
        "main",
        "rfcs/a.md",
        &entry("a", "Alpha", Some("rfc-a")),
    );
    gitea.put_file(META, "main", "rfcs/b.md", &entry("b", "Beta", None));
    gitea.create_repo("acme/rfc-a");
    gitea.put_file("acme/rfc-a", "main", "RFC.md", "# Alpha, the document\n");
    gitea.push_branch("acme/rfc-a", "draft-1");
    gitea
}

/// The test's config with the forge pointed at `gitea`; sweeps are left to the test
/// unless `tweak` shortens `forge.reconcile_interval`.
fn config(gitea: &GiteaStandin, tweak: impl FnOnce(&mut Config)) -> Config {
    let mut config = harness::isolated_config();
    config.forge.url = Some(gitea.url());
    config.forge.token = Some(TOKEN.to_owned());
    config.forge.webhook_secret = Some(SECRET.to_owned());
    config.forge.meta_repo = Some(META.to_owned());
    config.forge.bot_user = Some(BOT.to_owned());
    config.forge.reconcile_interval = Duration::from_secs(3600);
    config.forge.request_timeout = Duration::from_secs(2);
    config.forge.retries = 1;
    config.forge.max_retry_delay = Duration::from_millis(200);
    config.forge.claim_ttl = Duration::from_secs(30);
    tweak(&mut config);
    config
}

/// The whole fleet, after its first sweep (taken at start) has finished.
async fn start(pool: &PgPool, config: Config) -> TestFleet {
    let fleet = TestFleet::start(pool, config, Roles::ALL).await;
    eventually(Duration::from_secs(20), || async {
        sqlx::query_scalar!(
            r#"select count(*) as "n!" from forge_sweeps where finished_at is not null"#
        )
        .fetch_one(pool)
        .await
        .unwrap()
            >= 1
    })
    .await;
    fleet
}

/// A forge role of its own on the fleet's database, for sweeps the test runs itself.
async fn forge_of(fleet: &TestFleet) -> Forge {
    let (doorbell, _) = switchyard_bus::Doorbell::channel(16);
    Forge::new(
        harness::own_pool(&fleet.pool).await,
        doorbell,
        fleet.config.forge.clone(),
    )
    .unwrap()
}

async fn deliver(fleet: &TestFleet, delivery: &Delivery) -> (u16, String) {
    delivery
        .send(&format!("{}/api/v1/webhooks/gitea", fleet.base))
        .await
}

async fn rfc(fleet: &TestFleet, slug: &str) -> (StatusCode, Value) {
    fleet.get(&format!("/rfcs/{slug}")).await
}

/// Waits until the cached RFC `slug` satisfies `check`.
async fn rfc_becomes(
    fleet: &TestFleet,
    slug: &str,
    within: Duration,
    check: impl Fn(&Value) -> bool,
) {
    eventually(within, || async {
        matches!(rfc(fleet, slug).await, (StatusCode::OK, body) if check(&body))
    })
    .await;
}

async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "switchyard::MIGRATOR")]
async fn a_push_webhook_is_in_the_cache_within_a_second(pool: PgPool) {
    let gitea = gitea().await;
    let fleet = start(&pool, config(&gitea, |_| {})).await;
    let (status, body) = rfc(&fleet, "a").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["title"], "Alpha");
    assert_eq!(body["repo"], "acme/rfc-a");
    assert_eq!(body["owners"], json!(["ada", "bob"]));

    gitea.put_file(META, "main", "rfcs/c.md", &entry("c", "Gamma", None));
    let (status, answer) = deliver(&fleet, &gitea.webhook("push", META, SECRET)).await;
    assert_eq!(status, 202, "{answer}");
    rfc_becomes(&fleet, "c", Duration::from_secs(1), |c| {
        c["title"] == "Gamma"
    })
    .await;
    assert_eq!(
        count(
            &pool,
            "select count(*) from audit_log where entity = 'rfc' and entity_key = 'c'"
        )
        .await,
        1,
        "the new RFC is audited once"
    );
    eventually(Duration::from_secs(5), || async {
        fleet.stream_count("rfc.c.updated").await == 1
    })
    .await;
    fleet.stop().await;
}

#[sqlx::test(migrator = "switchyard::MIGRATOR")]
async fn a_change_without_a_webhook_is_picked_up_by_the_next_sweep(pool: PgPool) {
    let gitea = gitea().await;
    let fleet = start(
        &pool,
        config(&gitea, |c| {
            c.forge.reconcile_interval = Duration::from_secs(1)
        }),
    )
    .await;
    gitea.put_file(
        META,
        "main",
        "rfcs/b.md",
        &entry("b", "Beta, revised", None),
    );
    gitea.push_branch("acme/rfc-a", "draft-2");
    rfc_becomes(&fleet, "b", Duration::from_secs(15), |b| {
        b["title"] == "Beta, revised"
    })
    .await;
    eventually(Duration::from_secs(15), || async {
        let (_, page) = fleet.get("/rfcs/a/branches").await;
        page["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|b| b["name"] == "draft-2"))
    })
    .await;
    let (_, sweeps) = fleet.get("/forge/sweeps").await;
    assert!(sweeps["items"].as_array().unwrap().len() >= 2, "{sweeps}");
    fleet.stop().await;
}

#[sqlx::test(migrator = "switchyard::MIGRATOR")]
async fn bad_deliveries_are_refused_and_write_nothing(pool: PgPool) {
    let gitea = gitea().await;
    let fleet = start(
        &pool,
        config(&gitea, |c| c.http.body_limit_bytes = 64 * 1024),
    )
    .await;
    let outbox_before = count(&pool, "select count(*) from outbox").await;
    let good = gitea.webhook("push", META, SECRET);

    let wrong_secret = gitea.webhook("push", META, "not-the-secret");
    let mut unsigned = good.clone();
    unsigned
        .headers
        .retain(|(name, _)| !name.eq_ignore_ascii_case("x-gitea-signature"));
    let mut tampered = good.clone();
    tampered.body.extend_from_slice(b" ");
    for (what, delivery) in [
        ("wrong secret", &wrong_secret),
        ("no signature", &unsigned),
        ("tampered body", &tampered),
    ] {
        let (status, body) = deliver(&fleet, delivery).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert!(body.to_lowercase().contains("signature"), "{what}: {body}");
    }
    let malformed = Delivery::new("push", b"{not json".to_vec(), SECRET);
    let (status, body) = deliver(&fleet, &malformed).await;
    assert_eq!(status, 400, "{body}");
    let no_repo = Delivery::new("push", br#"{"ref": "refs/heads/main"}"#.to_vec(), SECRET);
    let (status, body) = deliver(&fleet, &no_repo).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("repository.full_name"), "{body}");
    let huge = Delivery::new("push", vec![b' '; 128 * 1024], SECRET);
    let (status, body) = deliver(&fleet, &huge).await;
    assert_eq!(status, 413, "{body}");

    assert_eq!(
        count(&pool, "select count(*) from forge_deliveries").await,
        0
    );
    assert_eq!(
        count(&pool, "select count(*) from outbox").await,
        outbox_before
    );
    let (status, _) = deliver(&fleet, &good).await;
    assert_eq!(status, 202, "the genuine delivery still goes through");
    fleet.stop().await;
}

#[sqlx::test(migrator = "switchyard::MIGRATOR")]
async fn a_repeated_delivery_changes_nothing(pool: PgPool) {
    let gitea = gitea().await;
    let fleet = start(&pool, config(&gitea, |_| {})).await;
    gitea.put_file(META, "main", "rfcs/c.md", &entry("c", "Gamma", None));
    let delivery = gitea.webhook("push", META, SECRET);
    let (first, body) = deliver(&fleet, &delivery).await;
    assert_eq!(first, 202, "{body}");
    let (again, body) = deliver(&fleet, &delivery).await;
    assert_eq!(again, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["duplicate"], true);
    assert_eq!(
        count(&pool, "select count(*) from forge_deliveries").await,
        1
    );
    assert_eq!(
        count(
            &pool,
            "select count(*) from outbox where subject like 'forge.%' and event->'data'->>'trigger' = 'webhook'"
        )
        .await,
        1,
        "one forge.changed event, not two"
    );
    assert_eq!(
        count(
            &pool,
            "select count(*) from audit_log where entity = 'forge_delivery'"
        )
        .await,
        1
    );
    fleet.stop().await;
}

#[sqlx::test(migrator = "switchyard::MIGRATOR")]
async fn gitea_down_during_a_webhook_is_retried_until_the_cache_is_right(pool: PgPool) {
    let gitea = gitea().await;
    let fleet = start(&pool, config(&gitea, |_| {})).await;
    gitea.put_file(META, "main", "rfcs/c.md", &entry("c", "Gamma", None));
    let delivery = gitea.webhook("push", META, SECRET);
    gitea.set_down(true);
    let (status, body) = deliver(&fleet, &delivery).await;
    assert_eq!(
        status, 202,
        "the webhook is accepted while Gitea is down: {body}"
    );
    eventually(Duration::from_secs(10), || async {
        let (_, repos) = fleet.get("/forge/repos").await;
        repos["items"].as_array().unwrap().iter().any(|r| {
            r["repo"] == META
                && r["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("unreachable"))
        })
    })
    .await;
    assert_eq!(rfc(&fleet, "c").await.0, StatusCode::NOT_FOUND);
    gitea.set_down(false);
    rfc_becomes(&fleet, "c", Duration::from_secs(20), |c| {
        c["title"] == "Gamma"
    })
    .await;
    let (_, repos) = fleet.get("/forge/repos").await;
    let meta = repos["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["repo"] == META)
        .cloned();
    assert_eq!(meta.unwrap()["last_error"], Value::Null, "the error clears");
    fleet.stop().await;
}

#[sqlx::test(migrator = "switchyard::MIGRATOR")]
async fn deleted_branches_and_removed_entries_are_kept_and_flagged(pool: PgPool) {
    let gitea = gitea().await;
    let fleet = start(&pool, config(&gitea, |_| {})).await;
    let (_, branches) = fleet.get("/rfcs/a/branches").await;
    assert!(branches.to_string().contains("draft-1"), "{branches}");
    let (_, a) = rfc(&fleet, "a").await;
    assert_eq!(a["document"]["body"], "# Alpha, the document\n");

    gitea.delete_branch("acme/rfc-a", "draft-1");
    deliver(&fleet, &gitea.webhook("delete", "acme/rfc-a", SECRET)).await;
    eventually(Duration::from_secs(5), || async {
        let (_, page) = fleet.get("/rfcs/a/branches?state=deleted").await;
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["name"] == "draft-1" && b["state"] == "deleted")
    })
    .await;

    gitea.delete_file(META, "main", "rfcs/b.md");
    deliver(&fleet, &gitea.webhook("push", META, SECRET)).await;
    rfc_becomes(&fleet, "b", Duration::from_secs(5), |b| {
        b["missing_upstream"] == true
    })
    .await;
    let (_, b) = rfc(&fleet, "b").await;
    assert_eq!(b["title"], "Beta", "the row is kept as it was");
    eventually(Duration::from_secs(5), || async {
        fleet.stream_count("rfc.a.branch.deleted").await == 1
            && fleet.stream_count("rfc.b.updated").await == 2
    })
    .await;
    fleet.stop().await;
}

#[sqlx::test(migrator = "switchyard::MIGRATOR")]
async fn an_unparsable_entry_is_reported_and_the_rest_load(pool: PgPool) {
    let gitea = gitea().await;
    gitea.put_file(
        META,
        "main",
        "rfcs/broken.md",
        "---\nslug: [unclosed\n---\nbody\n",
    );
    gitea.put_file(
        META,
        "main",
        "rfcs/dup.md",
        &entry("a", "Alpha again", None),
    );
    // Postgres text cannot hold U+0000: an entry with one is a parse error, and
    // anything else Gitea names with one is stored with U+FFFD instead.
    gitea.put_file(META, "main", "rfcs/nul.md", &entry("nul", "Nul\0", None));
    gitea.push_branch(META, "edit/a/nul");
    gitea.open_pull(META, "edit/a/nul", "A title\0with NUL", "", "ada");
    let fleet = start(&pool, config(&gitea, |_| {})).await;
    let (_, errors) = fleet.get("/forge/parse-errors").await;
    let errors = errors["items"].as_array().unwrap().clone();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors[2]["error"].as_str().unwrap().contains("NUL"),
        "{errors:?}"
    );
    let (_, pulls) = fleet.get("/rfcs/a/pulls").await;
    assert_eq!(
        pulls["items"][0]["title"], "A title\u{FFFD}with NUL",
        "{pulls}"
    );
    assert_eq!(errors[0]["path"], "rfcs/broken.md");
    assert!(
        errors[0]["error"]
            .as_str()
            .unwrap()
            .contains("front matter"),
        "{errors:?}"
    );
    assert_eq!(errors[1]["path"], "rfcs/dup.md");
    assert!(
        errors[1]["error"]
            .as_str()
            .unwrap()
            .contains("already defined by rfcs/a.md")
    );
    assert_eq!(rfc(&fleet, "a").await.1["title"], "Alpha");
    assert_eq!(rfc(&fleet, "b").await.0, StatusCode::OK);

    gitea.put_file(
        META,
        "main",
        "rfcs/broken.md",
        &entry("fixed", "Fixed", None),
    );
    deliver(&fleet, &gitea.webhook("push", META, SECRET)).await;
    rfc_becomes(&fleet, "fixed", Duration::from_secs(5), |_| true).await;
    let (_, errors) = fleet.get("/forge/parse-errors").await;
    assert_eq!(errors["items"].as_array().unwrap().len(), 2, "{errors}");

    // A cached entry that stops parsing keeps its RFC as last read, not "missing".
    // (Five parse_error events in all: three errors, one cleared, this one.)
    gitea.put_file(
        META,
        "main",
        "rfcs/b.md",
        "---\nslug: b\ntitle: [oops\n---\n",
    );
    deliver(&fleet, &gitea.webhook("push", META, SECRET)).await;
    eventually(Duration::from_secs(5), || async {
        let (_, errors) = fleet.get("/forge/parse-errors").await;
        errors["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"] == "rfcs/b.md")
    })
    .await;
    let (_, b) = rfc(&fleet, "b").await;
    assert_eq!(
        (b["title"].as_str(), b["missing_upstream"].as_bool()),
        (Some("Beta"), Some(false))
    );
    eventually(Duration::from_secs(5), || async {
        fleet.stream_count("forge.acme.meta.parse_error").await == 5
    })
    .await;
    fleet.stop().await;
}

#[sqlx::test(migrator = "switchyard::MIGRATOR")]
async fn the_person_behind_a_bot_opened_pull_request(pool: PgPool) {
    let gitea = gitea().await;
    for branch in ["edit/a/one", "edit/a/two", "edit/a/three", "edit/a/four"] {
        gitea.push_branch(META, branch);
    }
    let by_ada = gitea.open_pull(META, "edit/a/one", "Typo", "Fixes a typo.", "ada");
    let logged = gitea.open_pull(META, "edit/a/two", "Logged", "Opened by switchyard.", BOT);
    let trailer = gitea.open_pull(
        META,
        "edit/a/three",
        "Trailer",
        "Rewords.\n\nOn-behalf-of: Dan Brown <dan>\n",
        BOT,
    );
    let bare = gitea.open_pull(META, "edit/a/four", "Bare", "No trailer.", BOT);
    let fleet = start(&pool, config(&gitea, |_| {})).await;
    let (status, body) = fleet
        .post(
            "/forge/actions",
            json!({"repo": META, "pr_number": logged, "rfc_slug": "a", "actor": "carol", "action": "edit"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let expected = [
        (by_ada, "ada", "opener"),
        (logged, "carol", "actions_log"),
        (trailer, "dan", "trailer"),
        (bare, BOT, "login"),
    ];
    eventually(Duration::from_secs(5), || async {
        let (_, page) = fleet.get("/rfcs/a/pulls").await;
        let pulls = page["items"].as_array().cloned().unwrap_or_default();
        expected.iter().all(|(number, person, source)| {
            pulls.iter().any(|p| {
                p["number"] == *number
                    && p["opened_by"] == *person
                    && p["opened_by_source"] == *source
                    && p["kind"] == "meta_body_edit"
            })
        })
    })
    .await;
    fleet.stop().await;
}

/// The cache's rows for what Gitea holds now (tombstones aside), without bookkeeping
/// times.
async fn cache_snapshot(pool: &PgPool) -> Value {
    sqlx::query_scalar!(
        r#"select jsonb_build_object(
             'rfcs', (select coalesce(jsonb_agg(to_jsonb(r) - 'updated_at' order by slug), '[]')
                      from rfcs r where not missing_upstream),
             'branches', (select coalesce(jsonb_agg(to_jsonb(b) - 'updated_at' order by repo, name), '[]')
                          from rfc_branches b where state = 'active'),
             'pulls', (select coalesce(jsonb_agg(to_jsonb(p) - 'updated_at' order by repo, number), '[]')
                       from rfc_pulls p),
             'parse_errors', (select coalesce(jsonb_agg(to_jsonb(e) - 'seen_at' order by path), '[]')
                              from forge_parse_errors e)
           ) as "cache!""#
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "switchyard::MIGRATOR")]
async fn a_rebuild_from_empty_equals_the_kept_cache(pool: PgPool) {
    let gitea = gitea().await;
    let fleet = start(&pool, config(&gitea, |_| {})).await;
    // Changes, each told by its webhook: a new entry, an edit, a broken entry, pull
    // requests opened and merged, branches pushed and deleted, an entry removed.
    gitea.put_file(
        META,
        "main",
        "rfcs/c.md",
        &entry("c", "Gamma", Some("acme/rfc-a")),
    );
    gitea.put_file(
        META,
        "main",
        "rfcs/b.md",
        &entry("b", "Beta, revised", None),
    );
    gitea.put_file(META, "main", "rfcs/x.md", "no front matter");
    gitea.push_branch(META, "propose/d");
    let idea = gitea.open_pull(META, "propose/d", "Delta", "", "ada");
    gitea.merge_pull(META, idea);
    deliver(&fleet, &gitea.webhook("push", META, SECRET)).await;
    gitea.push_branch("acme/rfc-a", "draft-2");
    gitea.open_pull(
        "acme/rfc-a",
        "draft-2",
        "Draft two",
        "On-behalf-of: Eve <eve>",
        BOT,
    );
    gitea.delete_branch("acme/rfc-a", "draft-1");
    deliver(&fleet, &gitea.webhook("pull_request", "acme/rfc-a", SECRET)).await;
    gitea.delete_file(META, "main", "rfcs/c.md");
    deliver(&fleet, &gitea.webhook("push", META, SECRET)).await;
    fleet.consumer_idle("forge", Duration::from_secs(10)).await;
    let kept = cache_snapshot(&pool).await;
    assert_eq!(kept["rfcs"].as_array().unwrap().len(), 2, "{kept}");
    assert_eq!(kept["pulls"].as_array().unwrap().len(), 2, "{kept}");

    let report = forge_of(&fleet).await.rebuild("test").await.unwrap();
    assert_eq!(report.trigger, SweepTrigger::Rebuild);
    assert!(report.unreachable.is_empty(), "{report:?}");
    assert_eq!(cache_snapshot(&pool).await, kept);
    fleet.stop().await;
}

#[sqlx::test(migrator = "switchyard::MIGRATOR")]
async fn a_refresh_that_read_earlier_never_overwrites_one_that_read_later(pool: PgPool) {
    let gitea = gitea().await;
    let fleet = start(&pool, config(&gitea, |_| {})).await;
    let first_head = gitea.head("acme/rfc-a", "draft-1").unwrap();

    // A sweep reads the RFC repo's branches; its answer (the old head) is held back.
    let stall = gitea.stall_next("/repos/acme/rfc-a/branches");
    let forge = forge_of(&fleet).await;
    let sweep = tokio::spawn(async move { forge.sweep(SweepTrigger::Request, "test").await });
    eventually(Duration::from_secs(10), || async { gitea.stalled() == 1 }).await;

    // Meanwhile the branch moves and Gitea says so: the webhook's refresh reads later.
    let second_head = gitea.push_branch("acme/rfc-a", "draft-1");
    let (status, _) = deliver(&fleet, &gitea.webhook("create", "acme/rfc-a", SECRET)).await;
    assert_eq!(status, 202);
    // Nothing to drive here: the point is to give the webhook's refresh time to run
    // (and, were refreshes not serialized, to write the newer head) before the sweep's
    // older answer arrives.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stall.release();
    let report = sweep.await.unwrap().unwrap();
    assert!(report.unreachable.is_empty(), "{report:?}");

    eventually(Duration::from_secs(10), || async {
        let (_, page) = fleet.get("/rfcs/a/branches").await;
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["name"] == "draft-1" && b["head_sha"] == second_head)
    })
    .await;
    fleet.consumer_idle("forge", Duration::from_secs(10)).await;
    let (_, page) = fleet.get("/rfcs/a/branches").await;
    let draft = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "draft-1")
        .cloned()
        .unwrap();
    assert_eq!(
        draft["head_sha"], second_head,
        "the newest read wins, not {first_head}"
    );
    fleet.stop().await;
}

#[sqlx::test(migrator = "switchyard::MIGRATOR")]
async fn a_sweep_and_a_rebuild_are_asked_for_through_the_api(pool: PgPool) {
    let gitea = gitea().await;
    let fleet = start(&pool, config(&gitea, |_| {})).await;
    // A change Gitea never told us about.
    gitea.put_file(META, "main", "rfcs/c.md", &entry("c", "Gamma", None));
    let operator = harness::client_with(&harness::token(&fleet.config, Role::Operator));
    let refused = operator
        .post(fleet.url("/forge/reconcile"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN, "admins only");

    for (path, trigger) in [
        ("/forge/reconcile", "request"),
        ("/forge/rebuild", "rebuild"),
    ] {
        let answer = fleet.http.post(fleet.url(path)).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::ACCEPTED);
        let answer: Value = answer.json().await.unwrap();
        assert_eq!(answer["trigger"], trigger);
        let id = answer["sweep_id"].as_str().unwrap().to_owned();
        eventually(Duration::from_secs(10), || async {
            let (_, page) = fleet.get("/forge/sweeps").await;
            page["items"].as_array().unwrap().iter().any(|s| {
                s["id"] == id.as_str()
                    && s["requested_by"] == "tester"
                    && !s["finished_at"].is_null()
                    && s["repos"] == 2
            })
        })
        .await;
        rfc_becomes(&fleet, "c", Duration::from_secs(1), |c| {
            c["title"] == "Gamma"
        })
        .await;
    }
    assert_eq!(
        count(
            &pool,
            "select count(*) from audit_log where entity = 'forge_cache' and action = 'dropped'"
        )
        .await,
        1
    );
    // Three sweeps (at start, asked for, rebuild), each announcing a step per repo.
    eventually(Duration::from_secs(5), || async {
        fleet.stream_count("forge.sweep.finished").await == 3
            && fleet.stream_count("forge.sweep.progress").await == 6
            && fleet.stream_count("forge.sweep.requested").await == 2
    })
    .await;

    // A rebuild that cannot reach Gitea drops nothing, and finishes saying why.
    gitea.set_down(true);
    let answer = fleet
        .http
        .post(fleet.url("/forge/rebuild"))
        .send()
        .await
        .unwrap();
    let id = answer.json::<Value>().await.unwrap()["sweep_id"].clone();
    eventually(Duration::from_secs(15), || async {
        let (_, page) = fleet.get("/forge/sweeps").await;
        page["items"].as_array().unwrap().iter().any(|s| {
            s["id"] == id
                && !s["finished_at"].is_null()
                && s["unreachable"][0]["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("nothing was dropped"))
        })
    })
    .await;
    gitea.set_down(false);
    assert_eq!(
        rfc(&fleet, "c").await.0,
        StatusCode::OK,
        "the cache is kept"
    );
    assert_eq!(
        count(
            &pool,
            "select count(*) from audit_log where action = 'dropped'"
        )
        .await,
        1
    );
    fleet.stop().await;
}

#[sqlx::test(migrator = "switchyard::MIGRATOR")]
async fn a_webhook_while_postgres_is_down_is_a_503_and_nothing_is_lost(pool: PgPool) {
    let gitea = gitea().await;
    let fleet = start(
        &pool,
        config(&gitea, |c| {
            c.database.acquire_timeout = Duration::from_secs(1)
        }),
    )
    .await;
    let database = pool.connect_options().get_database().unwrap().to_owned();
    // An administrative connection of its own, to the server's `postgres` database.
    let admin = sqlx::PgPool::connect(&std::env::var("DATABASE_URL").unwrap())
        .await
        .unwrap();
    // The name is the test database's own, generated by sqlx::test.
    let block = format!("alter database \"{database}\" with allow_connections false");
    sqlx::query(sqlx::AssertSqlSafe(block))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1")
        .bind(&database)
        .execute(&admin)
        .await
        .unwrap();

    gitea.put_file(META, "main", "rfcs/c.md", &entry("c", "Gamma", None));
    let delivery = gitea.webhook("push", META, SECRET);
    let (status, body) = deliver(&fleet, &delivery).await;
    let allow = format!("alter database \"{database}\" with allow_connections true");
    sqlx::query(sqlx::AssertSqlSafe(allow))
        .execute(&admin)
        .await
        .unwrap();
    assert_eq!(status, 503, "never a silent 2xx: {body}");
    assert!(
        !body.contains("sqlx") && !body.contains("pool"),
        "no internals: {body}"
    );

    // Gitea never retries, but whoever resends the delivery gets it recorded.
    let (status, body) = deliver(&fleet, &delivery).await;
    assert_eq!(status, 202, "{body}");
    rfc_becomes(&fleet, "c", Duration::from_secs(5), |c| {
        c["title"] == "Gamma"
    })
    .await;
    fleet.stop().await;
}
