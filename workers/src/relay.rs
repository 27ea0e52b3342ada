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
//!
//! ## Riding through an election
//! While a clustered stream elects a leader (a node lost, a cluster restarting),
//! JetStream answers a publish with *no responders* or not at all for several seconds.
//! Both paths retry such a publish, the same event with the same `Nats-Msg-Id`, with
//! exponential backoff for up to `relay.retry_for` (30 s by default) before leaving it
//! to the sweep. The configuration refuses a `bus.duplicate_window` that does not
//! outlast those retries, so a publish that was stored but whose acknowledgement was
//! lost is dropped as a duplicate when it is retried: nothing is lost, nothing doubled.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use backon::{ExponentialBuilder, Retryable};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use switchyard_bus::{Bus, BusError, Commit, DoorbellReceiver, Event, outbox};
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
    /// How long a publish JetStream did not take (no responders, a timeout: a stream
    /// electing its leader) is retried, with exponential backoff from 50 ms to 2 s,
    /// before the row is left to the sweep. `bus.duplicate_window` must be longer than
    /// this plus `bus.publish_timeout`.
    #[serde(with = "humantime_serde")]
    pub retry_for: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            sweep_interval: Duration::from_secs(1),
            sweep_min_age: Duration::from_secs(2),
            retry_for: Duration::from_secs(30),
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
    /// The pending ack of the `event`th event of the `commit`th commit of the batch
    /// (`None`: acknowledged already, after a retry).
    Ack {
        ack: Option<jetstream::context::PublishAckFuture>,
        commit: usize,
        event: usize,
    },
    /// Every event of this commit was sent.
    End(Uuid),
}

/// What a confirming task needs to publish an event again: the batch's commits, the
/// bus, the retry budget, and whether to stop retrying (shutdown).
#[derive(Clone)]
struct Retrier {
    commits: Arc<[Commit]>,
    bus: Bus,
    retry_for: Duration,
    stop: CancellationToken,
}

impl Retrier {
    /// Publishes `event` until JetStream acknowledges it, with exponential backoff for
    /// at most `retry_for` in all, or until `stop`; the last error otherwise.
    async fn publish(&self, event: &Event) -> Result<(), BusError> {
        publish_confirmed(&self.bus, event, self.retry_for, &self.stop).await
    }
}

/// The backoff between attempts at one publish: 50 ms doubling to 2 s, with jitter.
fn publish_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(2))
        .with_jitter()
        .without_max_times()
}

