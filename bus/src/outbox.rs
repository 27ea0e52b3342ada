//! The transactional outbox: events are written in the same Postgres transaction as
//! the state change they announce, then published by the relay.
//!
//! ## One row per commit
//! A transaction's staged events are written as **one** `outbox_commits` row (a JSON
//! array, in staging order) just before it commits. Marking that row published, and
//! later trimming it, are one row write each, however many events the transaction
//! announced: a batch of 100 mutations costs the outbox three row writes, not 300.
//! The `outbox` view shows one row per event for inspection.
//!
//! ## Flow
//! 1. A committer opens an [`OutboxTx`] and calls [`OutboxTx::stage`] inside it. Each
//!    event keeps the trace context it was given, or gets the current span's, and
//!    so carries it in the row (no column of its own: it is part of the event).
//! 2. [`OutboxTx::commit`] writes the commit's row, commits, then rings the
//!    [`Doorbell`] with it: the relay in this process publishes its events at once (the
//!    fast path). One call, so nobody commits and forgets to ring, or rings before
//!    committing.
//! 3. Anything the fast path missed (a crash between commit and publish, NATS down,
//!    a full doorbell) is found by the relay's sweep of unpublished rows
//!    ([`claim_unpublished`], then [`mark_published`]).
//! 4. The reconciler deletes published rows past their retention ([`trim_published`]).
//!
//! `/metrics` reads the [`backlog`] of unpublished rows at each scrape.
//!
//! Every statement on the outbox is in this module.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use sqlx::types::Json;
use sqlx::{PgConnection, PgExecutor, PgPool, Postgres, Transaction};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{Event, TraceContext};

/// The events one transaction committed: one `outbox_commits` row.
#[derive(Clone, Debug)]
pub struct Commit {
    /// The row's id; [`mark_published`] takes it once every event is on the bus.
    pub id: Uuid,
    /// In the order they were staged, which is the order they are published in.
    pub events: Vec<Event>,
}

