//! One migration run, worked under a lease: claim, batches, and the end (succeeded,
//! failed or cancelled). Every write is fenced on the claim's `attempt`, so a migrator whose
//! lease passed to another can no longer change anything.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use switchyard_bus::payloads::{MigrationChanged, MigrationPhase};
use switchyard_bus::{Doorbell, Event, OutboxTx};
use switchyard_domain::json::{self, Limits};
use switchyard_domain::status::{GraphStatus, MigrationRunStatus};
use switchyard_domain::steps::{self, Step};
use uuid::Uuid;

use crate::{BATCH_BYTES, WorkerError, metrics};
use switchyard_bus::{Payload, Source};
use switchyard_domain::metrics::{Outcome, Resource};

const SOURCE: Source = Source::Migrator;

/// A run this migrator holds.
#[derive(Clone, Debug)]
pub struct Claim {
    pub run_id: Uuid,
    pub attempt: i32,
    pub graph_id: Uuid,
    pub graph_slug: String,
    pub plugin: String,
    pub from_version: i32,
    pub to_version: i32,
    pub processed: i64,
    pub total: i64,
    /// An operator asked the run to stop; it ends `cancelled` at the next batch boundary.
    pub cancel_requested: bool,
}

impl Claim {
    fn event(&self, phase: MigrationPhase, error: Option<String>) -> Event {
        MigrationChanged {
            run_id: self.run_id,
            graph_slug: self.graph_slug.clone(),
            phase,
            from_version: self.from_version,
            to_version: self.to_version,
            processed: self.processed,
            total: self.total,
            error,
        }
        .event(SOURCE)
    }
}

/// Why a claim was not granted.
#[derive(Debug, PartialEq, Eq)]
pub enum Unclaimed {
    /// Another migrator's lease is live.
    Busy,
    /// The run is over (or unknown): nothing to do.
    Over,
}

/// Claims run `id` for `lease` if it is pending or its holder's lease expired. The
/// first claim makes the graph read-only and counts the nodes to migrate.
pub async fn claim(
    pool: &PgPool,
    doorbell: &Doorbell,
    id: Uuid,
    holder: &str,
    lease: std::time::Duration,
) -> Result<(Result<Claim, Unclaimed>, Vec<Event>), WorkerError> {
    let mut tx = OutboxTx::begin(pool).await?;
    lock_graph(&mut tx, id).await?;
    let claimed = sqlx::query_as!(
        Claim,
        r#"update graph_migration_runs r
         set status = 'running', claimed_by = $2, attempt = attempt + 1,
             claim_expires_at = now() + make_interval(secs => $3),
             started_at = coalesce(started_at, now())
         from graphs g
         where r.id = $1 and g.id = r.graph_id
           and (r.status = 'pending' or (r.status = 'running' and r.claim_expires_at < now()))
         returning r.id as run_id, r.attempt, r.graph_id, g.slug as graph_slug, g.plugin,
                   r.from_version, r.to_version, r.processed, r.total,
                   r.cancel_requested_at is not null as "cancel_requested!""#,
        id,
        holder,
        lease.as_secs_f64(),
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(mut claim) = claimed else {
        let status = sqlx::query_scalar!(
            r#"select status as "status: MigrationRunStatus" from graph_migration_runs
             where id = $1"#,
            id,
        )
        .fetch_optional(&mut *tx)
        .await?;
        let why = match status {
            Some(status) if status.is_open() => Unclaimed::Busy,
            _ => Unclaimed::Over,
        };
        return Ok((Err(why), Vec::new()));
    };
    if claim.attempt == 1 {
        start(&mut tx, &mut claim).await?;
    }
    let events = vec![claim.event(MigrationPhase::Running, None)];
    tx.stage(&events);
    tx.commit(doorbell).await?;
    Ok((Ok(claim), events))
}

/// A run's first claim: the graph becomes read-only (`migrating`) and the nodes to
/// migrate are counted into `claim.total`.
async fn start(tx: &mut PgConnection, claim: &mut Claim) -> Result<(), WorkerError> {
    // Nodes are often bulk-loaded just before a migration, before autovacuum has
    // looked at them: without statistics the batch update's join can degrade to
    // scanning the table once per node.
    sqlx::query!("analyze graph_nodes")
        .execute(&mut *tx)
        .await?;
    // Writes already committed are counted; new ones are refused from here on.
    sqlx::query!(
        "update graphs set status = 'migrating', updated_at = now() where id = $1",
        claim.graph_id,
    )
    .execute(&mut *tx)
    .await?;
    claim.total = sqlx::query_scalar!(
        "update graph_migration_runs set total = (
           select count(*) from graph_nodes where graph_id = $2 and schema_version < $3)
         where id = $1 returning total",
        claim.run_id,
        claim.graph_id,
        claim.to_version,
    )
    .fetch_one(&mut *tx)
    .await?;
    Ok(())
}

