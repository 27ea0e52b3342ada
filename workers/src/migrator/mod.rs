//! The migrator role: migrates a graph's nodes to a new plugin schema version.
//!
//! ## How a run is worked
//! A `graph.{slug}.migration.requested` message names a run. The migrator:
//! 1. claims it with a lease ([`run::claim`]): a pending run, or a running one whose
//!    holder's lease expired (it crashed). Two migrators never hold the same run. The
//!    first claim marks the graph read-only (`migrating`) and counts its nodes;
//! 2. migrates nodes in batches, one transaction each, fenced on the claim and
//!    renewing the lease, with a `progress` event per batch. A node is picked only
//!    while its `schema_version` is below the target, and moved to the target in the
//!    same transaction, so no step ever runs twice on a node, whoever resumes;
//! 3. ends it: `succeeded` (the graph takes the target version and is `ready`), or
//!    `failed` with an error naming the version, the step and the node (the graph is
//!    `migration_failed`: writable, so the data can be repaired, until a later run
//!    succeeds or this one is cancelled).
//!
//! On shutdown it stops between batches and gives the lease up, so another migrator
//! resumes at once. An operator's cancel is honoured at the next batch boundary: the
//! run ends `cancelled` and the graph is `ready` again at its old version (nodes
//! already migrated keep theirs). An error that is not an outage ends the run
//! `failed` with a reason instead of being retried forever.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use switchyard_bus::payloads::MigrationChanged;
use switchyard_bus::{Doorbell, Event};
use switchyard_domain::json::Limits;
use switchyard_domain::status::MigrationRunStatus;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::WorkerError;
use crate::consumer::{EventHandler, Outcome};

pub mod run;

use run::{Batch, Ending, Unclaimed};

/// Why a run ended that could not go on (the cause is in the worker's log, not in
/// what clients read).
const CANNOT_GO_ON: &str = "the migration could not go on: an error retrying would not cure (the worker log has the cause)";

/// Migrator settings (config section `migrator`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MigratorConfig {
    /// Runs worked at once by one process.
    pub concurrency: usize,
    /// Nodes migrated per transaction (fewer once they hold [`crate::BATCH_BYTES`]).
    pub batch_size: usize,
    /// How long a claim lasts without a batch renewing it; after that another
    /// migrator may take the run over.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Nak delay while another migrator holds the run.
    #[serde(with = "humantime_serde")]
    pub busy_retry_delay: Duration,
    /// Upper bound of the retry delay after errors (exponential from 100 ms).
    #[serde(with = "humantime_serde")]
    pub max_retry_delay: Duration,
    /// Unacked messages the shared consumer hands out across the fleet.
    pub max_ack_pending: i64,
}

impl Default for MigratorConfig {
    fn default() -> Self {
        Self {
            concurrency: 2,
            batch_size: 1000,
            lease: Duration::from_secs(30),
            busy_retry_delay: Duration::from_secs(1),
            max_retry_delay: Duration::from_secs(30),
            max_ack_pending: 1000,
        }
    }
}

/// What working a run did.
#[derive(Debug, PartialEq, Eq)]
pub enum Worked {
    /// It ended: `succeeded`, `failed` or `cancelled`.
    Ended(MigrationRunStatus),
    /// Stopped early (the batch budget or shutdown); the lease was given up.
    Paused,
    /// Another migrator holds it.
    Busy,
    /// Already over, or unknown.
    Over,
}

/// A migrator: cheap to clone, safe to run many of.
#[derive(Clone, Debug)]
pub struct Migrator {
    pub pool: PgPool,
    /// Rung with each committed batch's events.
    pub doorbell: Doorbell,
    pub config: MigratorConfig,
    /// Who holds a claim (recorded as `claimed_by`).
    pub name: String,
    /// Stops runs between batches.
    pub shutdown: CancellationToken,
    /// What a node's data must stay within once migrated (`documents.max_bytes`,
    /// `documents.max_depth`).
    pub limits: Limits,
}

