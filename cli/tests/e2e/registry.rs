//! The interface change registry end to end: repos, the interface change lifecycle
//! and every refusal, the notifier's exactly-once inbox, dispatch, and the repo's
//! event stream.

use crate::harness;

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use harness::TestFleet;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

type Frames = std::pin::Pin<Box<dyn futures::Stream<Item = eventsource_stream::Event> + Send>>;

/// The next SSE frame, failing if none arrives in time.
async fn next(frames: &mut Frames) -> eventsource_stream::Event {
    tokio::time::timeout(Duration::from_secs(15), frames.next())
        .await
        .expect("no frame within 15s")
        .expect("the stream ended")
}

/// Registers a repo; the API must answer 201.
async fn register(fleet: &TestFleet, slug: &str, extra: Value) -> Value {
    let mut body = json!({"slug": slug, "name": format!("The {slug} repo")});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let (status, repo) = fleet.post("/repos", body).await;
    assert_eq!(status, StatusCode::CREATED, "{repo}");
    repo
}

/// A draft change by `origin` affecting `affected`, with `paths`; returns its id.
async fn draft(fleet: &TestFleet, origin: &str, affected: &[&str], paths: usize) -> Uuid {
    let (status, change) = fleet
        .post(
            "/interface-changes",
            json!({
                "repo_slug": origin,
                "interface_type": "rest_api",
                "change_type": "breaking",
                "title": format!("Change by {origin}"),
                "description": "Invoices move to /v2.",
                "affected_paths": (1..=paths).map(|i| format!("/v1/invoices/{i}")).collect::<Vec<_>>(),
                "affected_repo_slugs": affected,
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{change}");
    change["id"].as_str().unwrap().parse().unwrap()
}

async fn publish(fleet: &TestFleet, id: Uuid) -> Value {
    let (status, change) = fleet
        .post(&format!("/interface-changes/{id}/publish"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{change}");
    change
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

/// Audit actions recorded for one entity, oldest first.
async fn audit_actions(pool: &PgPool, entity: &str, key: &str) -> Vec<String> {
    sqlx::query_scalar!(
        "select action from audit_log where entity = $1 and entity_key = $2 order by id",
        entity,
        key,
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Outbox subjects staged under a subject pattern (SQL `like`), oldest first.
async fn staged(pool: &PgPool, pattern: &str) -> Vec<String> {
    sqlx::query_scalar!(
        r#"select subject as "subject!" from outbox where subject like $1 order by position"#,
        pattern,
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrations = "../migrations")]
async fn repos_register_look_up_edit_and_archive(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let repo = register(
        &fleet,
        "billing",
        json!({"domain": "payments", "remote_url": "git@github.com:acme/billing.git",
               "git_fingerprint": "abc123", "description": "Invoices"}),
    )
    .await;
    assert_eq!(repo["archived_at"], Value::Null);
    register(&fleet, "web", json!({"domain": "frontend"})).await;

    let (status, body) = fleet
        .post("/repos", json!({"slug": "billing", "name": "again"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(message(&body).contains("already exists"), "{body}");
    for (slug, why) in [
        ("Billing", "not a slug"),
        ("-billing", "not a slug"),
        ("bill_ing", "not a slug"),
        (&"a".repeat(64), "not a slug"),
        ("by-remote", "reserved"),
    ] {
        let (status, body) = fleet
            .post("/repos", json!({"slug": slug, "name": "x"}))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{slug}: {body}");
        assert!(message(&body).contains(why), "{slug}: {body}");
    }
    let (status, body) = fleet
        .post(
            "/repos",
            json!({"slug": "fork", "name": "x", "remote_url": "https://github.com/acme/billing"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "one active repo per remote: {body}"
    );

    let (_, page) = fleet.get("/repos?domain=payments").await;
    let slugs: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["billing"]);
    let (_, found) = fleet.get("/repos/by-fingerprint?hash=abc123").await;
    assert_eq!(found.as_array().unwrap().len(), 1);
    let (status, found) = fleet.get("/repos/by-fingerprint?hash=nothing").await;
    assert_eq!((status, found), (StatusCode::OK, json!([])));
    let (status, found) = fleet
        .get("/repos/by-remote?url=https://GitHub.com/acme/billing/")
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["slug"], "billing");
    let (status, _) = fleet
        .get("/repos/by-remote?url=https://github.com/acme/other")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, edited) = fleet
        .patch("/repos/billing", json!({"name": "Billing", "domain": null}))
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(
        (&edited["name"], &edited["domain"], &edited["description"]),
        (&json!("Billing"), &Value::Null, &json!("Invoices"))
    );
    let (status, body) = fleet.patch("/repos/billing", json!({"slug": "x"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let (status, archived) = fleet.post("/repos/billing/archive", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert!(archived["archived_at"].is_string());
    let (status, body) = fleet.post("/repos/billing/archive", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(message(&body).contains("archived"), "{body}");
    let (status, _) = fleet.patch("/repos/billing", json!({"name": "x"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, page) = fleet.get("/repos").await;
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        1,
        "archived repos are hidden by default"
    );
    let (_, page) = fleet.get("/repos?include_archived=true").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    for (status, _) in [
        fleet.get("/repos/nope").await,
        fleet.patch("/repos/nope", json!({"name": "x"})).await,
        fleet.post("/repos/nope/archive", json!({})).await,
    ] {
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    // Each change committed with its audit row and its event; refusals wrote nothing.
    assert_eq!(
        audit_actions(&pool, "repo", "billing").await,
        ["registered", "edited", "archived"]
    );
    assert_eq!(staged(&pool, "repo.billing.%").await.len(), 3);
    assert!(audit_actions(&pool, "repo", "fork").await.is_empty());
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn an_interface_change_goes_from_draft_to_published_to_resolved_and_no_other_way(
    pool: PgPool,
) {
    let fleet = TestFleet::up(&pool).await;
    register(&fleet, "billing", json!({})).await;
    register(&fleet, "web", json!({})).await;
    let id = draft(&fleet, "billing", &["web"], 2).await;
    let (_, change) = fleet.get(&format!("/interface-changes/{id}")).await;
    assert_eq!(change["status"], "draft");
    assert_eq!(change["author"], "tester", "the token's subject by default");
    assert_eq!(change["published_at"], Value::Null);

    let valid = json!({"repo_slug": "billing", "interface_type": "cli", "change_type": "additive",
                       "title": "t", "description": "d", "affected_paths": [], "affected_repo_slugs": []});
    let with = |key: &str, value: Value| {
        let mut body = valid.clone();
        body[key] = value;
        body
    };
    for (body, names) in [
        (
            with("interface_type", json!("graphql")),
            vec!["rest_api", "mcp_tool", "cli", "schema", "capability"],
        ),
        (
            with("change_type", json!("minor")),
            vec!["breaking", "additive", "deprecation", "removal"],
        ),
        (
            with("affected_repo_slugs", json!(["Web"])),
            vec!["not a slug"],
        ),
        (
            with("affected_repo_slugs", json!(["web", "web"])),
            vec!["twice"],
        ),
        (with("title", json!("  ")), vec!["title"]),
        (with("planned_for", json!("next week")), vec!["planned_for"]),
    ] {
        let (status, refused) = fleet.post("/interface-changes", body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {refused}"
        );
        for name in names {
            assert!(
                message(&refused).contains(name),
                "{refused} should name {name}"
            );
        }
    }
    let (status, refused) = fleet
        .post("/interface-changes", with("repo_slug", json!("ghost")))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{refused}");

    let (status, edited) = fleet
        .patch(
            &format!("/interface-changes/{id}"),
            json!({"title": "Invoices v2", "planned_for": "2027-01-15"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(
        (&edited["title"], &edited["planned_for"]),
        (&json!("Invoices v2"), &json!("2027-01-15"))
    );
    let (status, refused) = fleet
        .post(&format!("/interface-changes/{id}/resolve"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(message(&refused).contains("'draft'"), "{refused}");

    let published = publish(&fleet, id).await;
    assert_eq!(published["status"], "published");
    assert!(published["published_at"].is_string());
    let (status, refused) = fleet
        .patch(
            &format!("/interface-changes/{id}"),
            json!({"title": "late"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        message(&refused),
        "Cannot edit a change with status 'published'. Only draft records are mutable."
    );
    let (status, refused) = fleet
        .post(&format!("/interface-changes/{id}/publish"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(message(&refused).contains("'published'"), "{refused}");

    let (status, resolved) = fleet
        .post(&format!("/interface-changes/{id}/resolve"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{resolved}");
    assert!(resolved["resolved_at"].is_string());
    let (status, refused) = fleet
        .post(&format!("/interface-changes/{id}/resolve"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(message(&refused).contains("'resolved'"), "{refused}");
    let unknown = Uuid::now_v7();
    for (status, _) in [
        fleet.get(&format!("/interface-changes/{unknown}")).await,
        fleet
            .patch(&format!("/interface-changes/{unknown}"), json!({}))
            .await,
        fleet
            .post(&format!("/interface-changes/{unknown}/publish"), json!({}))
            .await,
        fleet
            .post(&format!("/interface-changes/{unknown}/resolve"), json!({}))
            .await,
    ] {
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    // Each step committed with its audit row and its event; refusals wrote neither.
    assert_eq!(
        audit_actions(&pool, "interface_change", &id.to_string()).await,
        ["drafted", "edited", "published", "resolved"]
    );
    assert_eq!(
        staged(&pool, &format!("interface.{id}.%")).await,
        [
            format!("interface.{id}.draft"),
            format!("interface.{id}.draft"),
            format!("interface.{id}.published"),
            format!("interface.{id}.resolved"),
        ]
    );
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn interface_changes_list_newest_first_by_every_filter(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    for slug in ["billing", "auth", "web", "mobile"] {
        register(&fleet, slug, json!({})).await;
    }
    let first = draft(&fleet, "billing", &["web"], 1).await;
    let second = draft(&fleet, "auth", &["web", "mobile"], 1).await;
    let third = draft(&fleet, "billing", &["mobile"], 1).await;
    publish(&fleet, second).await;
    let ids = |page: Value| -> Vec<Uuid> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().parse().unwrap())
            .collect()
    };
    assert_eq!(
        ids(fleet.get("/interface-changes").await.1),
        [third, second, first]
    );
    assert_eq!(
        ids(fleet.get("/interface-changes?repo_slug=billing").await.1),
        [third, first]
    );
    assert_eq!(
        ids(fleet.get("/interface-changes?status=published").await.1),
        [second]
    );
    assert_eq!(
        ids(fleet.get("/interface-changes?affected_repo=web").await.1),
        [second, first]
    );
    assert_eq!(
        ids(fleet
            .get("/interface-changes?change_type=breaking&affected_repo=mobile")
            .await
            .1),
        [third, second]
    );
    assert!(ids(fleet.get("/interface-changes?change_type=removal").await.1).is_empty());
    let (_, page) = fleet.get("/interface-changes?limit=2").await;
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    assert_eq!(ids(page), [third, second]);
    assert_eq!(
        ids(fleet
            .get(&format!("/interface-changes?limit=2&cursor={cursor}"))
            .await
            .1),
        [first]
    );
    let (status, refused) = fleet.get("/interface-changes?status=gone").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(message(&refused).contains("published"), "{refused}");
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn publishing_notifies_each_affected_repo_once_however_often_the_event_arrives(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    for slug in ["billing", "web", "mobile", "retired"] {
        register(&fleet, slug, json!({})).await;
    }
    fleet.post("/repos/retired/archive", json!({})).await;
    let id = draft(&fleet, "billing", &["web", "mobile", "retired", "ghost"], 8).await;
    publish(&fleet, id).await;

    // Once the original is on the stream, the published event arrives twice more (as
    // if re-published under new ids).
    harness::eventually(Duration::from_secs(10), || async {
        harness::unpublished(&pool).await == 0
    })
    .await;
    let envelope: Value = sqlx::query_scalar!(
        r#"select event as "event!" from outbox where subject = $1"#,
        format!("interface.{id}.published"),
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let js = fleet.jetstream().await;
    let wire = format!(
        "{}.interface.{id}.published",
        fleet.config.bus.subject_prefix
    );
    for _ in 0..2 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", Uuid::now_v7().to_string().as_str());
        js.publish_with_headers(wire.clone(), headers, envelope.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // All three deliveries handled: nothing pending or unacked on the notifier.
    fleet
        .consumer_idle("notifier", Duration::from_secs(15))
        .await;

    for recipient in ["web", "mobile"] {
        let (_, inbox) = fleet.get(&format!("/repos/{recipient}/inbox")).await;
        let messages = inbox["items"].as_array().unwrap();
        assert_eq!(messages.len(), 1, "{recipient}: {inbox}");
        let message = &messages[0];
        assert_eq!(message["subject"], "[BREAKING] Change by billing");
        assert_eq!(message["from_repo_slug"], "billing");
        let body = message["body"].as_str().unwrap();
        assert!(
            body.contains("/v1/invoices/5") && !body.contains("/v1/invoices/6"),
            "{body}"
        );
        assert!(body.contains("(+3 more)"), "{body}");
        assert!(
            body.contains("rest_api") && body.contains("breaking"),
            "{body}"
        );
        assert!(body.contains("Invoices move to /v2."), "{body}");
    }
    let (_, inbox) = fleet.get("/repos/retired/inbox").await;
    assert_eq!(inbox["items"], json!([]), "archived repos get no messages");

    let (_, dispatch) = fleet.get("/repos/billing/dispatch").await;
    let milestone = &dispatch["recent_progress"][0];
    assert_eq!(milestone["kind"], "milestone");
    assert_eq!(
        milestone["summary"],
        "Interface change published: Change by billing"
    );
    let detail = &milestone["detail"];
    assert_eq!(detail["interface_change_id"], json!(id));
    assert_eq!(detail["notifications_sent"], 2);
    assert_eq!(detail["notified_repo_slugs"], json!(["web", "mobile"]));
    assert_eq!(detail["unregistered_repo_slugs"], json!(["ghost"]));
    assert_eq!(detail["archived_repo_slugs"], json!(["retired"]));
    assert_eq!(
        (&detail["interface_type"], &detail["change_type"]),
        (&json!("rest_api"), &json!("breaking"))
    );

    // Exactly one announcement per recipient and one milestone, committed with them.
    assert_eq!(
        staged(&pool, "repo.%.inbox").await,
        ["repo.web.inbox", "repo.mobile.inbox"]
    );
    assert_eq!(
        staged(&pool, "repo.%.progress").await,
        ["repo.billing.progress"]
    );
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn dispatch_lists_what_affects_a_repo_newest_published_first(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    for slug in ["billing", "auth", "web", "mobile"] {
        register(&fleet, slug, json!({})).await;
    }
    // Publication order, not creation order, decides: `newer` is drafted first and
    // published last.
    let newer = draft(&fleet, "auth", &["web", "mobile"], 1).await;
    let older = draft(&fleet, "billing", &["web"], 7).await;
    let done = draft(&fleet, "auth", &["web"], 1).await;
    let elsewhere = draft(&fleet, "billing", &["mobile"], 1).await;
    let _unpublished = draft(&fleet, "billing", &["web"], 1).await;
    publish(&fleet, older).await;
    publish(&fleet, done).await;
    publish(&fleet, newer).await;
    publish(&fleet, elsewhere).await;
    fleet
        .post(&format!("/interface-changes/{done}/resolve"), json!({}))
        .await;
    harness::eventually(Duration::from_secs(15), || async {
        fleet.get("/repos/web/dispatch").await.1["unread_inbox_count"] == 3
    })
    .await;

    let (status, dispatch) = fleet.get("/repos/web/dispatch").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(dispatch["repo_slug"], "web");
    let pending = dispatch["pending_interface_changes"].as_array().unwrap();
    let order: Vec<Uuid> = pending
        .iter()
        .map(|c| c["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        order,
        [newer, older],
        "published, unresolved, affecting web, newest published first"
    );
    let first = &pending[1];
    assert_eq!(first["origin_repo_slug"], "billing");
    assert_eq!(first["affected_paths"].as_array().unwrap().len(), 7);
    for field in [
        "title",
        "change_type",
        "interface_type",
        "planned_for",
        "published_at",
    ] {
        assert!(first.get(field).is_some(), "{field} missing: {first}");
    }
    assert_eq!(dispatch["unread_inbox"].as_array().unwrap().len(), 3);

    // Reading a message: once is a change (audited, announced), twice is the same answer.
    let message_id = dispatch["unread_inbox"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/repos/web/inbox/{message_id}/read");
    let (status, read) = fleet.post(&path, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    let (status, again) = fleet.post(&path, json!({})).await;
    assert_eq!(
        (status, &again["read_at"]),
        (StatusCode::OK, &read["read_at"])
    );
    assert_eq!(
        audit_actions(&pool, "inbox_message", &message_id).await,
        ["delivered", "read"]
    );
    assert_eq!(staged(&pool, "repo.web.inbox.read").await.len(), 1);
    let (_, unread) = fleet.get("/repos/web/inbox?unread=true").await;
    assert_eq!(unread["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        fleet.get("/repos/web/dispatch").await.1["unread_inbox_count"],
        2
    );
    let (status, _) = fleet
        .post(&format!("/repos/mobile/inbox/{message_id}/read"), json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another repo's message");
    let (status, _) = fleet.get("/repos/ghost/dispatch").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_repo_stream_opens_with_its_dispatch_and_carries_its_inbox_live(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    register(&fleet, "billing", json!({})).await;
    register(&fleet, "web", json!({})).await;
    let response = fleet
        .http
        .get(fleet.url("/repos/web/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut frames: Frames = Box::pin(response.bytes_stream().eventsource().map(Result::unwrap));
    let snapshot = next(&mut frames).await;
    assert_eq!(snapshot.event, "snapshot");
    let dispatch: Value = serde_json::from_str(&snapshot.data).unwrap();
    assert_eq!(dispatch["repo_slug"], "web");
    assert_eq!(dispatch["unread_inbox_count"], 0);

    let id = draft(&fleet, "billing", &["web"], 1).await;
    publish(&fleet, id).await;
    // (The registration's own `repo.updated` may come first.)
    let mut inbox = next(&mut frames).await;
    while inbox.event == "repo.updated" {
        inbox = next(&mut frames).await;
    }
    assert_eq!(inbox.event, "inbox.message");
    let envelope: Value = serde_json::from_str(&inbox.data).unwrap();
    assert_eq!(envelope["data"]["interface_change_id"], json!(id));
    assert_eq!(envelope["data"]["subject"], "[BREAKING] Change by billing");
    let (status, _) = fleet.get("/repos/ghost/events").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_publish_whose_audit_write_fails_commits_nothing_and_leaks_nothing(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    register(&fleet, "billing", json!({})).await;
    let id = draft(&fleet, "billing", &[], 0).await;
    sqlx::query!(
        "create function refuse_audit() returns trigger language plpgsql as
         $$ begin raise exception 'secret internal detail: audit disk full'; end $$",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query!(
        "create trigger refuse before insert on audit_log
         for each row execute function refuse_audit()",
    )
    .execute(&pool)
    .await
    .unwrap();
    let (status, body) = fleet
        .post(&format!("/interface-changes/{id}/publish"), json!({}))
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        !body.to_string().contains("secret"),
        "500 leaked internals: {body}"
    );
    let (_, change) = fleet.get(&format!("/interface-changes/{id}")).await;
    assert_eq!(change["status"], "draft", "published without its audit row");
    assert!(
        staged(&pool, &format!("interface.{id}.published"))
            .await
            .is_empty()
    );
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn admins_read_the_audit_trail_newest_first_with_the_token_subject_as_actor(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let secret = fleet.config.auth.secret.clone().unwrap();
    let as_admin = |subject: &str| {
        harness::client_with(
            &switchyard_api::auth::Authenticator::new(secret.as_bytes()).mint(
                subject,
                switchyard_api::auth::Role::Admin,
                Duration::from_secs(60),
            ),
        )
    };
    let ada = as_admin("ada");
    let response = ada
        .post(fleet.url("/repos"))
        .json(&json!({"slug": "billing", "name": "Billing"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = as_admin("grace")
        .patch(fleet.url("/repos/billing"))
        .json(&json!({"description": "Invoices"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    register(&fleet, "web", json!({})).await;

    let read = |query: &str| {
        let request = ada.get(fleet.url(&format!("/audit{query}")));
        async move { harness::read(request.send().await.unwrap()).await }
    };
    let (status, page) = read("?entity=repo&key=billing").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let entries = page["items"].as_array().unwrap();
    let seen: Vec<(&str, &str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["entity"].as_str().unwrap(),
                e["key"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
                e["actor"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("repo", "billing", "edited", "grace"),
            ("repo", "billing", "registered", "ada")
        ]
    );
    assert_eq!(entries[0]["detail"]["description"], "Invoices");
    assert!(entries[0]["recorded_at"].is_string());
    assert_eq!(page["next_cursor"], Value::Null);

    // Every repo, a page at a time: web, then billing's two.
    let mut keys = Vec::new();
    let mut query = "?entity=repo&limit=2".to_owned();
    loop {
        let (status, page) = read(&query).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for entry in page["items"].as_array().unwrap() {
            keys.push(format!("{} {}", entry["key"], entry["action"]));
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("?entity=repo&limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(
        keys,
        [
            r#""web" "registered""#,
            r#""billing" "edited""#,
            r#""billing" "registered""#
        ]
    );
    let (_, all) = read("").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 3, "{all}");

    for (query, says) in [
        ("?key=billing", "key needs entity"),
        ("?entity=repos", "expected one of repo,"),
        ("?cursor=abc", "cursor"),
        ("?limit=0", "limit"),
    ] {
        let (status, body) = read(query).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert!(message(&body).contains(says), "{query}: {body}");
    }
    let operator = harness::client_with(&harness::token(
        &fleet.config,
        switchyard_api::auth::Role::Operator,
    ));
    let response = operator.get(fleet.url("/audit")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    fleet.stop().await;
}
