//! The forge reconciler: a sweep reads the meta repo and every active RFC's repo
//! again, catching whatever webhook was missed, and records what it found in
//! `forge_sweeps` (every statement on that table but the API's request is here). One
//! process of the fleet sweeps at start-up and each `forge.reconcile_interval`; a
//! sweep asked for through the API (`forge.sweep.requested`) runs in the forge process
//! that takes it; a rebuild drops the cache first. Each sweep announces its progress:
//! `forge.sweep.progress` after each repo, then `forge.sweep.finished`.
//!
//! A repo that stays unreachable (after the client's retries) is reported in the
//! sweep's result and on the repo (`forge_repos.last_error`); the sweep goes on with
//! the rest.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;
use serde::Serialize;
use sqlx::PgPool;
use switchyard_bus::payloads::{ForgeSweep, SweepPhase};
use switchyard_bus::{OutboxTx, Payload, audit};
use switchyard_domain::status::{AuditEntity, SweepTrigger};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::refresh::Refreshed;
use super::{Forge, RepoName, SOURCE, cache};
use crate::WorkerError;

/// Key of the advisory lock under which a process decides to sweep ("forge" in ASCII).
const SWEEP_LOCK: i64 = 0x0066_6f72_6765;

/// A repo a sweep could not read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unreachable {
    /// `owner/name`.
    pub repo: String,
    pub error: String,
}

/// What one sweep did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub id: Uuid,
    pub trigger: SweepTrigger,
    /// Repos read (the meta repo included).
    pub repos: usize,
    /// Cache rows changed.
    pub changes: usize,
    /// Requests sent to Gitea, retries included.
    pub gitea_calls: u64,
    /// Repos that could not be read, and why.
    pub unreachable: Vec<Unreachable>,
    /// Wall-clock time of the sweep, in milliseconds.
    pub duration_ms: u64,
}

