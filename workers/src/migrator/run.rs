//! One migration run, worked under a lease: claim, batches, and the end (succeeded
//! or failed). Every write is fenced on the claim's `attempt`, so a migrator whose
//! lease passed to another can no longer change anything.

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use switchyard_bus::payloads::{MigrationChanged, MigrationPhase};
use switchyard_bus::{Event, outbox};
use uuid::Uuid;

use super::steps::{self, Step};
use crate::WorkerError;

const SOURCE: &str = "switchyard/migrator";

/// A run this migrator holds.
#[derive(Clone, Debug, sqlx::FromRow)]
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
    id: Uuid,
    holder: &str,
    lease: std::time::Duration,
) -> Result<(Result<Claim, Unclaimed>, Vec<Event>), WorkerError> {
    let mut tx = pool.begin().await?;
    let claimed = sqlx::query_as::<_, Claim>(
        "update graph_migration_runs r
         set status = 'running', claimed_by = $2, attempt = attempt + 1,
             claim_expires_at = now() + make_interval(secs => $3),
             started_at = coalesce(started_at, now())
         from graphs g
         where r.id = $1 and g.id = r.graph_id
           and (r.status = 'pending' or (r.status = 'running' and r.claim_expires_at < now()))
         returning r.id as run_id, r.attempt, r.graph_id, g.slug as graph_slug, g.plugin,
                   r.from_version, r.to_version, r.processed, r.total",
    )
    .bind(id)
    .bind(holder)
    .bind(lease.as_secs_f64())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(mut claim) = claimed else {
        let status: Option<String> =
            sqlx::query_scalar("select status from graph_migration_runs where id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let why = match status.as_deref() {
            Some("running" | "pending") => Unclaimed::Busy,
            _ => Unclaimed::Over,
        };
        return Ok((Err(why), Vec::new()));
    };
    if claim.attempt == 1 {
        // Nodes are often bulk-loaded just before a migration, before autovacuum has
        // looked at them: without statistics the batch update's join can degrade to
        // scanning the table once per node.
        sqlx::query("analyze graph_nodes").execute(&mut *tx).await?;
        // Writes already committed are counted; new ones are refused from here on.
        sqlx::query(
            "update graphs set read_only_reason = 'migrating', updated_at = now() where id = $1",
        )
        .bind(claim.graph_id)
        .execute(&mut *tx)
        .await?;
        claim.total = sqlx::query_scalar(
            "update graph_migration_runs set total = (
               select count(*) from graph_nodes where graph_id = $2 and schema_version < $3)
             where id = $1 returning total",
        )
        .bind(claim.run_id)
        .bind(claim.graph_id)
        .bind(claim.to_version)
        .fetch_one(&mut *tx)
        .await?;
    }
    let events = vec![claim.event(MigrationPhase::Running, None)];
    outbox::stage(&mut tx, &events).await?;
    tx.commit().await?;
    Ok((Ok(claim), events))
}

