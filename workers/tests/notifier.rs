//! The notifier against real Postgres, without the bus: driven with `notify`, so
//! races and failures are deterministic.

use sqlx::PgPool;
use switchyard_bus::Doorbell;
use switchyard_domain::status::{ChangeStatus, ChangeType, InterfaceType};
use switchyard_workers::notifier::{Notified, Notifier, NotifierConfig};
use uuid::Uuid;

fn notifier(pool: &PgPool) -> Notifier {
    let (doorbell, _relay_gone) = Doorbell::channel(1);
    Notifier {
        pool: pool.clone(),
        doorbell,
        config: NotifierConfig::default(),
    }
}

/// Repos `billing`, `web`, `mobile`, and a change by billing affecting web, mobile and
/// the unregistered `ghost`, in `status`.
async fn change(pool: &PgPool, status: ChangeStatus) -> Uuid {
    sqlx::query!(
        "insert into repos (slug, name) values ('billing', 'b'), ('web', 'w'), ('mobile', 'm')",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query_scalar!(
        "insert into interface_changes
           (id, repo_slug, interface_type, change_type, title, description,
            affected_paths, affected_repo_slugs, author, status, published_at)
         values ($1, 'billing', 'schema', 'removal', 'Drop field', 'Gone.', array['/a'],
                 array['web', 'mobile', 'ghost'], 'test', $2,
                 case when $2 = 'draft' then null else now() end)
         returning id",
        Uuid::now_v7(),
        status as _,
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// (inbox messages, milestones, staged events, delivery audit rows) written for `change`.
async fn written(pool: &PgPool, change: Uuid) -> (i64, i64, i64, i64) {
    let row = sqlx::query!(
        r#"select (select count(*) from inbox_messages where interface_change_id = $1) as "inbox!",
                (select count(*) from progress_events where interface_change_id = $1) as "milestones!",
                (select count(*) from outbox where subject like 'repo.%') as "staged!",
                (select count(*) from audit_log
                 where action = 'delivered' and detail->>'interface_change_id' = $1::text) as "audited!""#,
        change,
    )
    .fetch_one(pool)
    .await
    .unwrap();
    (row.inbox, row.milestones, row.staged, row.audited)
}

#[sqlx::test(migrations = "../migrations")]
async fn notifiers_racing_for_one_change_write_each_message_once(pool: PgPool) {
    let id = change(&pool, ChangeStatus::Published).await;
    let racers: Vec<_> = (0..3)
        .map(|_| {
            let notifier = notifier(&pool);
            tokio::spawn(async move { notifier.notify(id).await.unwrap() })
        })
        .collect();
    let mut sent = Vec::new();
    for racer in racers {
        if let Notified::Sent(recipients) = racer.await.unwrap() {
            sent.push(recipients);
        }
    }
    assert_eq!(sent.len(), 1, "exactly one notifier sends");
    assert_eq!(sent[0].notified, ["web", "mobile"]);
    assert_eq!(sent[0].unregistered, ["ghost"]);
    assert_eq!(written(&pool, id).await, (2, 1, 3, 2));
    assert_eq!(
        notifier(&pool).notify(id).await.unwrap(),
        Notified::AlreadyDone
    );
    assert_eq!(written(&pool, id).await, (2, 1, 3, 2));
}

#[sqlx::test(migrations = "../migrations")]
async fn a_failure_midway_commits_nothing_and_the_retry_sends_everything(pool: PgPool) {
    let id = change(&pool, ChangeStatus::Published).await;
    sqlx::query!(
        "create function refuse_mobile() returns trigger language plpgsql as
         $$ begin if new.repo_slug = 'mobile' then raise exception 'inbox full'; end if;
                  return new; end $$",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query!(
        "create trigger refuse before insert on inbox_messages
         for each row execute function refuse_mobile()",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert!(notifier(&pool).notify(id).await.is_err());
    assert_eq!(
        written(&pool, id).await,
        (0, 0, 0, 0),
        "a partial notification committed"
    );

    sqlx::query!("drop trigger refuse on inbox_messages")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(notifier(&pool).run_until_idle().await.unwrap(), 1);
    assert_eq!(written(&pool, id).await, (2, 1, 3, 2));
}

#[sqlx::test(migrations = "../migrations")]
async fn a_draft_is_never_notified(pool: PgPool) {
    let id = change(&pool, ChangeStatus::Draft).await;
    assert_eq!(
        notifier(&pool).notify(id).await.unwrap(),
        Notified::NotPublished
    );
    assert_eq!(notifier(&pool).run_until_idle().await.unwrap(), 0);
    assert_eq!(written(&pool, id).await, (0, 0, 0, 0));
}

#[sqlx::test(migrations = "../migrations")]
async fn the_reconciler_reannounces_a_published_change_nobody_notified(pool: PgPool) {
    use switchyard_workers::reconciler::{Reconciler, ReconcilerConfig};
    let id = change(&pool, ChangeStatus::Published).await;
    let (doorbell, _relay_gone) = Doorbell::channel(16);
    let reconciler = Reconciler {
        pool: pool.clone(),
        doorbell,
        config: ReconcilerConfig {
            reannounce_after: std::time::Duration::from_secs(60),
            ..ReconcilerConfig::default()
        },
    };
    sqlx::query!("update interface_changes set announced_at = now()")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        reconciler.pass().await.unwrap().reannounced_changes,
        0,
        "too recent"
    );
    sqlx::query!("update interface_changes set announced_at = now() - interval '2 minutes'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(reconciler.pass().await.unwrap().reannounced_changes, 1);
    assert_eq!(
        reconciler.pass().await.unwrap().reannounced_changes,
        0,
        "announced again just now"
    );
    let staged: i64 = sqlx::query_scalar!(
        r#"select count(*) as "count!" from outbox where subject = $1"#,
        format!("interface.{id}.published"),
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(staged, 1);
    // Once notified, it is never announced again.
    notifier(&pool).notify(id).await.unwrap();
    sqlx::query!("update interface_changes set announced_at = now() - interval '2 minutes'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(reconciler.pass().await.unwrap().reannounced_changes, 0);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_change_that_can_never_be_notified_is_given_up_with_a_reason(pool: PgPool) {
    use switchyard_bus::Payload;
    use switchyard_bus::payloads::InterfaceChanged;
    use switchyard_workers::consumer::{Outcome, settled};
    let id = change(&pool, ChangeStatus::Published).await;
    // Postgres refuses every inbox message: an error retrying would not cure.
    sqlx::query!(
        "create function refuse_inbox() returns trigger language plpgsql as $$
         begin raise exception 'no inbox here' using errcode = '22023'; end $$",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query!(
        "create trigger refuse_inbox before insert on inbox_messages
         for each row execute function refuse_inbox()",
    )
    .execute(&pool)
    .await
    .unwrap();
    let event = InterfaceChanged {
        interface_change_id: id,
        repo_slug: "billing".to_owned(),
        title: "Drop field".to_owned(),
        interface_type: InterfaceType::Schema,
        change_type: ChangeType::Removal,
        status: ChangeStatus::Published,
        affected_repo_slugs: vec!["web".to_owned()],
    }
    .event(switchyard_bus::Source::Api);
    let notifier = notifier(&pool);
    // Handled at once: no retry, no message, and the origin's milestone says why.
    assert_eq!(settled(&notifier, &event, 1).await, Outcome::Ack);
    assert_eq!(written(&pool, id).await, (0, 1, 1, 0));
    let detail: serde_json::Value = sqlx::query_scalar!(
        "select detail from progress_events where interface_change_id = $1",
        id,
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(detail["notifications_sent"], 0);
    let reason = detail["notifications_failed"].as_str().unwrap();
    assert!(reason.contains("no message was sent"), "{reason}");
    assert!(
        !reason.contains("no inbox here"),
        "internals leaked: {reason}"
    );
    // Handled means handled: a redelivery, or the reconciler's sweep, does nothing more.
    assert_eq!(settled(&notifier, &event, 2).await, Outcome::Ack);
    assert_eq!(notifier.run_until_idle().await.unwrap(), 0);
    assert_eq!(written(&pool, id).await, (0, 1, 1, 0));
}