impl Forge {
    /// Sweeps every `reconcile_interval` (when no other process swept more recently)
    /// and trims old webhook delivery ids, until `shutdown`.
    pub async fn run_sweeps(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.reconcile_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.sweep_if_due().await {
                Ok(Some(report)) => tracing::info!(?report, "forge swept"),
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "forge sweep failed; will retry"),
            }
            if let Err(error) = self.resume_requested().await {
                tracing::warn!(%error, "resuming requested forge sweeps failed; will retry");
            }
            if let Err(error) = trim_deliveries(&self.pool, self.config.delivery_retention).await {
                tracing::warn!(%error, "trimming webhook deliveries failed; will retry");
            }
        }
    }

    /// Sweeps if no sweep was asked for or started within the last
    /// `reconcile_interval` anywhere in the fleet; the decision and the sweep's row are
    /// taken under one advisory lock.
    pub async fn sweep_if_due(&self) -> Result<Option<SweepReport>, WorkerError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query!("select pg_advisory_xact_lock($1)", SWEEP_LOCK)
            .execute(&mut *tx)
            .await?;
        // A little slack, so the process whose tick is a hair early still sweeps.
        let due_after = self.config.reconcile_interval.mul_f64(0.9).as_secs_f64();
        // Nor while one runs (its heartbeat is fresh), however long it takes.
        let recent = sqlx::query_scalar!(
            "select 1 from forge_sweeps
             where requested_at > now() - make_interval(secs => $1)
                or (finished_at is null and heartbeat_at > now() - make_interval(secs => $2))
             limit 1",
            due_after,
            self.config.claim_ttl.as_secs_f64(),
        )
        .fetch_optional(&mut *tx)
        .await?;
        if recent.is_some() {
            return Ok(None);
        }
        let id = Uuid::now_v7();
        self.start(&mut tx, id, SweepTrigger::Schedule, SOURCE.as_str())
            .await?;
        tx.commit().await?;
        self.sweep_as(id, SweepTrigger::Schedule).await.map(Some)
    }

    /// Sweeps now, whatever other processes did (a rebuild drops the cache first);
    /// `requested_by` is recorded with it.
    pub async fn sweep(
        &self,
        trigger: SweepTrigger,
        requested_by: &str,
    ) -> Result<SweepReport, WorkerError> {
        let id = Uuid::now_v7();
        let mut tx = self.pool.begin().await?;
        self.start(&mut tx, id, trigger, requested_by).await?;
        if trigger != SweepTrigger::Schedule {
            // As the API records a request (`POST /forge/reconcile`, `/forge/rebuild`).
            let action = match trigger {
                SweepTrigger::Rebuild => "rebuild_requested",
                _ => "sweep_requested",
            };
            let detail = serde_json::json!({ "sweep_id": id, "trigger": trigger });
            let key = id.to_string();
            let entity = AuditEntity::ForgeCache;
            audit::record(&mut tx, entity, &key, action, requested_by, detail).await?;
        }
        tx.commit().await?;
        self.sweep_as(id, trigger).await
    }

    /// Drops the cache and sweeps: the rebuilt cache is what Gitea holds now.
    pub async fn rebuild(&self, requested_by: &str) -> Result<SweepReport, WorkerError> {
        self.sweep(SweepTrigger::Rebuild, requested_by).await
    }

    /// Takes sweep `id`, asked for through the API, for one run; `None` when it is
    /// finished or another run holds it (its heartbeat is fresher than `claim_ttl`).
    pub async fn take_requested(&self, id: Uuid) -> Result<Option<SweepTrigger>, WorkerError> {
        // A token per run: a redelivery in this very process does not take it twice.
        let run = Uuid::now_v7();
        let trigger = sqlx::query_scalar!(
            r#"update forge_sweeps
             set claimed_by = $2, started_at = coalesce(started_at, now()), heartbeat_at = now()
             where id = $1 and finished_at is null
               and (claimed_by is null or heartbeat_at < now() - make_interval(secs => $3))
             returning trigger as "trigger: SweepTrigger""#,
            id,
            run,
            self.config.claim_ttl.as_secs_f64(),
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(trigger)
    }

    /// Runs sweep `id` once taken ([`Forge::take_requested`]).
    pub async fn run_taken(
        &self,
        id: Uuid,
        trigger: SweepTrigger,
    ) -> Result<SweepReport, WorkerError> {
        self.sweep_as(id, trigger).await
    }

    /// Takes and runs every requested sweep no process runs: one whose event was lost
    /// (waiting longer than a minute) or whose process died (a stale heartbeat).
    pub async fn resume_requested(&self) -> Result<usize, WorkerError> {
        let waiting = sqlx::query_scalar!(
            "select id from forge_sweeps
             where finished_at is null and trigger <> 'schedule'
               and ((claimed_by is null and requested_at < now() - interval '1 minute')
                    or heartbeat_at < now() - make_interval(secs => $1))
             order by requested_at",
            self.config.claim_ttl.as_secs_f64(),
        )
        .fetch_all(&self.pool)
        .await?;
        let mut resumed = 0;
        for id in waiting {
            if let Some(trigger) = self.take_requested(id).await? {
                tracing::info!(sweep = %id, "resuming a requested forge sweep no process runs");
                self.run_taken(id, trigger).await?;
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    /// Records sweep `id` as started by this process.
    async fn start(
        &self,
        conn: &mut sqlx::PgConnection,
        id: Uuid,
        trigger: SweepTrigger,
        requested_by: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "insert into forge_sweeps (id, trigger, requested_by, claimed_by, started_at,
                                       heartbeat_at)
             values ($1, $2, $3, $4, now(), now())",
            id,
            trigger as _,
            requested_by,
            self.holder,
        )
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn sweep_as(&self, id: Uuid, trigger: SweepTrigger) -> Result<SweepReport, WorkerError> {
        let started = std::time::Instant::now();
        let gitea = self.gitea.counted();
        let mut report = SweepReport {
            id,
            trigger,
            repos: 0,
            changes: 0,
            gitea_calls: 0,
            unreachable: Vec::new(),
            duration_ms: 0,
        };
        if trigger == SweepTrigger::Rebuild {
            // Only with Gitea there to read from again: else the rebuild ends here,
            // reporting why, with nothing dropped.
            let branch = &self.config.main_branch;
            let entries = super::refresh::ENTRIES_DIR;
            if let Err(error) = gitea.list_dir(&self.meta, entries, branch).await {
                report.unreachable.push(Unreachable {
                    repo: self.meta.to_string(),
                    error: format!("{error}; nothing was dropped"),
                });
                report.gitea_calls = gitea.calls();
                report.duration_ms = started.elapsed().as_millis() as u64;
                self.finish(&report, 1).await?;
                return Ok(report);
            }
            let mut tx = self.pool.begin().await?;
            let deleted = cache::drop_all(&mut tx, &self.meta).await?;
            tx.commit().await?;
            tracing::info!(deleted, "forge cache dropped; rebuilding from Gitea");
        }
        let meta = self.meta.clone();
        self.tally(
            &mut report,
            &meta,
            self.refresh_waiting(&gitea, &meta).await,
        );
        let repos = {
            let mut conn = self.pool.acquire().await?;
            cache::active_repos(&mut conn).await?
        };
        let total = repos.len() + 1;
        self.announce(&report, SweepPhase::Progress, total).await?;
        let refreshes: Vec<_> = repos
            .iter()
            .filter_map(|r| RepoName::parse(r))
            .map(|repo| self.refresh_named(&gitea, repo))
            .collect();
        let mut results =
            futures::stream::iter(refreshes).buffer_unordered(self.config.read_concurrency.max(1));
        while let Some((repo, result)) = results.next().await {
            self.tally(&mut report, &repo, result);
            self.announce(&report, SweepPhase::Progress, total).await?;
        }
        report.gitea_calls = gitea.calls();
        report.duration_ms = started.elapsed().as_millis() as u64;
        self.finish(&report, total).await?;
        Ok(report)
    }

    /// Stages `forge.sweep.{phase}` for where `report` is.
    async fn announce(
        &self,
        report: &SweepReport,
        phase: SweepPhase,
        total: usize,
    ) -> Result<(), WorkerError> {
        let mut tx = OutboxTx::begin(&self.pool).await?;
        sqlx::query!(
            "update forge_sweeps set heartbeat_at = now() where id = $1",
            report.id,
        )
        .execute(&mut *tx)
        .await?;
        tx.stage(&[progress(report, phase, total).event(SOURCE)]);
        tx.commit(&self.doorbell).await?;
        Ok(())
    }

    /// Records what the sweep found, with its `forge.sweep.finished` event.
    async fn finish(&self, report: &SweepReport, total: usize) -> Result<(), WorkerError> {
        let mut tx = OutboxTx::begin(&self.pool).await?;
        sqlx::query!(
            "update forge_sweeps
             set finished_at = now(), repos = $2, changes = $3, gitea_calls = $4, unreachable = $5
             where id = $1",
            report.id,
            report.repos as i32,
            report.changes as i32,
            report.gitea_calls as i32,
            serde_json::to_value(&report.unreachable).expect("reports serialize"),
        )
        .execute(&mut *tx)
        .await?;
        tx.stage(&[progress(report, SweepPhase::Finished, total).event(SOURCE)]);
        tx.commit(&self.doorbell).await?;
        Ok(())
    }

    async fn refresh_named(
        &self,
        gitea: &super::Gitea,
        repo: RepoName,
    ) -> (RepoName, Result<Refreshed, WorkerError>) {
        let result = self.refresh_waiting(gitea, &repo).await;
        (repo, result)
    }

    /// Refreshes `repo`, waiting for a refresh in flight elsewhere to finish first.
    async fn refresh_waiting(
        &self,
        gitea: &super::Gitea,
        repo: &RepoName,
    ) -> Result<Refreshed, WorkerError> {
        let wait = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(2))
            .with_total_delay(Some(self.config.claim_ttl))
            .without_max_times();
        (|| self.refresh_with(gitea, repo))
            .retry(wait)
            .when(|error| matches!(error, WorkerError::Fenced(_)))
            .await
    }

    fn tally(
        &self,
        report: &mut SweepReport,
        repo: &RepoName,
        result: Result<Refreshed, WorkerError>,
    ) {
        match result {
            Ok(refreshed) => {
                report.repos += usize::from(refreshed.tracked);
                report.changes += refreshed.changes;
            }
            Err(error) => {
                tracing::warn!(%repo, %error, "forge sweep could not read a repo; going on");
                report.unreachable.push(Unreachable {
                    repo: repo.to_string(),
                    error: error.to_string(),
                });
            }
        }
    }
}

/// The event saying where `report`'s sweep is.
fn progress(report: &SweepReport, phase: SweepPhase, total: usize) -> ForgeSweep {
    ForgeSweep {
        sweep_id: report.id,
        trigger: report.trigger,
        phase,
        repos_done: report.repos + report.unreachable.len(),
        repos_total: total,
        changes: report.changes,
        unreachable: report.unreachable.len(),
    }
}

/// Deletes webhook delivery ids older than `retention`.
pub async fn trim_deliveries(pool: &PgPool, retention: Duration) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query!(
        "delete from forge_deliveries where received_at < now() - make_interval(secs => $1)",
        retention.as_secs_f64(),
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(deleted)
}