/// Sends `event` and waits for JetStream's acknowledgement, retrying (same event,
/// same `Nats-Msg-Id`) with [`publish_backoff`] while less than `retry_for` has
/// passed since the first attempt (so the last attempt ends by `retry_for` plus twice
/// `bus.publish_timeout`: its send and its acknowledgement); gives up at once when
/// `stop` fires.
async fn publish_confirmed(
    bus: &Bus,
    event: &Event,
    retry_for: Duration,
    stop: &CancellationToken,
) -> Result<(), BusError> {
    let attempt = || async {
        let ack = bus.send(event).await?;
        ack.await.map(drop).map_err(|error| BusError::Publish {
            subject: event.subject.clone(),
            reason: error.to_string(),
        })
    };
    let started = tokio::time::Instant::now();
    let retried = attempt
        .retry(publish_backoff())
        .when(|_| !stop.is_cancelled() && started.elapsed() < retry_for)
        .notify(|error, delay| {
            tracing::debug!(%error, event = %event.id, ?delay, "publish not taken; retrying");
        });
    tokio::select! {
        result = retried => result,
        _ = stop.cancelled() => Err(BusError::Publish {
            subject: event.subject.clone(),
            reason: "stopping".to_owned(),
        }),
    }
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
                        degraded = !self.send_fast(commits, &slots, &mut confirming, &shutdown).await;
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
            degraded = !self
                .send_fast(commits, &slots, &mut confirming, &shutdown)
                .await;
        }
        confirming.join_all().await;
    }

    /// Sends every event of `commits` in order without waiting for JetStream; a
    /// background task awaits the acks as they come (publishing again, with backoff,
    /// an event JetStream did not take) and marks the commits whose events were all
    /// acknowledged. Returns false if a send failed even after retries: the unsent
    /// rest stays in the outbox for the sweep.
    async fn send_fast(
        &self,
        commits: Vec<Commit>,
        slots: &Arc<Semaphore>,
        confirming: &mut JoinSet<()>,
        stop: &CancellationToken,
    ) -> bool {
        let permit = slots.clone().acquire_owned().await.expect("never closed");
        let (sent, acks) = mpsc::channel(ACKS_AHEAD);
        let retrier = self.retrier(commits, self.config.retry_for, stop.clone());
        let pool = self.pool.clone();
        let confirmer = retrier.clone();
        confirming.spawn(async move {
            let published = confirm(acks, &confirmer).await;
            if let Err(error) = outbox::mark_published(&pool, &published).await {
                tracing::warn!(%error, "could not mark published rows; the sweep re-publishes them");
            }
            drop(permit);
        });
        send_all(&retrier, &sent).await
    }

    fn retrier(
        &self,
        commits: Vec<Commit>,
        retry_for: Duration,
        stop: CancellationToken,
    ) -> Retrier {
        Retrier {
            commits: commits.into(),
            bus: self.bus.clone(),
            retry_for,
            stop,
        }
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
        let claimed = commits.len();
        let (sent, acks) = mpsc::channel(ACKS_AHEAD);
        // One attempt per event: the sweep's next round is the retry, and this
        // transaction holds the rows' locks meanwhile.
        let retrier = self.retrier(commits, Duration::ZERO, CancellationToken::new());
        let confirmer = retrier.clone();
        let confirmed = tokio::spawn(async move { confirm(acks, &confirmer).await });
        send_all(&retrier, &sent).await;
        drop(sent);
        let published = confirmed.await.unwrap_or_default();
        outbox::mark_published(&mut *tx, &published).await?;
        tx.commit().await?;
        tracing::debug!(count = published.len(), "sweep published stragglers");
        Ok((claimed, published.len(), events))
    }
}

/// Sends the events of `retrier`'s commits in order, handing each ack (and each
/// commit's end) to `sent`; a send that fails is retried with backoff. Stops at the
/// first event that could not be sent even so (to keep order, the sweep publishes the
/// rest). Returns whether everything was sent.
async fn send_all(retrier: &Retrier, sent: &mpsc::Sender<Sent>) -> bool {
    for (c, commit) in retrier.commits.iter().enumerate() {
        for (e, event) in commit.events.iter().enumerate() {
            let ack = match retrier.bus.send(event).await {
                Ok(ack) => Some(ack),
                Err(error) => {
                    tracing::warn!(%error, event = %event.id, "publish failed; retrying");
                    if let Err(error) = retrier.publish(event).await {
                        tracing::warn!(%error, "publish failed; sweeping until caught up");
                        return false;
                    }
                    // Sent and acknowledged already.
                    None
                }
            };
            let _ = sent
                .send(Sent::Ack {
                    ack,
                    commit: c,
                    event: e,
                })
                .await;
        }
        let _ = sent.send(Sent::End(commit.id)).await;
    }
    true
}

/// Awaits each ack as it comes, so the sender never waits on acks nobody awaits
/// (JetStream's client allows 5,000 unacknowledged publishes), publishing again an
/// event JetStream did not take; returns the commits whose every event JetStream
/// stored (or already had).
async fn confirm(mut acks: mpsc::Receiver<Sent>, retrier: &Retrier) -> Vec<Uuid> {
    let (mut published, mut whole) = (Vec::new(), true);
    while let Some(sent) = acks.recv().await {
        match sent {
            Sent::Ack { ack, commit, event } => {
                if !whole {
                    // The commit is left to the sweep already.
                    continue;
                }
                let Some(ack) = ack else { continue };
                if let Err(error) = ack.await {
                    let event = &retrier.commits[commit].events[event];
                    tracing::warn!(%error, event = %event.id, "publish not acknowledged; retrying");
                    if let Err(error) = retrier.publish(event).await {
                        tracing::warn!(%error, event = %event.id, "publish still not acknowledged; the sweep takes the commit");
                        whole = false;
                    }
                }
            }
            Sent::End(id) if whole => published.push(id),
            Sent::End(_) => whole = true,
        }
    }
    published
}