/// A transaction that stages events in the outbox and hands them to the relay when,
/// and only when, it commits. It derefs to its connection, so queries run on it as on
/// any transaction; dropped without [`OutboxTx::commit`], it rolls back and nothing
/// is announced.
pub struct OutboxTx<'c> {
    tx: Transaction<'c, Postgres>,
    /// What [`OutboxTx::stage`] collected, written and rung at commit.
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
    /// Adds `events` to what this transaction announces, in order. They are written
    /// with the transaction's other rows by [`OutboxTx::commit`]. An event without a
    /// `traceparent` gets the current span's, when there is one ([`crate::trace`]).
    pub fn stage(&mut self, events: &[Event]) {
        let start = self.staged.len();
        self.staged.extend_from_slice(events);
        let mut unstamped = self.staged[start..]
            .iter_mut()
            .filter(|event| event.traceparent.is_none())
            .peekable();
        if unstamped.peek().is_some()
            && let Some(trace) = TraceContext::current()
        {
            unstamped.for_each(|event| trace.stamp(event));
        }
    }

    /// Rolls back: nothing staged is written or announced.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }

    /// Writes the staged events as one outbox row, commits, then hands them to the
    /// relay through `doorbell`.
    pub async fn commit(mut self, doorbell: &Doorbell) -> Result<(), sqlx::Error> {
        if self.staged.is_empty() {
            return self.tx.commit().await;
        }
        let commit = Commit {
            id: Uuid::now_v7(),
            events: self.staged,
        };
        write(&mut self.tx, &commit).await?;
        self.tx.commit().await?;
        doorbell.ring(commit);
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

/// Writes `commit` as part of the caller's transaction. Only through
/// [`OutboxTx::commit`], which also rings it after the commit.
async fn write(conn: &mut PgConnection, commit: &Commit) -> Result<(), sqlx::Error> {
    // Sent as text: Postgres checks it is JSON and stores it as it is.
    let events = serde_json::to_string(&commit.events).expect("events always serialize");
    sqlx::query!(
        "insert into outbox_commits (id, events, event_count) values ($1, $2::text::json, $3)",
        commit.id,
        events,
        i32::try_from(commit.events.len()).unwrap_or(i32::MAX),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Locks and returns unpublished commits older than `min_age`, in outbox order, for the
/// caller's transaction: as many as hold at most `max_events` events together (and
/// always the first, however many it holds); rows another sweep holds are skipped.
pub async fn claim_unpublished(
    conn: &mut PgConnection,
    min_age: Duration,
    max_events: usize,
) -> Result<Vec<Commit>, sqlx::Error> {
    let max_events = i64::try_from(max_events).unwrap_or(i64::MAX);
    // The budget is applied to the candidates first (a window cannot share a query
    // level with `for update`); at most `max_events` commits can be candidates.
    let rows = sqlx::query!(
        r#"select id, events as "events: Json<Vec<Event>>" from outbox_commits
         where id in (
             select id from (
                 select id, sum(event_count) over (order by position) - event_count as before
                 from outbox_commits
                 where published_at is null and created_at < now() - make_interval(secs => $1)
                 order by position
                 limit $2
             ) candidates
             where before < $2
         )
         order by position
         for update skip locked"#,
        min_age.as_secs_f64(),
        max_events,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| Commit {
            id: row.id,
            events: row.events.0,
        })
        .collect())
}

/// Marks the commits of `ids` published (JetStream acknowledged every event of each):
/// one statement, one row write per commit.
pub async fn mark_published(conn: impl PgExecutor<'_>, ids: &[Uuid]) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        "update outbox_commits set published_at = now() where id = any($1) and published_at is null",
        ids,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes published commits older than `retention`; returns how many.
pub async fn trim_published(
    conn: impl PgExecutor<'_>,
    retention: Duration,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query!(
        "delete from outbox_commits where published_at < now() - make_interval(secs => $1)",
        retention.as_secs_f64(),
    )
    .execute(conn)
    .await?
    .rows_affected())
}

/// What the outbox holds unpublished, fleet-wide: what `/metrics` shows.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Backlog {
    /// Unpublished rows (one per committed transaction).
    pub commits: i64,
    /// The events those rows hold.
    pub events: i64,
    /// Seconds since the oldest of them was committed; 0 when there is none.
    pub oldest_age_seconds: f64,
}

/// Counts the unpublished commits, their events and the oldest one's age. One scan
/// of the partial index on unpublished rows, which the relay keeps short.
pub async fn backlog(conn: impl PgExecutor<'_>) -> Result<Backlog, sqlx::Error> {
    let (commits, events, oldest_age_seconds): (i64, i64, f64) = sqlx::query_as(
        "select count(*), coalesce(sum(event_count), 0)::int8,
                coalesce(extract(epoch from now() - min(created_at)), 0)::float8
         from outbox_commits where published_at is null",
    )
    .fetch_one(conn)
    .await?;
    Ok(Backlog {
        commits,
        events,
        oldest_age_seconds: oldest_age_seconds.max(0.0),
    })
}

/// Rung by a committer after `COMMIT` so the relay publishes without waiting for a sweep.
#[derive(Clone, Debug)]
pub struct Doorbell {
    sender: mpsc::Sender<Commit>,
}

/// The relay's end of the doorbell.
pub type DoorbellReceiver = mpsc::Receiver<Commit>;

impl Doorbell {
    /// A doorbell holding at most `capacity` unpublished commits in memory.
    pub fn channel(capacity: usize) -> (Self, DoorbellReceiver) {
        let (sender, receiver) = mpsc::channel(capacity);
        (Self { sender }, receiver)
    }

    /// Hands a committed transaction's events to the relay. Never blocks: when the
    /// relay is behind or gone, the row stays unpublished and the sweep publishes it.
    pub(crate) fn ring(&self, commit: Commit) {
        if self.sender.try_send(commit).is_err() {
            tracing::debug!("doorbell full or relay stopped; the sweep will publish");
        }
    }
}
