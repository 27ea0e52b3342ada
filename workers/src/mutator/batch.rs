//! One batch: lock a topology, apply its pending head in `seq` order, and commit every
//! outcome with its audit row and events in a single transaction.
//!
//! The topology row lock (`for no key update`) is the claim: one holder per topology
//! across the fleet, released by Postgres at commit, rollback, or when the holder's
//! connection dies. Enqueues take the same row lock to hand out `seq`, so nothing can
//! be enqueued between reading the pending head and committing.
//!
//! The lock is waited for, up to `lock_timeout`, rather than skipped: Postgres grants
//! row locks in arrival order, so a stream of enqueues to one topology cannot starve
//! the mutator. Only a holder busy for longer (another mutator's long batch) makes the
//! batch report [`BatchResult::Busy`].

use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};
use switchyard_bus::payloads::{MutationApplied, MutationFailed, TopologyStatus};
use switchyard_bus::{Event, outbox};
use uuid::Uuid;

use super::apply::{PendingMutation, Verdict, apply};
use crate::WorkerError;

const SOURCE: &str = "switchyard/mutator";

/// What one batch did.
#[derive(Debug, PartialEq, Eq)]
pub enum BatchResult {
    /// Another worker holds the topology (or it no longer exists).
    Busy,
    /// `finished` mutations committed; `more` says whether pending ones remain.
    Committed { finished: usize, more: bool },
}

#[derive(sqlx::FromRow)]
struct LockedTopology {
    document: Value,
    version: i64,
    status: String,
}

/// The outcome of one mutation inside a batch.
struct Finished {
    mutation: PendingMutation,
    before_version: i64,
    verdict: Verdict,
}

/// How much one batch may do.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    /// Mutations applied per transaction.
    pub size: usize,
    /// Largest document after any mutation.
    pub max_document_bytes: usize,
    /// Longest wait for the topology's row lock.
    pub lock_timeout: std::time::Duration,
}

/// Applies up to `limits.size` pending mutations of `topology_id` in one transaction,
/// and returns the committed events for the relay.
pub async fn run(
    pool: &PgPool,
    topology_id: Uuid,
    limits: BatchLimits,
) -> Result<(BatchResult, Vec<Event>), WorkerError> {
    let (batch_size, max_document_bytes) = (limits.size, limits.max_document_bytes);
    let mut tx = pool.begin().await?;
    let Some(mut topology) = lock(&mut tx, topology_id, limits.lock_timeout).await? else {
        return Ok((BatchResult::Busy, Vec::new()));
    };
    let mut pending = load_pending(&mut tx, topology_id, batch_size as i64 + 1).await?;
    let more = pending.len() > batch_size;
    pending.truncate(batch_size);
    if pending.is_empty() && topology.status == "idle" {
        return Ok((
            BatchResult::Committed {
                finished: 0,
                more: false,
            },
            Vec::new(),
        ));
    }
    let finished = apply_in_order(&mut topology, pending, max_document_bytes);
    let status = if more { "pending" } else { "idle" };
    let events = events(topology_id, &finished, topology.version, status);
    record_outcomes(&mut tx, &finished).await?;
    record_audit(&mut tx, topology_id, &finished).await?;
    save_topology(&mut tx, topology_id, &topology, status).await?;
    outbox::stage(&mut tx, &events).await?;
    tx.commit().await?;
    Ok((
        BatchResult::Committed {
            finished: finished.len(),
            more,
        },
        events,
    ))
}

/// Applies each mutation to the in-memory document, in seq order.
fn apply_in_order(
    topology: &mut LockedTopology,
    pending: Vec<PendingMutation>,
    max_document_bytes: usize,
) -> Vec<Finished> {
    pending
        .into_iter()
        .map(|mutation| {
            let before_version = topology.version;
            let verdict = apply(
                &mut topology.document,
                &mut topology.version,
                &mutation,
                max_document_bytes,
            );
            Finished {
                mutation,
                before_version,
                verdict,
            }
        })
        .collect()
}

async fn save_topology(
    conn: &mut PgConnection,
    topology_id: Uuid,
    topology: &LockedTopology,
    status: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update topologies set document = $2, version = $3, status = $4, updated_at = now()
         where id = $1",
    )
    .bind(topology_id)
    .bind(&topology.document)
    .bind(topology.version)
    .bind(status)
    .execute(conn)
    .await?;
    Ok(())
}

