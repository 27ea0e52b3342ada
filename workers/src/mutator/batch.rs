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

use futures::TryStreamExt;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use switchyard_bus::payloads::{MutationApplied, MutationFailed, TopologyStatus};
use switchyard_bus::{Doorbell, Event, OutboxTx, TraceContext};
use switchyard_domain::json::{self, Limits};
use switchyard_domain::status::{self, MutationStatus};
use uuid::Uuid;

use super::apply::{PendingMutation, Verdict, apply};
use crate::{BATCH_BYTES, WorkerError, metrics, spans};
use switchyard_bus::{Payload, Source};
use switchyard_domain::metrics::{Outcome as Counted, Resource};

const SOURCE: Source = Source::Mutator;

/// What one batch did.
#[derive(Debug, PartialEq, Eq)]
pub enum BatchResult {
    /// Another worker holds the topology (or it no longer exists).
    Busy,
    /// `finished` mutations committed; `more` says whether pending ones remain.
    Committed { finished: usize, more: bool },
}

pub(super) struct LockedTopology {
    /// As stored, parsed only when a batch needs it (see [`parse_document`]).
    pub(super) document: String,
    pub(super) version: i64,
    pub(super) status: status::TopologyStatus,
}

/// The outcome of one mutation inside a batch.
pub(super) struct Finished {
    mutation: PendingMutation,
    before_version: i64,
    verdict: Verdict,
    /// The mutation's `mutation.apply` span: open until the batch is committed (or
    /// given up), when this is dropped.
    _span: tracing::Span,
    /// What its events carry: the span's trace context, or without one (no
    /// OpenTelemetry layer in this process) the enqueuing request's as stored.
    trace: Option<TraceContext>,
}

impl Finished {
    /// `mutation`'s outcome, decided by `decide` inside the mutation's own span, a
    /// child of the trace of the request that enqueued it ([`spans::mutation_span`]).
    fn reach(
        topology_id: Uuid,
        mutation: PendingMutation,
        before_version: i64,
        decide: impl FnOnce(&PendingMutation) -> Verdict,
    ) -> Self {
        let enqueued = mutation
            .traceparent
            .as_deref()
            .and_then(|t| TraceContext::parse(t, mutation.tracestate.as_deref()));
        let span = spans::mutation_span(mutation.id, topology_id, mutation.seq, enqueued.as_ref());
        let verdict = span.in_scope(|| decide(&mutation));
        let outcome = match verdict {
            Verdict::Applied { .. } => MutationStatus::Applied,
            Verdict::Failed { .. } => MutationStatus::Failed,
        };
        span.record("outcome", outcome.as_str());
        let trace = TraceContext::of_span(&span).or(enqueued);
        Self {
            mutation,
            before_version,
            verdict,
            _span: span,
            trace,
        }
    }
}

/// How much one batch may do.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    /// Mutations applied per transaction.
    pub size: usize,
    /// What the document must stay within after every operation.
    pub document: Limits,
    /// Longest wait for the topology's row lock.
    pub lock_timeout: std::time::Duration,
}

/// Applies up to `limits.size` pending mutations of `topology_id` in one transaction,
/// hands its events to the relay through `doorbell` once committed, and returns them.
pub async fn run(
    pool: &PgPool,
    doorbell: &Doorbell,
    topology_id: Uuid,
    limits: BatchLimits,
) -> Result<(BatchResult, Vec<Event>), WorkerError> {
    let mut tx = OutboxTx::begin(pool).await?;
    let Some(topology) = lock(&mut tx, topology_id, limits.lock_timeout).await? else {
        return Ok((BatchResult::Busy, Vec::new()));
    };
    let (pending, more) = load_pending(&mut tx, topology_id, limits.size).await?;
    if pending.is_empty() && topology.status == status::TopologyStatus::Idle {
        return Ok((
            BatchResult::Committed {
                finished: 0,
                more: false,
            },
            Vec::new(),
        ));
    }
    let outcome = Outcome::apply(topology_id, &topology, pending, more, &limits.document);
    finish(tx, doorbell, outcome).await
}