/// Locks the graph of run `id`. Whoever changes both a run and its graph (claim,
/// finish, cancel) locks the graph first, so they queue instead of deadlocking.
async fn lock_graph(tx: &mut PgConnection, run_id: Uuid) -> Result<(), sqlx::Error> {
    // A row-returning macro has no `execute`: the row (at most one) is read and dropped.
    sqlx::query_scalar!(
        "select 1 from graphs
         where id = (select graph_id from graph_migration_runs where id = $1) for update",
        run_id,
    )
    .fetch_optional(tx)
    .await?;
    Ok(())
}

/// The steps of every version after `from` up to `to`, by version.
pub async fn load_steps(
    pool: &PgPool,
    claim: &Claim,
) -> Result<BTreeMap<i32, Vec<Step>>, WorkerError> {
    let rows = sqlx::query!(
        "select version, steps from plugin_versions
         where plugin = $1 and version <= $2 order by version",
        claim.plugin,
        claim.to_version,
    )
    .fetch_all(pool)
    .await?;
    let mut versions = BTreeMap::new();
    for row in rows {
        let version = row.version;
        let steps: Vec<Step> = serde_json::from_value(row.steps).map_err(|e| {
            WorkerError::Corrupt(format!(
                "the stored steps of plugin {:?} version {version} cannot be read ({e})",
                claim.plugin
            ))
        })?;
        versions.insert(version, steps);
    }
    Ok(versions)
}

/// What one batch did.
#[derive(Debug, PartialEq, Eq)]
pub enum Batch {
    /// Migrated this many nodes (0: none were left).
    Migrated(usize),
    /// A step failed on a node: the message names both.
    Failed(String),
}

/// How much one batch may do.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    /// Nodes migrated per transaction.
    pub size: usize,
    /// How long the claim lasts after the batch renews it.
    pub lease: std::time::Duration,
    /// What a node's data must stay within once migrated (the document limits).
    pub data: Limits,
}

/// Migrates up to `limits.size` nodes still behind the target, in one transaction,
/// and notes whether an operator has asked the run to stop since.
pub async fn batch(
    pool: &PgPool,
    doorbell: &Doorbell,
    claim: &mut Claim,
    versions: &BTreeMap<i32, Vec<Step>>,
    limits: BatchLimits,
) -> Result<(Batch, Vec<Event>), WorkerError> {
    let mut tx = OutboxTx::begin(pool).await?;
    let (ids, migrated) = {
        let mut nodes = sqlx::query!(
            "select id, data, schema_version from graph_nodes
             where graph_id = $1 and schema_version < $2
             order by schema_version, id limit $3 for update",
            claim.graph_id,
            claim.to_version,
            limits.size as i64,
        )
        .fetch(&mut *tx);
        // Read as a stream and stopped at BATCH_BYTES: memory never depends on how much
        // data clients stored. Nodes left unread stay behind for the next batch.
        let (mut ids, mut migrated, mut bytes) = (Vec::new(), Vec::new(), 0);
        while bytes < BATCH_BYTES
            && let Some(node) = nodes.try_next().await?
        {
            let id = node.id;
            match migrate_node(
                versions,
                node.data,
                node.schema_version,
                claim.to_version,
                &limits.data,
            ) {
                Ok(data) => {
                    bytes += json::encoded_len(&data);
                    ids.push(id);
                    migrated.push(data);
                }
                Err(error) => {
                    return Ok((Batch::Failed(format!("node {id:?}: {error}")), Vec::new()));
                }
            }
        }
        (ids, migrated)
    };
    if ids.is_empty() {
        return Ok((Batch::Migrated(0), Vec::new()));
    }
    sqlx::query!(
        "update graph_nodes n set data = u.data, schema_version = $2, updated_at = now()
         from unnest($3::text[], $4::jsonb[]) as u(id, data)
         where n.graph_id = $1 and n.id = u.id and n.schema_version < $2",
        claim.graph_id,
        claim.to_version,
        &ids,
        &migrated,
    )
    .execute(&mut *tx)
    .await?;
    (claim.processed, claim.cancel_requested) =
        fenced_progress(&mut tx, claim, ids.len() as i64, limits.lease).await?;
    let events = vec![claim.event(MigrationPhase::Progress, None)];
    tx.stage(&events);
    tx.commit(doorbell).await?;
    metrics::nodes_migrated(ids.len());
    Ok((Batch::Migrated(ids.len()), events))
}

