//! The reconciler: a periodic sweep, safe to run in every process, that keeps the bus
//! and Postgres in agreement.
//!
//! ## Each pass
//! - **Re-announce**: the pending head (lowest seq) of each topology whose announcement
//!   is older than `reannounce_after` gets a fresh `mutation.enqueued` event (new id, so
//!   JetStream's duplicate window does not drop it). One doorbell per topology suffices:
//!   the mutator drains the whole pending head. This covers messages that exhausted
//!   their deliveries, were purged, or went to a consumer that was deleted.
//! - **Re-announce notifications**: a published interface change with no milestone (the
//!   notifier has not handled it) announced longer ago than `reannounce_after` gets a
//!   fresh `interface.published`.
//! - **Re-announce migrations**: a migration run still pending, or running with an
//!   expired lease (its migrator died), announced longer ago than `reannounce_after`
//!   gets a fresh `migration.requested`.
//! - **Trim**: published outbox rows older than `outbox_retention` are deleted.
//!
//! The mutator's claim needs no sweep: it is a transaction's row lock, which Postgres
//! releases when the holder commits, rolls back or its connection dies. A migrator's
//! claim is a lease another migrator takes over once it expires.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use switchyard_bus::payloads::{
    InterfaceChanged, MigrationChanged, MigrationPhase, MutationEnqueued,
};
use switchyard_bus::{Doorbell, Event, TraceContext, outbox};
use switchyard_domain::status::{ChangeStatus, ChangeType, InterfaceType};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::WorkerError;
use switchyard_bus::OutboxTx;
use switchyard_bus::{Payload, Source};

/// Reconciler settings (config section `reconciler`).
#[derive(Clone, Debug, Deserialize, Serialize)]
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
    /// Published interface changes announced again to the notifier.
    pub reannounced_changes: usize,
    /// Migration runs announced again to the migrators.
    pub reannounced_runs: usize,
    /// Published outbox rows deleted as older than the retention.
    pub trimmed: u64,
}

struct StuckHead {
    id: Uuid,
    topology_id: Uuid,
    seq: i64,
    if_version: Option<i64>,
    ops_count: i32,
    /// The enqueuing request's trace context, stored with the mutation.
    traceparent: Option<String>,
    tracestate: Option<String>,
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
        let reannounced_changes = self.reannounce_changes().await?;
        let reannounced_runs = self.reannounce_runs().await?;
        let trimmed = outbox::trim_published(&self.pool, self.config.outbox_retention).await?;
        Ok(Pass {
            reannounced,
            reannounced_changes,
            reannounced_runs,
            trimmed,
        })
    }

    async fn reannounce(&self) -> Result<usize, WorkerError> {
        let mut tx = OutboxTx::begin(&self.pool).await?;
        let stuck = sqlx::query_as!(
            StuckHead,
            r#"select m.id, m.topology_id, m.seq, m.if_version,
                    jsonb_array_length(m.ops) as "ops_count!", m.traceparent, m.tracestate
             from mutations m
             where m.status = 'pending'
               and m.announced_at < now() - make_interval(secs => $1)
               and not exists (select 1 from mutations p
                               where p.topology_id = m.topology_id
                                 and p.status = 'pending' and p.seq < m.seq)
             order by m.announced_at
             limit $2
             for update of m skip locked"#,
            self.config.reannounce_after.as_secs_f64(),
            self.config.batch_size,
        )
        .fetch_all(&mut *tx)
        .await?;
        if stuck.is_empty() {
            return Ok(0);
        }
        let ids: Vec<Uuid> = stuck.iter().map(|m| m.id).collect();
        sqlx::query!(
            "update mutations set announced_at = now() where id = any($1)",
            &ids,
        )
        .execute(&mut *tx)
        .await?;
        let events: Vec<Event> = stuck.iter().map(reannouncement).collect();
        tx.stage(&events);
        tx.commit(&self.doorbell).await?;
        tracing::info!(count = events.len(), "re-announced stuck mutations");
        Ok(ids.len())
    }
}