impl Migrator {
    /// Works run `id` for at most `budget` batches (or until shutdown).
    pub async fn work(&self, id: Uuid, budget: usize) -> Result<Worked, WorkerError> {
        let (claimed, _announced) = run::claim(
            &self.pool,
            &self.doorbell,
            id,
            &self.name,
            self.config.lease,
        )
        .await?;
        let mut claim = match claimed {
            Ok(claim) => claim,
            Err(Unclaimed::Busy) => return Ok(Worked::Busy),
            Err(Unclaimed::Over) => return Ok(Worked::Over),
        };
        match self.work_claimed(&mut claim, budget).await {
            Ok(Some(ending)) => self.end(&claim, ending).await,
            Ok(None) => {
                run::release(&self.pool, &claim).await?;
                Ok(Worked::Paused)
            }
            Err(error) if error.is_transient() => Err(error),
            // It would fail the same way on every attempt: end the run, with a reason.
            // Corrupt stored data is ours to name; anything else stays in the log.
            Err(error) => {
                tracing::error!(%error, run_id = %claim.run_id, "migration run cannot go on");
                let reason = match error {
                    WorkerError::Corrupt(what) => what,
                    _ => CANNOT_GO_ON.to_owned(),
                };
                self.end(&claim, Ending::Failed(reason)).await
            }
        }
    }

    /// Batches until the run ends (`Some`), or the budget or shutdown stops it (`None`).
    async fn work_claimed(
        &self,
        claim: &mut run::Claim,
        budget: usize,
    ) -> Result<Option<Ending>, WorkerError> {
        if claim.cancel_requested {
            return Ok(Some(Ending::Cancelled));
        }
        let versions = run::load_steps(&self.pool, claim).await?;
        let limits = run::BatchLimits {
            size: self.config.batch_size,
            lease: self.config.lease,
            data: self.limits,
        };
        for _ in 0..budget {
            if self.shutdown.is_cancelled() {
                return Ok(None);
            }
            let (batch, _announced) =
                run::batch(&self.pool, &self.doorbell, claim, &versions, limits).await?;
            match batch {
                Batch::Migrated(0) => return Ok(Some(Ending::Succeeded)),
                Batch::Migrated(_) if claim.cancel_requested => return Ok(Some(Ending::Cancelled)),
                Batch::Migrated(_) => {}
                Batch::Failed(error) => return Ok(Some(Ending::Failed(error))),
            }
        }
        Ok(None)
    }

    async fn end(&self, claim: &run::Claim, ending: Ending) -> Result<Worked, WorkerError> {
        if let Ending::Failed(error) = &ending {
            tracing::warn!(run_id = %claim.run_id, graph = %claim.graph_slug, %error, "migration failed");
        }
        run::finish(&self.pool, &self.doorbell, claim, &ending).await?;
        Ok(Worked::Ended(ending.statuses().0))
    }

    /// Works every run that is pending or whose lease expired, without the bus,
    /// waiting out live leases. Tests and one-off maintenance use it.
    pub async fn run_until_idle(&self) -> Result<usize, WorkerError> {
        let mut ended = 0;
        loop {
            let active = sqlx::query_scalar!(
                "select id from graph_migration_runs
                 where status in ('pending', 'running') order by created_at, id",
            )
            .fetch_all(&self.pool)
            .await?;
            if active.is_empty() || self.shutdown.is_cancelled() {
                return Ok(ended);
            }
            let mut busy = false;
            for id in active {
                match self.work(id, usize::MAX).await? {
                    Worked::Ended(_) => ended += 1,
                    Worked::Busy => busy = true,
                    Worked::Paused | Worked::Over => {}
                }
            }
            if busy {
                tokio::time::sleep(self.config.busy_retry_delay).await;
            }
        }
    }
}

impl EventHandler for Migrator {
    fn max_retry_delay(&self) -> Duration {
        self.config.max_retry_delay
    }

    /// Works the event's run until it ends, is busy elsewhere, or shutdown pauses it.
    async fn handle_event(&self, event: &Event, _delivered: i64) -> Result<Outcome, WorkerError> {
        let Ok(requested) = serde_json::from_value::<MigrationChanged>(event.data.clone()) else {
            return Ok(Outcome::Reject(format!("event {} has no run_id", event.id)));
        };
        Ok(match self.work(requested.run_id, usize::MAX).await? {
            Worked::Ended(_) | Worked::Over => Outcome::Ack,
            Worked::Busy => Outcome::Retry(self.config.busy_retry_delay),
            // Stopped by shutdown: the lease is free, so the redelivery resumes at once.
            Worked::Paused => Outcome::Retry(Duration::ZERO),
        })
    }
}