/// Node data moved from `version` to `to`, one version's steps at a time; it must
/// still keep the document limits after each version. Data stored before the limits
/// existed and already past them is migrated as it is, not failed for what it was.
fn migrate_node(
    versions: &BTreeMap<i32, Vec<Step>>,
    mut data: Value,
    version: i32,
    to: i32,
    limits: &Limits,
) -> Result<Value, String> {
    let within = limits.check(&data).is_ok();
    for (next, steps) in versions.range(version + 1..=to) {
        let object = data.as_object_mut().ok_or("its data is not an object")?;
        steps::apply(steps, object).map_err(|e| format!("version {next} {e}"))?;
        if within {
            limits
                .check(&data)
                .map_err(|e| format!("version {next}: the migrated data {e}"))?;
        }
    }
    Ok(data)
}

/// Adds `n` to the run's progress and renews the lease, if this claim still holds.
/// Returns the progress and whether an operator has asked the run to stop.
async fn fenced_progress(
    tx: &mut PgConnection,
    claim: &Claim,
    n: i64,
    lease: std::time::Duration,
) -> Result<(i64, bool), WorkerError> {
    sqlx::query!(
        r#"update graph_migration_runs
         set processed = processed + $3, claim_expires_at = now() + make_interval(secs => $4)
         where id = $1 and attempt = $2 and status = 'running'
         returning processed, cancel_requested_at is not null as "cancel_requested!""#,
        claim.run_id,
        claim.attempt,
        n,
        lease.as_secs_f64(),
    )
    .fetch_optional(tx)
    .await?
    .map(|row| (row.processed, row.cancel_requested))
    .ok_or_else(|| WorkerError::Fenced(format!("migration run {} was taken over", claim.run_id)))
}

/// How a run ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Every node is at the target: the graph takes it and is ready.
    Succeeded,
    /// A step failed on a node, or the run could not go on: the graph is
    /// `migration_failed` (writable, so the data can be repaired) until a later run
    /// succeeds or this one is cancelled.
    Failed(String),
    /// An operator stopped it: the graph is ready again at its version; nodes migrated
    /// so far keep the target version.
    Cancelled,
}

impl Ending {
    /// The run's status and the graph's, as stored.
    pub fn statuses(&self) -> (MigrationRunStatus, GraphStatus) {
        match self {
            Self::Succeeded => (MigrationRunStatus::Succeeded, GraphStatus::Ready),
            Self::Failed(_) => (MigrationRunStatus::Failed, GraphStatus::MigrationFailed),
            Self::Cancelled => (MigrationRunStatus::Cancelled, GraphStatus::Ready),
        }
    }
}

/// Ends the run as `ending` says, with the graph's new status and the run's event.
pub async fn finish(
    pool: &PgPool,
    doorbell: &Doorbell,
    claim: &Claim,
    ending: &Ending,
) -> Result<Vec<Event>, WorkerError> {
    let mut tx = OutboxTx::begin(pool).await?;
    lock_graph(&mut tx, claim.run_id).await?;
    let (run_status, graph_status) = ending.statuses();
    let error = match ending {
        Ending::Failed(error) => Some(error.clone()),
        _ => None,
    };
    let ended = sqlx::query!(
        "update graph_migration_runs
         set status = $3, error = $4, finished_at = now(), claimed_by = null, claim_expires_at = null
         where id = $1 and attempt = $2 and status = 'running'",
        claim.run_id,
        claim.attempt,
        run_status as _,
        error,
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if ended == 0 {
        return Err(WorkerError::Fenced(format!(
            "migration run {} was taken over",
            claim.run_id
        )));
    }
    sqlx::query!(
        "update graphs set status = $2, updated_at = now(),
                schema_version = case when $3 then $4 else schema_version end
         where id = $1",
        claim.graph_id,
        graph_status as _,
        *ending == Ending::Succeeded,
        claim.to_version,
    )
    .execute(&mut *tx)
    .await?;
    let phase = match ending {
        Ending::Succeeded => MigrationPhase::Succeeded,
        Ending::Failed(_) => MigrationPhase::Failed,
        Ending::Cancelled => MigrationPhase::Cancelled,
    };
    let events = vec![claim.event(phase, error)];
    tx.stage(&events);
    tx.commit(doorbell).await?;
    match ending {
        Ending::Succeeded => metrics::work(Resource::MigrationRun, Outcome::Succeeded, 1),
        Ending::Failed(_) => metrics::work(Resource::MigrationRun, Outcome::Failed, 1),
        Ending::Cancelled => {}
    }
    Ok(events)
}

/// Gives the lease up early (a graceful stop), so another migrator resumes at once.
pub async fn release(pool: &PgPool, claim: &Claim) -> Result<(), WorkerError> {
    sqlx::query!(
        "update graph_migration_runs set claim_expires_at = now(), claimed_by = null
         where id = $1 and attempt = $2 and status = 'running'",
        claim.run_id,
        claim.attempt,
    )
    .execute(pool)
    .await?;
    Ok(())
}