impl Reconciler {
    async fn reannounce_changes(&self) -> Result<usize, WorkerError> {
        let mut tx = OutboxTx::begin(&self.pool).await?;
        let stuck: Vec<InterfaceChanged> = sqlx::query_as!(
            StuckChange,
            r#"update interface_changes c set announced_at = now()
             where c.id in (
               select id from interface_changes
               where status <> 'draft' and announced_at < now() - make_interval(secs => $1)
                 and not exists (select 1 from progress_events p
                                 where p.interface_change_id = interface_changes.id)
               order by announced_at limit $2
               for update skip locked)
             returning c.id, c.repo_slug, c.title,
                       c.interface_type as "interface_type: InterfaceType",
                       c.change_type as "change_type: ChangeType",
                       c.affected_repo_slugs"#,
            self.config.reannounce_after.as_secs_f64(),
            self.config.batch_size,
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|c| InterfaceChanged {
            interface_change_id: c.id,
            repo_slug: c.repo_slug,
            title: c.title,
            interface_type: c.interface_type,
            change_type: c.change_type,
            status: ChangeStatus::Published,
            affected_repo_slugs: c.affected_repo_slugs,
        })
        .collect();
        self.stage(tx, stuck.iter().map(|c| c.event(SOURCE)).collect())
            .await
    }

    async fn reannounce_runs(&self) -> Result<usize, WorkerError> {
        let mut tx = OutboxTx::begin(&self.pool).await?;
        let stuck = sqlx::query_as!(
            StuckRun,
            "update graph_migration_runs r set announced_at = now()
             from graphs g
             where g.id = r.graph_id and r.id in (
               select id from graph_migration_runs
               where announced_at < now() - make_interval(secs => $1)
                 and (status = 'pending' or (status = 'running' and claim_expires_at < now()))
               order by announced_at limit $2
               for update skip locked)
             returning r.id, g.slug, r.from_version, r.to_version, r.processed, r.total",
            self.config.reannounce_after.as_secs_f64(),
            self.config.batch_size,
        )
        .fetch_all(&mut *tx)
        .await?;
        let events = stuck
            .into_iter()
            .map(|run| {
                MigrationChanged {
                    run_id: run.id,
                    graph_slug: run.slug,
                    phase: MigrationPhase::Requested,
                    from_version: run.from_version,
                    to_version: run.to_version,
                    processed: run.processed,
                    total: run.total,
                    error: None,
                }
                .event(SOURCE)
            })
            .collect();
        self.stage(tx, events).await
    }

    /// Stages `events` in `tx`, commits, and rings the doorbell.
    async fn stage(&self, mut tx: OutboxTx<'_>, events: Vec<Event>) -> Result<usize, WorkerError> {
        if events.is_empty() {
            return Ok(0);
        }
        tx.stage(&events);
        tx.commit(&self.doorbell).await?;
        tracing::info!(count = events.len(), "re-announced stuck work");
        let count = events.len();
        Ok(count)
    }
}

const SOURCE: Source = Source::Reconciler;

struct StuckChange {
    id: Uuid,
    repo_slug: String,
    title: String,
    interface_type: InterfaceType,
    change_type: ChangeType,
    affected_repo_slugs: Vec<String>,
}

struct StuckRun {
    id: Uuid,
    slug: String,
    from_version: i32,
    to_version: i32,
    processed: i64,
    total: i64,
}

fn reannouncement(head: &StuckHead) -> Event {
    let event = MutationEnqueued {
        mutation_id: head.id,
        topology_id: head.topology_id,
        seq: head.seq,
        if_version: head.if_version,
        ops_count: head.ops_count as usize,
        reannounced: true,
    }
    .event(Source::Reconciler);
    // In the trace of the request that enqueued it, like the first announcement.
    let trace = head
        .traceparent
        .as_deref()
        .and_then(|t| TraceContext::parse(t, head.tracestate.as_deref()));
    event.in_trace(trace.as_ref())
}
