//! The notifier role: tells every repo an interface change affects.
//!
//! ## How a message is handled
//! An `interface.{id}.published` message names the change. In one transaction the
//! notifier:
//! 1. records the origin repo's milestone progress event. Its unique key (change,
//!    kind) is the claim: if it already exists the change was handled, by this or
//!    another notifier, and nothing more is written;
//! 2. writes one inbox message per affected, registered, active repo (unique per
//!    change and recipient);
//! 3. writes a `audit_log` row per message, and stages `repo.{slug}.inbox` for
//!    each message and `repo.{origin}.progress`.
//!
//! However often the event arrives, and however many notifiers race for it, each
//! recipient gets one message. Affected slugs that are not registered, or archived,
//! are listed in the milestone's detail instead of being dropped silently.
//!
//! An outage is retried with backoff. Any other error would fail every attempt, so
//! the change is given up: its milestone records `notifications_failed` and no
//! message ([`Notifier::give_up`]), rather than being retried forever.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use switchyard_bus::payloads::{InboxMessageCreated, ProgressRecorded};
use switchyard_bus::{Doorbell, Event, audit};
use switchyard_domain::status::{AuditEntity, ChangeType, InterfaceType, ProgressKind};
use uuid::Uuid;

use crate::consumer::{EventHandler, Outcome};
use crate::{WorkerError, metrics};
use switchyard_bus::OutboxTx;
use switchyard_bus::{Payload, Source};
use switchyard_domain::metrics::{Outcome as Counted, Resource};

pub mod message;

use message::{PublishedChange, Recipients};

const SOURCE: Source = Source::Notifier;

/// Why a change was given up (the cause is in the worker's log, not in what readers
/// see).
const CANNOT_NOTIFY: &str = "notifying failed with an error retrying would not cure (the worker log has the cause); no message was sent";

/// Notifier settings (config section `notifier`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifierConfig {
    /// Changes handled at once by one process.
    pub concurrency: usize,
    /// Upper bound of the retry delay after errors (exponential from 100 ms).
    #[serde(with = "humantime_serde")]
    pub max_retry_delay: Duration,
    /// Unacked messages the shared consumer hands out across the fleet.
    pub max_ack_pending: i64,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        Self {
            concurrency: 8,
            max_retry_delay: Duration::from_secs(30),
            max_ack_pending: 1000,
        }
    }
}

/// What handling one change did.
#[derive(Debug, PartialEq, Eq)]
pub enum Notified {
    /// This call wrote the messages and the milestone.
    Sent(Recipients),
    /// Already handled earlier (a duplicate or a redelivery): nothing written.
    AlreadyDone,
    /// No published change has this id (a draft cannot be announced as published).
    NotPublished,
    /// Given up with a reason ([`Notifier::give_up`]).
    GaveUp,
}

/// A notifier: cheap to clone, safe to run many of.
#[derive(Clone, Debug)]
pub struct Notifier {
    pub pool: PgPool,
    /// Rung with each committed change's events.
    pub doorbell: Doorbell,
    pub config: NotifierConfig,
}

impl Notifier {
    /// Notifies the repos affected by change `id`, exactly once.
    pub async fn notify(&self, id: Uuid) -> Result<Notified, WorkerError> {
        let mut tx = OutboxTx::begin(&self.pool).await?;
        let Some(change) = published(&mut tx, id).await? else {
            return Ok(Notified::NotPublished);
        };
        let recipients = recipients(&mut tx, &change).await?;
        let milestone = milestone(&change, message::milestone_detail(&change, &recipients));
        let Some(progress) = claim(&mut tx, &change, milestone).await? else {
            return Ok(Notified::AlreadyDone);
        };
        let mut events = vec![progress.event(SOURCE)];
        for recipient in &recipients.notified {
            events.push(deliver(&mut tx, &change, recipient).await?.event(SOURCE));
        }
        tx.stage(&events);
        tx.commit(&self.doorbell).await?;
        metrics::work(Resource::InterfaceChange, Counted::Notified, 1);
        metrics::work(
            Resource::InboxMessage,
            Counted::Delivered,
            recipients.notified.len(),
        );
        Ok(Notified::Sent(recipients))
    }

    /// Gives change `id` up after an error retrying would not cure: its milestone is
    /// recorded with no message sent and `notifications_failed` saying why, so it is
    /// handled (the reconciler stops announcing it) and the origin repo sees it.
    pub async fn give_up(&self, id: Uuid, reason: &str) -> Result<Notified, WorkerError> {
        let mut tx = OutboxTx::begin(&self.pool).await?;
        let Some(change) = published(&mut tx, id).await? else {
            return Ok(Notified::NotPublished);
        };
        let milestone = milestone(&change, message::gave_up_detail(&change, reason));
        let Some(progress) = claim(&mut tx, &change, milestone).await? else {
            return Ok(Notified::AlreadyDone);
        };
        let events = vec![progress.event(SOURCE)];
        tx.stage(&events);
        tx.commit(&self.doorbell).await?;
        metrics::work(Resource::InterfaceChange, Counted::Failed, 1);
        Ok(Notified::GaveUp)
    }

