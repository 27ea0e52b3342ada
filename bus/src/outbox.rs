//! The transactional outbox: events are written in the same Postgres transaction as
//! the state change they announce, then published by the relay.
//!
//! ## Flow
//! 1. A committer opens an [`OutboxTx`] and calls [`OutboxTx::stage`] inside it.
//! 2. [`OutboxTx::commit`] commits, then rings the [`Doorbell`] with the events it
//!    staged: the relay in this process publishes them at once (the fast path). One
//!    call, so nobody commits and forgets to ring, or rings before committing.
//! 3. Anything the fast path missed (a crash between commit and publish, NATS down,
//!    a full doorbell) is found by the relay's sweep of unpublished rows
//!    ([`claim_unpublished`], then [`mark_published`]).
//! 4. The reconciler deletes published rows past their retention ([`trim_published`]).
//!
//! Every statement on the `outbox` table is in this module.

use std::time::Duration;

use std::ops::{Deref, DerefMut};

use sqlx::{PgConnection, PgExecutor, PgPool, Postgres, Transaction};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::Event;

/// A transaction that stages events in the outbox and hands them to the relay when,
/// and only when, it commits. It derefs to its connection, so queries run on it as on
/// any transaction; dropped without [`OutboxTx::commit`], it rolls back and nothing
/// is announced.
pub struct OutboxTx<'c> {
    tx: Transaction<'c, Postgres>,
    /// What [`OutboxTx::stage`] wrote, rung after commit.
    staged: Vec<Event>,
}

impl OutboxTx<'static> {
    /// Begins a transaction on `pool`.
    pub async fn begin(pool: &PgPool) -> Result<Self, sqlx::Error> {
        Ok(Self {
            tx: pool.begin().await?,
            staged: Vec::new(),
        })
    }
}

impl OutboxTx<'_> {
    /// Writes `events` to the outbox in this transaction, in order.
    pub async fn stage(&mut self, events: &[Event]) -> Result<(), sqlx::Error> {
        stage(&mut self.tx, events).await?;
        self.staged.extend_from_slice(events);
        Ok(())
    }

    /// Rolls back: nothing staged is written or announced.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }

    /// Commits, then hands every staged event to the relay through `doorbell`.
    pub async fn commit(self, doorbell: &Doorbell) -> Result<(), sqlx::Error> {
        self.tx.commit().await?;
        doorbell.ring(self.staged);
        Ok(())
    }
}

impl Deref for OutboxTx<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl DerefMut for OutboxTx<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

/// Writes `events` to the outbox as part of the caller's transaction. Only through
/// [`OutboxTx::stage`], which also rings them after the commit.
async fn stage(conn: &mut PgConnection, events: &[Event]) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(events.len());
    let mut subjects = Vec::with_capacity(events.len());
    let mut bodies = Vec::with_capacity(events.len());
    for event in events {
        ids.push(event.id);
        subjects.push(event.subject.clone());
        bodies.push(serde_json::to_value(event).expect("an Event always serializes"));
    }
    // `with ordinality` keeps `position` in the order the caller staged the events.
    sqlx::query!(
        "insert into outbox (id, subject, event)
         select id, subject, event
         from unnest($1::uuid[], $2::text[], $3::jsonb[]) with ordinality
              as staged(id, subject, event, ord)
         order by ord",
        &ids,
        &subjects,
        &bodies,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Locks and returns up to `limit` unpublished events older than `min_age`, in outbox
/// order, for the caller's transaction; rows another sweep holds are skipped.
pub async fn claim_unpublished(
    conn: &mut PgConnection,
    min_age: Duration,
    limit: usize,
) -> Result<Vec<Event>, sqlx::Error> {
    let rows = sqlx::query_scalar!(
        r#"select event as "event: sqlx::types::Json<Event>" from outbox
         where published_at is null and created_at < now() - make_interval(secs => $1)
         order by position
         limit $2
         for update skip locked"#,
        min_age.as_secs_f64(),
        i64::try_from(limit).unwrap_or(i64::MAX),
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|row| row.0).collect())
}

/// Marks the rows of `ids` published (JetStream acknowledged them).
pub async fn mark_published(conn: impl PgExecutor<'_>, ids: &[Uuid]) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        "update outbox set published_at = now() where id = any($1) and published_at is null",
        ids,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes published rows older than `retention`; returns how many.
pub async fn trim_published(
    conn: impl PgExecutor<'_>,
    retention: Duration,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query!(
        "delete from outbox where published_at < now() - make_interval(secs => $1)",
        retention.as_secs_f64(),
    )
    .execute(conn)
    .await?
    .rows_affected())
}

/// Rung by a committer after `COMMIT` so the relay publishes without waiting for a sweep.
#[derive(Clone, Debug)]
pub struct Doorbell {
    sender: mpsc::Sender<Vec<Event>>,
}

/// The relay's end of the doorbell.
pub type DoorbellReceiver = mpsc::Receiver<Vec<Event>>;

impl Doorbell {
    /// A doorbell holding at most `capacity` unpublished batches in memory.
    pub fn channel(capacity: usize) -> (Self, DoorbellReceiver) {
        let (sender, receiver) = mpsc::channel(capacity);
        (Self { sender }, receiver)
    }

    /// Hands committed events to the relay. Never blocks: when the relay is behind or
    /// gone, the events stay in the outbox and the sweep publishes them.
    pub(crate) fn ring(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        if self.sender.try_send(events).is_err() {
            tracing::debug!("doorbell full or relay stopped; the sweep will publish");
        }
    }
}
