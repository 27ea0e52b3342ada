//! The transactional outbox: events are written in the same Postgres transaction as
//! the state change they announce, then published by the relay.
//!
//! ## Flow
//! 1. A committer calls [`stage`] inside its transaction.
//! 2. After `COMMIT` it calls [`Doorbell::ring`] with the same events: the relay in
//!    this process publishes them at once (the fast path).
//! 3. Anything the fast path missed (a crash between commit and publish, NATS down,
//!    a full doorbell) is found by the relay's sweep of unpublished rows.

use sqlx::PgConnection;
use tokio::sync::mpsc;

use crate::Event;

/// Writes `events` to the outbox as part of the caller's transaction.
pub async fn stage(conn: &mut PgConnection, events: &[Event]) -> Result<(), sqlx::Error> {
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
    sqlx::query(
        "insert into outbox (id, subject, event)
         select id, subject, event
         from unnest($1::uuid[], $2::text[], $3::jsonb[]) with ordinality
              as staged(id, subject, event, ord)
         order by ord",
    )
    .bind(ids)
    .bind(subjects)
    .bind(bodies)
    .execute(conn)
    .await?;
    Ok(())
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
    pub fn ring(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        if self.sender.try_send(events).is_err() {
            tracing::debug!("doorbell full or relay stopped; the sweep will publish");
        }
    }
}