    /// Notifies every published change not yet handled, without the bus. Tests and
    /// one-off maintenance use it to reach a quiescent state deterministically.
    pub async fn run_until_idle(&self) -> Result<usize, WorkerError> {
        let pending = sqlx::query_scalar!(
            "select c.id from interface_changes c
             where c.status <> 'draft' and not exists (
               select 1 from progress_events p
               where p.interface_change_id = c.id and p.kind = 'milestone')
             order by c.published_at",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut sent = 0;
        for id in pending {
            if let Notified::Sent(_) = self.notify(id).await? {
                sent += 1;
            }
        }
        Ok(sent)
    }
}

/// Sorts the affected slugs into those to notify, unregistered and archived.
async fn recipients(
    tx: &mut PgConnection,
    change: &PublishedChange,
) -> Result<Recipients, sqlx::Error> {
    // Shared locks: a recipient cannot be archived while its message is written.
    let known = sqlx::query!(
        r#"select slug, archived_at is not null as "archived!" from repos
         where slug = any($1) for share"#,
        &change.affected_repo_slugs,
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut recipients = Recipients::default();
    for slug in &change.affected_repo_slugs {
        match known.iter().find(|known| known.slug == *slug) {
            Some(known) if !known.archived => recipients.notified.push(slug.clone()),
            Some(_) => recipients.archived.push(slug.clone()),
            None => recipients.unregistered.push(slug.clone()),
        }
    }
    Ok(recipients)
}

/// The published (or resolved) change `id`; `None` for a draft or an unknown id.
async fn published(
    tx: &mut PgConnection,
    id: Uuid,
) -> Result<Option<PublishedChange>, sqlx::Error> {
    sqlx::query_as!(
        PublishedChange,
        r#"select id, repo_slug, title, description,
                interface_type as "interface_type: InterfaceType",
                change_type as "change_type: ChangeType",
                affected_paths, affected_repo_slugs
         from interface_changes where id = $1 and status <> 'draft'"#,
        id,
    )
    .fetch_optional(tx)
    .await
}

/// The origin repo's milestone for `change`, with `detail`.
fn milestone(change: &PublishedChange, detail: serde_json::Value) -> ProgressRecorded {
    ProgressRecorded {
        progress_id: Uuid::now_v7(),
        repo_slug: change.repo_slug.clone(),
        kind: ProgressKind::Milestone,
        summary: message::milestone_summary(change),
        detail,
    }
}

/// Records the origin's milestone, or `None` if the change was already handled.
async fn claim(
    tx: &mut PgConnection,
    change: &PublishedChange,
    progress: ProgressRecorded,
) -> Result<Option<ProgressRecorded>, sqlx::Error> {
    // A concurrent notifier's uncommitted row makes this wait, then do nothing.
    let inserted = sqlx::query!(
        "insert into progress_events (id, repo_slug, kind, summary, detail, interface_change_id)
         values ($1, $2, $3, $4, $5, $6)
         on conflict (interface_change_id, kind) do nothing",
        progress.progress_id,
        progress.repo_slug,
        progress.kind as _,
        progress.summary,
        progress.detail,
        change.id,
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok((inserted == 1).then_some(progress))
}

/// Writes `recipient`'s inbox message about `change`.
async fn deliver(
    tx: &mut PgConnection,
    change: &PublishedChange,
    recipient: &str,
) -> Result<InboxMessageCreated, sqlx::Error> {
    let created = InboxMessageCreated {
        message_id: Uuid::now_v7(),
        repo_slug: recipient.to_owned(),
        from_repo_slug: change.repo_slug.clone(),
        interface_change_id: change.id,
        subject: message::subject(change),
    };
    sqlx::query!(
        "insert into inbox_messages
           (id, repo_slug, from_repo_slug, interface_change_id, subject, body)
         values ($1, $2, $3, $4, $5, $6)",
        created.message_id,
        recipient,
        change.repo_slug,
        change.id,
        created.subject,
        message::body(change, recipient),
    )
    .execute(&mut *tx)
    .await?;
    audit::record(
        tx,
        AuditEntity::InboxMessage,
        &created.message_id.to_string(),
        "delivered",
        SOURCE.as_str(),
        serde_json::json!({
            "repo_slug": recipient,
            "interface_change_id": change.id,
        }),
    )
    .await?;
    Ok(created)
}

impl EventHandler for Notifier {
    fn max_retry_delay(&self) -> Duration {
        self.config.max_retry_delay
    }

    /// Notifies the event's change. A change that can never be notified is given up
    /// here, with its milestone recorded (`notifications_failed`), so it is not
    /// pending for the reconciler; only an error doing that reaches the caller.
    async fn handle_event(&self, event: &Event, _delivered: i64) -> Result<Outcome, WorkerError> {
        // Only the id is needed: the change itself is read from Postgres.
        #[derive(Deserialize)]
        struct Published {
            interface_change_id: Uuid,
        }
        let Ok(published) = serde_json::from_value::<Published>(event.data.clone()) else {
            return Ok(Outcome::Reject(format!(
                "event {} has no interface_change_id",
                event.id
            )));
        };
        let id = published.interface_change_id;
        match self.notify(id).await {
            Ok(Notified::NotPublished) => {
                tracing::warn!(%id, "published event for a change that is not published; ignored");
                Ok(Outcome::Ack)
            }
            Ok(_) => Ok(Outcome::Ack),
            Err(error) if !error.is_transient() => {
                tracing::error!(%error, %id, "a change cannot be notified; giving it up");
                self.give_up(id, CANNOT_NOTIFY).await?;
                Ok(Outcome::Ack)
            }
            Err(error) => Err(error),
        }
    }
}