/// Commits one topology's outcome and says what the batch did.
async fn finish(
    tx: OutboxTx<'static>,
    doorbell: &Doorbell,
    outcome: Outcome,
) -> Result<(BatchResult, Vec<Event>), WorkerError> {
    let events = commit_all(tx, doorbell, std::slice::from_ref(&outcome)).await?;
    let result = BatchResult::Committed {
        finished: outcome.finished.len(),
        more: outcome.more,
    };
    Ok((result, events))
}

/// Marks the topology's pending head failed with `reason`, without applying it: the
/// way out for a mutation whose outcome the database refuses to store. The document
/// is not read.
pub async fn fail_head(
    pool: &PgPool,
    doorbell: &Doorbell,
    topology_id: Uuid,
    lock_timeout: std::time::Duration,
    reason: &str,
) -> Result<(BatchResult, Vec<Event>), WorkerError> {
    let mut tx = OutboxTx::begin(pool).await?;
    let Some(topology) = lock(&mut tx, topology_id, lock_timeout).await? else {
        return Ok((BatchResult::Busy, Vec::new()));
    };
    let (pending, more) = load_pending(&mut tx, topology_id, 1).await?;
    let outcome = Outcome {
        topology_id,
        finished: fail_all(topology_id, pending, topology.version, reason),
        document: None,
        version: topology.version,
        more,
    };
    finish(tx, doorbell, outcome).await
}

/// The stored document as a value. A document stored before depth limits existed may
/// be nested deeper than serde_json reads (128 levels); its mutations then fail with
/// this reason rather than the batch erroring on every attempt.
fn parse_document(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| {
        format!(
            "the topology's stored document cannot be read ({e}); it still reads with GET, but to edit it, create a new topology from a copy reshaped within the document limits"
        )
    })
}

/// Every mutation fails with `reason`; the document is untouched.
fn fail_all(
    topology_id: Uuid,
    pending: Vec<PendingMutation>,
    version: i64,
    reason: &str,
) -> Vec<Finished> {
    let failed = || Verdict::Failed {
        error: reason.to_owned(),
    };
    pending
        .into_iter()
        .map(|mutation| Finished::reach(topology_id, mutation, version, |_| failed()))
        .collect()
}

/// Applies each mutation to the in-memory document, in seq order.
fn apply_in_order(
    topology_id: Uuid,
    document: &mut Value,
    version: &mut i64,
    pending: Vec<PendingMutation>,
    limits: &Limits,
) -> Vec<Finished> {
    pending
        .into_iter()
        .map(|mutation| {
            let before_version = *version;
            Finished::reach(topology_id, mutation, before_version, |mutation| {
                apply(document, version, mutation, limits)
            })
        })
        .collect()
}

/// One topology's results in a batch, ready to commit.
pub(super) struct Outcome {
    pub(super) topology_id: Uuid,
    pub(super) finished: Vec<Finished>,
    /// The new document, when a mutation applied.
    pub(super) document: Option<Value>,
    pub(super) version: i64,
    /// Pending mutations remain after this batch.
    pub(super) more: bool,
}

impl Outcome {
    /// Applies `pending` to the locked topology's document, in seq order; if the
    /// stored document cannot be read, every mutation fails with the reason.
    pub(super) fn apply(
        topology_id: Uuid,
        topology: &LockedTopology,
        pending: Vec<PendingMutation>,
        more: bool,
        limits: &Limits,
    ) -> Self {
        let mut version = topology.version;
        let (finished, document) = match parse_document(&topology.document) {
            Ok(mut document) => {
                let finished =
                    apply_in_order(topology_id, &mut document, &mut version, pending, limits);
                let changed = version != topology.version;
                (finished, changed.then_some(document))
            }
            Err(reason) => (fail_all(topology_id, pending, version, &reason), None),
        };
        Self {
            topology_id,
            finished,
            document,
            version,
            more,
        }
    }

    fn status(&self) -> status::TopologyStatus {
        if self.more {
            status::TopologyStatus::Pending
        } else {
            status::TopologyStatus::Idle
        }
    }

    /// The highest seq this outcome finished.
    pub(super) fn last_seq(&self) -> Option<i64> {
        self.finished.last().map(|f| f.mutation.seq)
    }
}

