//! The reconciler: a periodic sweep, safe to run in every process, that keeps the bus
//! and Postgres in agreement.
//!
//! ## Each pass
//! - **Re-announce**: the pending head (lowest seq) of each topology whose announcement
//!   is older than `reannounce_after` gets a fresh `mutation.enqueued` event (new id, so
//!   JetStream's duplicate window does not drop it). One doorbell per topology suffices:
//!   the mutator drains the whole pending head. This covers messages that exhausted
//!   their deliveries, were purged, or went to a consumer that was deleted.
//! - **Trim**: published outbox rows older than `outbox_retention` are deleted.
//!
//! Claims need no sweep here: the mutator's claim is a transaction's row lock, which
//! Postgres releases when the holder commits, rolls back or its connection dies.

use std::time::Duration;

use serde::Deserialize;
use sqlx::PgPool;
use switchyard_bus::payloads::MutationEnqueued;
use switchyard_bus::{Doorbell, Event, outbox};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::WorkerError;

/// Reconciler settings (config section `reconciler`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconcilerConfig {
    /// Time between passes.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A pending mutation announced longer ago than this is announced again.
    #[serde(with = "humantime_serde")]
    pub reannounce_after: Duration,
    /// How long published outbox rows are kept for inspection.
    #[serde(with = "humantime_serde")]
    pub outbox_retention: Duration,
    /// Most topologies re-announced per pass.
    pub batch_size: i64,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            reannounce_after: Duration::from_secs(60),
            outbox_retention: Duration::from_secs(24 * 3600),
            batch_size: 500,
        }
    }
}

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Topologies whose pending head got a fresh `mutation.enqueued`.
    pub reannounced: usize,
    /// Published outbox rows deleted as older than the retention.
    pub trimmed: u64,
}

#[derive(sqlx::FromRow)]
struct StuckHead {
    id: Uuid,
    topology_id: Uuid,
    seq: i64,
    if_version: Option<i64>,
    ops_count: i32,
}

/// Keeps Postgres and the bus in agreement; safe to run in every process.
#[derive(Clone, Debug)]
pub struct Reconciler {
    pub pool: PgPool,
    /// Rung with re-announcements so they go out without waiting for a sweep.
    pub doorbell: Doorbell,
    pub config: ReconcilerConfig,
}

impl Reconciler {
    /// Runs a pass every `interval` until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => match self.pass().await {
                    Ok(pass) if pass != Pass::default() => tracing::info!(?pass, "reconciled"),
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "reconciler pass failed; will retry"),
                },
            }
        }
    }

    /// One pass: re-announce stuck work, trim the outbox.
    pub async fn pass(&self) -> Result<Pass, WorkerError> {
        let reannounced = self.reannounce().await?;
        let trimmed = sqlx::query(
            "delete from outbox where published_at < now() - make_interval(secs => $1)",
        )
        .bind(self.config.outbox_retention.as_secs_f64())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(Pass {
            reannounced,
            trimmed,
        })
    }

    async fn reannounce(&self) -> Result<usize, WorkerError> {
        let mut tx = self.pool.begin().await?;
        let stuck: Vec<StuckHead> = sqlx::query_as(
            "select m.id, m.topology_id, m.seq, m.if_version, jsonb_array_length(m.ops) as ops_count
             from mutations m
             where m.status = 'pending'
               and m.announced_at < now() - make_interval(secs => $1)
               and not exists (select 1 from mutations p
                               where p.topology_id = m.topology_id
                                 and p.status = 'pending' and p.seq < m.seq)
             order by m.announced_at
             limit $2
             for update of m skip locked",
        )
        .bind(self.config.reannounce_after.as_secs_f64())
        .bind(self.config.batch_size)
        .fetch_all(&mut *tx)
        .await?;
        if stuck.is_empty() {
            return Ok(0);
        }
        let ids: Vec<Uuid> = stuck.iter().map(|m| m.id).collect();
        sqlx::query("update mutations set announced_at = now() where id = any($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        let events: Vec<Event> = stuck.iter().map(reannouncement).collect();
        outbox::stage(&mut tx, &events).await?;
        tx.commit().await?;
        tracing::info!(count = events.len(), "re-announced stuck mutations");
        self.doorbell.ring(events);
        Ok(ids.len())
    }
}

fn reannouncement(head: &StuckHead) -> Event {
    MutationEnqueued {
        mutation_id: head.id,
        topology_id: head.topology_id,
        seq: head.seq,
        if_version: head.if_version,
        ops_count: head.ops_count as usize,
        reannounced: true,
    }
    .event("switchyard/reconciler")
}
