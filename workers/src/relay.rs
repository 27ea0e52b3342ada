//! The relay: moves committed outbox rows onto JetStream.
//!
//! ## Two paths
//! - **Fast**: committers ring the [`Doorbell`] with the events they just committed;
//!   the relay sends them at once, in order, and a background task awaits JetStream's
//!   acks in bulk and marks each commit's row published (one row per transaction). Marking is off the critical path, so an event
//!   reaches subscribers about one NATS round trip after its commit.
//! - **Sweep**: every `sweep_interval`, rows still unpublished after `sweep_min_age`
//!   (a crash between commit and publish, NATS down, a full doorbell) are claimed with
//!   `for update skip locked`, published in outbox order and marked.
//!
//! Every publish carries `Nats-Msg-Id` = event id, so when both paths (or two
//! processes) publish the same row, JetStream keeps one copy.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use switchyard_bus::{Bus, Commit, DoorbellReceiver, outbox};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::WorkerError;

/// Relay settings (config section `relay`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Most events published per sweep round (a commit holding more goes alone); also
    /// the most commits the fast path takes from the doorbell at once.
    pub batch_size: usize,
    /// How often to look for rows the fast path missed.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// A row younger than this is left to the fast path.
    #[serde(with = "humantime_serde")]
    pub sweep_min_age: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            sweep_interval: Duration::from_secs(1),
            sweep_min_age: Duration::from_secs(2),
        }
    }
}

/// Publishes outbox rows; safe to run in every process.
#[derive(Clone, Debug)]
pub struct Relay {
    /// Where the outbox lives.
    pub pool: PgPool,
    /// Where events go.
    pub bus: Bus,
    pub config: RelayConfig,
}

/// Fast-path batches sent but not yet confirmed; bounds memory when NATS is slow.
const UNCONFIRMED_BATCHES: usize = 16;

/// Acks the confirming task awaits ahead of the sender.
const ACKS_AHEAD: usize = 1024;

/// What the sender hands the confirming task, in order.
enum Sent {
    /// One event's pending ack.
    Ack(jetstream::context::PublishAckFuture),
    /// Every event of this commit was sent.
    End(Uuid),
}