/// Commits every outcome with its audit rows, the topologies and the events together,
/// in one transaction, and returns the events.
pub(super) async fn commit_all(
    mut tx: OutboxTx<'static>,
    doorbell: &Doorbell,
    outcomes: &[Outcome],
) -> Result<Vec<Event>, WorkerError> {
    let finished: Vec<(Uuid, &Finished)> = outcomes
        .iter()
        .flat_map(|o| o.finished.iter().map(move |f| (o.topology_id, f)))
        .collect();
    let events: Vec<Event> = outcomes
        .iter()
        .flat_map(|o| events(o.topology_id, &o.finished, o.version, o.status()))
        .collect();
    if !finished.is_empty() {
        record_outcomes(&mut tx, &finished).await?;
        record_audit(&mut tx, &finished).await?;
    }
    if !outcomes.is_empty() {
        save_topologies(&mut tx, outcomes).await?;
    }
    tx.stage(&events);
    tx.commit(doorbell).await?;
    let applied = finished
        .iter()
        .filter(|(_, f)| matches!(f.verdict, Verdict::Applied { .. }))
        .count();
    metrics::work(Resource::Mutation, Counted::Applied, applied);
    metrics::work(
        Resource::Mutation,
        Counted::Failed,
        finished.len() - applied,
    );
    Ok(events)
}

async fn save_topologies(conn: &mut PgConnection, outcomes: &[Outcome]) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = outcomes.iter().map(|o| o.topology_id).collect();
    let documents: Vec<Option<Value>> = outcomes.iter().map(|o| o.document.clone()).collect();
    let versions: Vec<i64> = outcomes.iter().map(|o| o.version).collect();
    let statuses: Vec<status::TopologyStatus> = outcomes.iter().map(Outcome::status).collect();
    sqlx::query!(
        "update topologies t
         set document = coalesce(u.document, t.document), version = u.version,
             status = u.status, updated_at = now()
         from unnest($1::uuid[], $2::jsonb[], $3::int8[], $4::text[])
              as u(id, document, version, status)
         where t.id = u.id",
        &ids,
        &documents as _,
        &versions,
        &statuses as _,
    )
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
    sqlx::query_scalar!(
        "select set_config('lock_timeout', $1, true)",
        format!("{}ms", timeout.as_millis().max(1)),
    )
    .fetch_one(&mut *conn)
    .await?;
    let locked = sqlx::query_as!(
        LockedTopology,
        r#"select document::text as "document!", version, status as "status: status::TopologyStatus"
         from topologies
         where id = $1 for no key update"#,
        topology_id,
    )
    .fetch_optional(conn)
    .await;
    match locked {
        // lock_not_available: someone held it for longer than the timeout.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => Ok(None),
        other => other,
    }
}

/// The topology's pending head, in seq order: up to `size` mutations, and fewer once
/// they hold [`BATCH_BYTES`] of operations (read as a stream, so memory never depends
/// on how much clients enqueued). Also says whether more are pending.
async fn load_pending(
    conn: &mut PgConnection,
    topology_id: Uuid,
    size: usize,
) -> Result<(Vec<PendingMutation>, bool), sqlx::Error> {
    let mut rows = sqlx::query_as!(
        PendingMutation,
        "select id, seq, ops, if_version, actor, traceparent, tracestate from mutations
         where topology_id = $1 and status = 'pending'
         order by seq limit $2",
        topology_id,
        size as i64 + 1,
    )
    .fetch(conn);
    let (mut pending, mut bytes) = (Vec::new(), 0);
    while pending.len() < size && bytes < BATCH_BYTES {
        let Some(mutation) = rows.try_next().await? else {
            return Ok((pending, false));
        };
        bytes += json::encoded_len(&mutation.ops);
        pending.push(mutation);
    }
    let more = rows.try_next().await?.is_some();
    Ok((pending, more))
}

