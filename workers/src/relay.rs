//! The relay: moves committed outbox rows onto JetStream.
//!
//! ## Two paths
//! - **Fast**: committers ring the [`Doorbell`] with the events they just committed;
//!   the relay publishes them at once, pipelined, then marks the rows published.
//! - **Sweep**: every `sweep_interval`, rows still unpublished after `sweep_min_age`
//!   (a crash between commit and publish, NATS down, a full doorbell) are claimed with
//!   `for update skip locked`, published in outbox order and marked.
//!
//! Every publish carries `Nats-Msg-Id` = event id, so when both paths (or two
//! processes) publish the same row, JetStream keeps one copy.

use std::future::IntoFuture;
use std::time::Duration;

use futures::future::join_all;
use serde::Deserialize;
use sqlx::PgPool;
use switchyard_bus::{Bus, DoorbellReceiver, Event};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::WorkerError;

/// Relay settings (config section `relay`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Most events published per round trip.
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
    pub pool: PgPool,
    pub bus: Bus,
    pub config: RelayConfig,
}

impl Relay {
    /// Serves the doorbell and sweeps until `shutdown`, then publishes what the
    /// doorbell still holds.
    pub async fn run(self, mut doorbell: DoorbellReceiver, shutdown: CancellationToken) {
        let mut sweep = tokio::time::interval(self.config.sweep_interval);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rung = Vec::new();
        // Unbiased on purpose: a busy doorbell must not starve the sweep.
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                received = doorbell.recv_many(&mut rung, self.config.batch_size) => {
                    if received == 0 {
                        // Every committer is gone; keep sweeping until shutdown.
                        shutdown.cancelled().await;
                        break;
                    }
                    let events: Vec<Event> = rung.drain(..).flatten().collect();
                    self.publish_logged(events).await;
                }
                _ = sweep.tick() => {
                    if let Err(error) = self.sweep_once().await {
                        tracing::warn!(%error, "outbox sweep failed; will retry");
                    }
                }
            }
        }
        doorbell.close();
        while doorbell.recv_many(&mut rung, self.config.batch_size).await > 0 {
            let events: Vec<Event> = rung.drain(..).flatten().collect();
            self.publish_logged(events).await;
        }
    }

    async fn publish_logged(&self, events: Vec<Event>) {
        for chunk in events.chunks(self.config.batch_size) {
            if let Err(error) = self.publish_and_mark(chunk).await {
                tracing::warn!(%error, "fast-path publish failed; the sweep will retry");
            }
        }
    }

    /// Publishes `events` pipelined, waits for every ack, marks the acked rows.
    pub async fn publish_and_mark(&self, events: &[Event]) -> Result<usize, WorkerError> {
        let published = self.publish(events).await?;
        sqlx::query(
            "update outbox set published_at = now() where id = any($1) and published_at is null",
        )
        .bind(&published)
        .execute(&self.pool)
        .await?;
        Ok(published.len())
    }

    /// Publishes in order and returns the ids JetStream acknowledged.
    async fn publish(&self, events: &[Event]) -> Result<Vec<Uuid>, WorkerError> {
        let mut acks = Vec::with_capacity(events.len());
        for event in events {
            acks.push(self.bus.send(event).await?);
        }
        let mut published = Vec::with_capacity(events.len());
        let acks = join_all(acks.into_iter().map(IntoFuture::into_future)).await;
        for (event, ack) in events.iter().zip(acks) {
            match ack {
                Ok(_) => published.push(event.id),
                Err(error) => tracing::warn!(%error, id = %event.id, "publish not acknowledged"),
            }
        }
        Ok(published)
    }

    /// Publishes every row older than `sweep_min_age` that is still unpublished.
    /// Returns how many were published.
    pub async fn sweep_once(&self) -> Result<usize, WorkerError> {
        let mut total = 0;
        loop {
            let (claimed, published) = self.sweep_batch().await?;
            total += published;
            if claimed < self.config.batch_size || published < claimed {
                return Ok(total);
            }
        }
    }

    async fn sweep_batch(&self) -> Result<(usize, usize), WorkerError> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<sqlx::types::Json<Event>> = sqlx::query_scalar(
            "select event from outbox
             where published_at is null and created_at < now() - make_interval(secs => $1)
             order by position
             limit $2
             for update skip locked",
        )
        .bind(self.config.sweep_min_age.as_secs_f64())
        .bind(self.config.batch_size as i64)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok((0, 0));
        }
        let events: Vec<Event> = rows.into_iter().map(|row| row.0).collect();
        let published = self.publish(&events).await?;
        sqlx::query("update outbox set published_at = now() where id = any($1)")
            .bind(&published)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::debug!(count = published.len(), "sweep published stragglers");
        Ok((events.len(), published.len()))
    }
}