/// The topology, locked; `None` when it does not exist or stayed locked past `timeout`.
async fn lock(
    conn: &mut PgConnection,
    topology_id: Uuid,
    timeout: std::time::Duration,
) -> Result<Option<LockedTopology>, sqlx::Error> {
    sqlx::query("select set_config('lock_timeout', $1, true)")
        .bind(format!("{}ms", timeout.as_millis().max(1)))
        .execute(&mut *conn)
        .await?;
    let locked = sqlx::query_as(
        "select document, version, status from topologies where id = $1 for no key update",
    )
    .bind(topology_id)
    .fetch_optional(conn)
    .await;
    match locked {
        // lock_not_available: someone held it for longer than the timeout.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => Ok(None),
        other => other,
    }
}

async fn load_pending(
    conn: &mut PgConnection,
    topology_id: Uuid,
    limit: i64,
) -> Result<Vec<PendingMutation>, sqlx::Error> {
    sqlx::query_as(
        "select id, seq, ops, if_version, actor from mutations
         where topology_id = $1 and status = 'pending'
         order by seq limit $2",
    )
    .bind(topology_id)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Marks each mutation applied or failed, fenced on it still being pending.
async fn record_outcomes(
    conn: &mut PgConnection,
    finished: &[Finished],
) -> Result<(), WorkerError> {
    let mut ids = Vec::new();
    let mut statuses = Vec::new();
    let mut errors: Vec<Option<String>> = Vec::new();
    let mut versions: Vec<Option<i64>> = Vec::new();
    for f in finished {
        ids.push(f.mutation.id);
        let (status, error, version) = match &f.verdict {
            Verdict::Applied { version } => ("applied", None, Some(*version)),
            Verdict::Failed { error } => ("failed", Some(error.clone()), None),
        };
        statuses.push(status);
        errors.push(error);
        versions.push(version);
    }
    let updated = sqlx::query(
        "update mutations m
         set status = u.status, error = u.error, applied_version = u.version, finished_at = now()
         from unnest($1::uuid[], $2::text[], $3::text[], $4::int8[]) as u(id, status, error, version)
         where m.id = u.id and m.status = 'pending'",
    )
    .bind(&ids)
    .bind(&statuses)
    .bind(&errors)
    .bind(&versions)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated != ids.len() as u64 {
        // Cannot happen while we hold the topology lock; if it does, commit nothing.
        return Err(WorkerError::Fenced(format!(
            "{updated} of {} mutations were still pending",
            ids.len()
        )));
    }
    Ok(())
}

async fn record_audit(
    conn: &mut PgConnection,
    topology_id: Uuid,
    finished: &[Finished],
) -> Result<(), sqlx::Error> {
    let column = |f: fn(&Finished) -> Value| finished.iter().map(f).collect::<Vec<_>>();
    let rows = column(|f| {
        let (outcome, after, error) = match &f.verdict {
            Verdict::Applied { version } => ("applied", *version, None),
            Verdict::Failed { error } => ("failed", f.before_version, Some(error.as_str())),
        };
        json!({
            "mutation_id": f.mutation.id, "seq": f.mutation.seq, "outcome": outcome,
            "before_version": f.before_version, "after_version": after,
            "actor": f.mutation.actor, "ops": f.mutation.ops, "error": error,
        })
    });
    // jsonb_to_recordset keeps one bind for the whole batch; `with ordinality` keeps
    // audit ids in seq order.
    sqlx::query(
        "insert into mutation_audit
           (mutation_id, topology_id, seq, outcome, before_version, after_version, actor, ops, error)
         select r.mutation_id, $1, r.seq, r.outcome, r.before_version, r.after_version, r.actor, r.ops, r.error
         from jsonb_array_elements($2::jsonb) with ordinality as e(row, ord),
              jsonb_to_record(e.row) as r(mutation_id uuid, seq bigint, outcome text,
                before_version bigint, after_version bigint, actor text, ops jsonb, error text)
         order by e.ord",
    )
    .bind(topology_id)
    .bind(Value::Array(rows))
    .execute(conn)
    .await?;
    Ok(())
}

/// One `mutation.applied|failed` per mutation, then one `status` for the batch.
fn events(topology_id: Uuid, finished: &[Finished], version: i64, status: &str) -> Vec<Event> {
    let mut events: Vec<Event> = finished
        .iter()
        .map(|f| {
            let (mutation_id, seq) = (f.mutation.id, f.mutation.seq);
            match &f.verdict {
                Verdict::Applied { version } => MutationApplied {
                    mutation_id,
                    topology_id,
                    seq,
                    status: "applied".to_owned(),
                    version: *version,
                }
                .event(SOURCE),
                Verdict::Failed { error } => MutationFailed {
                    mutation_id,
                    topology_id,
                    seq,
                    status: "failed".to_owned(),
                    error: error.clone(),
                }
                .event(SOURCE),
            }
        })
        .collect();
    let status = TopologyStatus {
        topology_id,
        version,
        status: status.to_owned(),
        last_seq: finished.last().map(|f| f.mutation.seq),
    };
    events.push(status.event(SOURCE));
    events
}