/// Marks each mutation applied or failed, fenced on it still being pending.
async fn record_outcomes(
    conn: &mut PgConnection,
    finished: &[(Uuid, &Finished)],
) -> Result<(), WorkerError> {
    let mut ids = Vec::new();
    let mut statuses = Vec::new();
    let mut errors: Vec<Option<String>> = Vec::new();
    let mut versions: Vec<Option<i64>> = Vec::new();
    for (_, f) in finished {
        ids.push(f.mutation.id);
        let (status, error, version) = match &f.verdict {
            Verdict::Applied { version } => (MutationStatus::Applied, None, Some(*version)),
            Verdict::Failed { error } => (MutationStatus::Failed, Some(error.clone()), None),
        };
        statuses.push(status);
        errors.push(error);
        versions.push(version);
    }
    let updated = sqlx::query!(
        "update mutations m
         set status = u.status, error = u.error, applied_version = u.version, finished_at = now()
         from unnest($1::uuid[], $2::text[], $3::text[], $4::int8[]) as u(id, status, error, version)
         where m.id = u.id and m.status = 'pending'",
        &ids,
        &statuses as _,
        &errors as _,
        &versions as _,
    )
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
    finished: &[(Uuid, &Finished)],
) -> Result<(), sqlx::Error> {
    let mut rows = AuditRows::default();
    for (topology_id, f) in finished {
        rows.push(*topology_id, f);
    }
    // One statement for the batch, one array per column; `with ordinality` keeps
    // audit ids in seq order within each topology.
    sqlx::query!(
        "insert into mutation_audit
           (mutation_id, topology_id, seq, outcome, before_version, after_version, actor, ops, error)
         select mutation_id, topology_id, seq, outcome, before_version, after_version, actor, ops, error
         from unnest($1::uuid[], $2::uuid[], $3::int8[], $4::text[], $5::int8[], $6::int8[],
                     $7::text[], $8::jsonb[], $9::text[]) with ordinality
              as r(mutation_id, topology_id, seq, outcome, before_version, after_version, actor, ops, error, ord)
         order by ord",
        &rows.mutation_ids,
        &rows.topology_ids,
        &rows.seqs,
        &rows.outcomes as _,
        &rows.before_versions,
        &rows.after_versions,
        &rows.actors,
        &rows.ops,
        &rows.errors as _,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The columns of a batch's audit rows.
#[derive(Default)]
struct AuditRows {
    mutation_ids: Vec<Uuid>,
    topology_ids: Vec<Uuid>,
    seqs: Vec<i64>,
    outcomes: Vec<MutationStatus>,
    before_versions: Vec<i64>,
    after_versions: Vec<i64>,
    actors: Vec<String>,
    ops: Vec<Value>,
    errors: Vec<Option<String>>,
}

impl AuditRows {
    fn push(&mut self, topology_id: Uuid, f: &Finished) {
        let (outcome, after, error) = match &f.verdict {
            Verdict::Applied { version } => (MutationStatus::Applied, *version, None),
            Verdict::Failed { error } => (
                MutationStatus::Failed,
                f.before_version,
                Some(error.clone()),
            ),
        };
        self.mutation_ids.push(f.mutation.id);
        self.topology_ids.push(topology_id);
        self.seqs.push(f.mutation.seq);
        self.outcomes.push(outcome);
        self.before_versions.push(f.before_version);
        self.after_versions.push(after);
        self.actors.push(f.mutation.actor.clone());
        self.ops.push(f.mutation.ops.clone());
        self.errors.push(error);
    }
}

/// One `mutation.applied|failed` per mutation, each in its mutation's trace, then one
/// `status` for the batch, in the trace of the last mutation finished (none finished:
/// the current span's, as the outbox stamps it).
fn events(
    topology_id: Uuid,
    finished: &[Finished],
    version: i64,
    status: status::TopologyStatus,
) -> Vec<Event> {
    let mut events: Vec<Event> = finished
        .iter()
        .map(|f| {
            let (mutation_id, seq) = (f.mutation.id, f.mutation.seq);
            let event = match &f.verdict {
                Verdict::Applied { version } => MutationApplied {
                    mutation_id,
                    topology_id,
                    seq,
                    status: MutationStatus::Applied,
                    version: *version,
                }
                .event(SOURCE),
                Verdict::Failed { error } => MutationFailed {
                    mutation_id,
                    topology_id,
                    seq,
                    status: MutationStatus::Failed,
                    error: error.clone(),
                }
                .event(SOURCE),
            };
            event.in_trace(f.trace.as_ref())
        })
        .collect();
    let status = TopologyStatus {
        topology_id,
        version,
        status,
        last_seq: finished.last().map(|f| f.mutation.seq),
    };
    let last_trace = finished.last().and_then(|f| f.trace.as_ref());
    events.push(status.event(SOURCE).in_trace(last_trace));
    events
}