impl Relay {
    /// Serves the doorbell and sweeps until `shutdown`, then publishes what the
    /// doorbell still holds and waits for outstanding confirmations.
    ///
    /// After a fast-path failure the relay is *degraded*: it drops doorbell batches
    /// (their rows are in the outbox) and sweeps without `sweep_min_age` until the
    /// outbox is clear, so events still reach the bus in outbox order.
    pub async fn run(self, mut doorbell: DoorbellReceiver, shutdown: CancellationToken) {
        let mut sweep = tokio::time::interval(self.config.sweep_interval);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let slots = Arc::new(Semaphore::new(UNCONFIRMED_BATCHES));
        let mut confirming = JoinSet::new();
        let (mut rung, mut doorbell_open, mut degraded) = (Vec::new(), true, false);
        // Unbiased on purpose: a busy doorbell must not starve the sweep.
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                received = doorbell.recv_many(&mut rung, self.config.batch_size), if doorbell_open => {
                    // 0: every committer is gone; the sweep carries on alone.
                    doorbell_open = received > 0;
                    let commits: Vec<Commit> = std::mem::take(&mut rung);
                    if !degraded && !commits.is_empty() {
                        degraded = !self.send_fast(commits, &slots, &mut confirming).await;
                    }
                }
                _ = sweep.tick() => {
                    let min_age = if degraded { Duration::ZERO } else { self.config.sweep_min_age };
                    match self.sweep_older_than(min_age).await {
                        Ok(_) => degraded = false,
                        Err(error) => tracing::warn!(%error, "outbox sweep failed; will retry"),
                    }
                }
            }
            while confirming.try_join_next().is_some() {}
        }
        doorbell.close();
        while !degraded && doorbell.recv_many(&mut rung, self.config.batch_size).await > 0 {
            let commits: Vec<Commit> = std::mem::take(&mut rung);
            degraded = !self.send_fast(commits, &slots, &mut confirming).await;
        }
        confirming.join_all().await;
    }

    /// Sends every event of `commits` in order without waiting for JetStream; a
    /// background task awaits the acks as they come and marks the commits whose events
    /// were all acknowledged. Returns false if a send failed: the unsent rest stays in
    /// the outbox for the sweep.
    async fn send_fast(
        &self,
        commits: Vec<Commit>,
        slots: &Arc<Semaphore>,
        confirming: &mut JoinSet<()>,
    ) -> bool {
        let permit = slots.clone().acquire_owned().await.expect("never closed");
        let (sent, acks) = mpsc::channel(ACKS_AHEAD);
        let pool = self.pool.clone();
        confirming.spawn(async move {
            let published = confirm(acks).await;
            if let Err(error) = outbox::mark_published(&pool, &published).await {
                tracing::warn!(%error, "could not mark published rows; the sweep re-publishes them");
            }
            drop(permit);
        });
        self.send_all(&commits, &sent).await
    }

    /// Sends the events of `commits` in order, handing each ack (and each commit's
    /// end) to `sent`, and stops at the first failure (to keep order, the sweep
    /// publishes the rest). Returns whether everything was sent.
    async fn send_all(&self, commits: &[Commit], sent: &mpsc::Sender<Sent>) -> bool {
        for commit in commits {
            for event in &commit.events {
                match self.bus.send(event).await {
                    Ok(ack) => {
                        let _ = sent.send(Sent::Ack(ack)).await;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "publish failed; sweeping until caught up");
                        return false;
                    }
                }
            }
            let _ = sent.send(Sent::End(commit.id)).await;
        }
        true
    }

    /// Publishes unpublished rows older than `min_age`, in outbox order. An error (or a
    /// publish JetStream did not acknowledge) means rows remain.
    async fn sweep_older_than(&self, min_age: Duration) -> Result<usize, WorkerError> {
        let mut total = 0;
        loop {
            let (claimed, published, events) = self.sweep_batch(min_age).await?;
            total += published;
            if published < claimed {
                return Err(WorkerError::Unpublished(claimed - published));
            }
            // Less than a full round: caught up.
            if events < self.config.batch_size {
                return Ok(total);
            }
        }
    }

    /// One sweep batch: the commits claimed, how many were published whole, and the
    /// events they held.
    async fn sweep_batch(&self, min_age: Duration) -> Result<(usize, usize, usize), WorkerError> {
        let mut tx = self.pool.begin().await?;
        let commits = outbox::claim_unpublished(&mut tx, min_age, self.config.batch_size).await?;
        if commits.is_empty() {
            return Ok((0, 0, 0));
        }
        let events = commits.iter().map(|c| c.events.len()).sum();
        let (sent, acks) = mpsc::channel(ACKS_AHEAD);
        let confirmed = tokio::spawn(confirm(acks));
        self.send_all(&commits, &sent).await;
        drop(sent);
        let published = confirmed.await.unwrap_or_default();
        outbox::mark_published(&mut *tx, &published).await?;
        tx.commit().await?;
        tracing::debug!(count = published.len(), "sweep published stragglers");
        Ok((commits.len(), published.len(), events))
    }
}

/// Awaits each ack as it comes, so the sender never waits on acks nobody awaits
/// (JetStream's client allows 5,000 unacknowledged publishes); returns the commits
/// whose every event JetStream stored (or already had).
async fn confirm(mut acks: mpsc::Receiver<Sent>) -> Vec<Uuid> {
    let (mut published, mut whole) = (Vec::new(), true);
    while let Some(sent) = acks.recv().await {
        match sent {
            Sent::Ack(ack) => {
                if let Err(error) = ack.await {
                    if whole {
                        tracing::warn!(%error, "publish not acknowledged");
                    }
                    whole = false;
                }
            }
            Sent::End(id) if whole => published.push(id),
            Sent::End(_) => whole = true,
        }
    }
    published
}