/// The steps of every version after `from` up to `to`, by version.
pub async fn load_steps(
    pool: &PgPool,
    claim: &Claim,
) -> Result<BTreeMap<i32, Vec<Step>>, WorkerError> {
    let rows: Vec<(i32, Value)> = sqlx::query_as(
        "select version, steps from plugin_versions
         where plugin = $1 and version <= $2 order by version",
    )
    .bind(&claim.plugin)
    .bind(claim.to_version)
    .fetch_all(pool)
    .await?;
    let mut versions = BTreeMap::new();
    for (version, raw) in rows {
        let steps: Vec<Step> = serde_json::from_value(raw).map_err(|e| {
            WorkerError::Fenced(format!("plugin {} version {version}: {e}", claim.plugin))
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

/// Migrates up to `size` nodes still behind the target, in one transaction.
pub async fn batch(
    pool: &PgPool,
    claim: &mut Claim,
    versions: &BTreeMap<i32, Vec<Step>>,
    size: usize,
    lease: std::time::Duration,
) -> Result<(Batch, Vec<Event>), WorkerError> {
    let mut tx = pool.begin().await?;
    let nodes: Vec<(String, Value, i32)> = sqlx::query_as(
        "select id, data, schema_version from graph_nodes
         where graph_id = $1 and schema_version < $2
         order by schema_version, id limit $3 for update",
    )
    .bind(claim.graph_id)
    .bind(claim.to_version)
    .bind(size as i64)
    .fetch_all(&mut *tx)
    .await?;
    if nodes.is_empty() {
        return Ok((Batch::Migrated(0), Vec::new()));
    }
    let mut ids = Vec::with_capacity(nodes.len());
    let mut migrated = Vec::with_capacity(nodes.len());
    for (id, data, version) in nodes {
        match migrate_node(versions, data, version, claim.to_version) {
            Ok(data) => {
                ids.push(id);
                migrated.push(data);
            }
            Err(error) => return Ok((Batch::Failed(format!("node {id:?}: {error}")), Vec::new())),
        }
    }
    sqlx::query(
        "update graph_nodes n set data = u.data, schema_version = $2, updated_at = now()
         from unnest($3::text[], $4::jsonb[]) as u(id, data)
         where n.graph_id = $1 and n.id = u.id and n.schema_version < $2",
    )
    .bind(claim.graph_id)
    .bind(claim.to_version)
    .bind(&ids)
    .bind(&migrated)
    .execute(&mut *tx)
    .await?;
    claim.processed = fenced_progress(&mut tx, claim, ids.len() as i64, lease).await?;
    let events = vec![claim.event(MigrationPhase::Progress, None)];
    outbox::stage(&mut tx, &events).await?;
    tx.commit().await?;
    Ok((Batch::Migrated(ids.len()), events))
}

/// Node data moved from `version` to `to`, one version's steps at a time.
fn migrate_node(
    versions: &BTreeMap<i32, Vec<Step>>,
    data: Value,
    version: i32,
    to: i32,
) -> Result<Value, String> {
    let Value::Object(mut object) = data else {
        return Err("its data is not an object".to_owned());
    };
    for (next, steps) in versions.range(version + 1..=to) {
        steps::apply(steps, &mut object).map_err(|e| format!("version {next} {e}"))?;
    }
    Ok(Value::Object(object))
}

/// Adds `n` to the run's progress and renews the lease, if this claim still holds.
async fn fenced_progress(
    tx: &mut PgConnection,
    claim: &Claim,
    n: i64,
    lease: std::time::Duration,
) -> Result<i64, WorkerError> {
    sqlx::query_scalar(
        "update graph_migration_runs
         set processed = processed + $3, claim_expires_at = now() + make_interval(secs => $4)
         where id = $1 and attempt = $2 and status = 'running'
         returning processed",
    )
    .bind(claim.run_id)
    .bind(claim.attempt)
    .bind(n)
    .bind(lease.as_secs_f64())
    .fetch_optional(tx)
    .await?
    .ok_or_else(|| WorkerError::Fenced(format!("migration run {} was taken over", claim.run_id)))
}

/// Ends the run: succeeded (the graph takes the target version and is writable again)
/// or failed (the graph stays read-only as `migration_failed`).
pub async fn finish(
    pool: &PgPool,
    claim: &Claim,
    failure: Option<String>,
) -> Result<Vec<Event>, WorkerError> {
    let mut tx = pool.begin().await?;
    let (status, reason) = match failure {
        None => ("succeeded", None),
        Some(_) => ("failed", Some("migration_failed")),
    };
    let ended = sqlx::query(
        "update graph_migration_runs
         set status = $3, error = $4, finished_at = now(), claimed_by = null, claim_expires_at = null
         where id = $1 and attempt = $2 and status = 'running'",
    )
    .bind(claim.run_id)
    .bind(claim.attempt)
    .bind(status)
    .bind(&failure)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if ended == 0 {
        return Err(WorkerError::Fenced(format!(
            "migration run {} was taken over",
            claim.run_id
        )));
    }
    sqlx::query(
        "update graphs set read_only_reason = $2, updated_at = now(),
                schema_version = case when $2::text is null then $3 else schema_version end
         where id = $1",
    )
    .bind(claim.graph_id)
    .bind(reason)
    .bind(claim.to_version)
    .execute(&mut *tx)
    .await?;
    let phase = match failure {
        None => MigrationPhase::Succeeded,
        Some(_) => MigrationPhase::Failed,
    };
    let events = vec![claim.event(phase, failure)];
    outbox::stage(&mut tx, &events).await?;
    tx.commit().await?;
    Ok(events)
}

/// Gives the lease up early (a graceful stop), so another migrator resumes at once.
pub async fn release(pool: &PgPool, claim: &Claim) -> Result<(), WorkerError> {
    sqlx::query(
        "update graph_migration_runs set claim_expires_at = now(), claimed_by = null
         where id = $1 and attempt = $2 and status = 'running'",
    )
    .bind(claim.run_id)
    .bind(claim.attempt)
    .execute(pool)
    .await?;
    Ok(())
}
