//! Writing validated mutations: what a group commit ([`super::group`]) and a bulk
//! enqueue ([`super::batch`]) share. Every statement here runs in the caller's
//! transaction and touches many topologies at once.
//!
//! ## Ordering
//! [`lock_topologies`] takes the row lock of every topology involved, in id order (so
//! two multi-topology transactions never deadlock), and reads `last_seq`. Seqs are
//! handed out in the order the caller lists the mutations, and the locks are held
//! until commit, so per-topology seqs stay gapless and commit in seq order: the
//! mutator, which takes the same row lock, never sees seq n+1 without seq n.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::PgConnection;
use switchyard_bus::payloads::{MutationEnqueued, TopologyStatus};
use switchyard_bus::{Event, OutboxTx, Payload, Source, TraceContext};
use switchyard_domain::status;
use uuid::Uuid;

use super::{MutationOut, MutationStatus};

const SOURCE: Source = Source::Api;

/// A validated mutation, ready to write.
#[derive(Debug)]
pub(super) struct NewMutation {
    pub topology_id: Uuid,
    pub ops: Vec<Value>,
    pub if_version: Option<i64>,
    /// The token subject, recorded in the audit trail.
    pub actor: String,
    /// The request's `Idempotency-Key`, if any (per topology).
    pub key: Option<String>,
    /// SHA-256 of the canonical body; stored only with a key.
    pub hash: Vec<u8>,
    /// The request's trace context: stored with the mutation, so the mutator applies it
    /// in the same trace, and carried by its `mutation.enqueued` event.
    pub trace: Option<TraceContext>,
}

/// A topology locked for this transaction.
#[derive(Debug)]
pub(super) struct Locked {
    /// The last seq handed out so far, this transaction's included.
    last_seq: i64,
    version: i64,
    /// Idle before this transaction: its first mutation here announces `pending`.
    was_idle: bool,
}

/// The topologies of `ids` that exist, locked until commit (in id order) and keyed by id.
pub(super) async fn lock_topologies(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Locked>, sqlx::Error> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let rows = sqlx::query!(
        r#"select id, last_seq, version, status as "status: status::TopologyStatus"
         from topologies where id = any($1) order by id for no key update"#,
        &ids,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let locked = Locked {
                last_seq: row.last_seq,
                version: row.version,
                was_idle: row.status == status::TopologyStatus::Idle,
            };
            (row.id, locked)
        })
        .collect())
}

/// A stored mutation found by its idempotency key, with its request's fingerprint.
#[derive(Debug)]
pub(super) struct Keyed {
    pub mutation: MutationOut,
    pub request_hash: Option<Vec<u8>>,
}

/// The stored mutations of `(topology, key)` pairs, keyed by the pair. Run after
/// [`lock_topologies`], so no concurrent enqueue can add one meanwhile.
pub(super) async fn find_keyed(
    conn: &mut PgConnection,
    pairs: &[(Uuid, String)],
) -> Result<HashMap<(Uuid, String), Keyed>, sqlx::Error> {
    if pairs.is_empty() {
        return Ok(HashMap::new());
    }
    let (topologies, keys): (Vec<Uuid>, Vec<String>) = pairs.iter().cloned().unzip();
    let rows = sqlx::query!(
        r#"select request_hash, id, topology_id, seq, status as "status: MutationStatus", ops,
                  if_version, error, applied_version, actor, idempotency_key as "idempotency_key!",
                  created_at, finished_at
         from mutations
         where (topology_id, idempotency_key) in (select * from unnest($1::uuid[], $2::text[]))"#,
        &topologies,
        &keys,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let pair = (row.topology_id, row.idempotency_key.clone());
            let mutation = MutationOut {
                id: row.id,
                topology_id: row.topology_id,
                seq: row.seq,
                status: row.status,
                ops: row.ops,
                if_version: row.if_version,
                error: row.error,
                applied_version: row.applied_version,
                actor: row.actor,
                idempotency_key: Some(row.idempotency_key),
                created_at: row.created_at,
                finished_at: row.finished_at,
            };
            let keyed = Keyed {
                mutation,
                request_hash: row.request_hash,
            };
            (pair, keyed)
        })
        .collect())
}

/// Inserts `mutations` into their locked topologies, in the order given, and stages
/// each one's `mutation.enqueued` event (plus `status: pending` for a topology that
/// was idle). Returns the stored rows in the same order.
///
/// Every topology of `mutations` must be in `locked`.
pub(super) async fn insert(
    tx: &mut OutboxTx<'_>,
    locked: &mut HashMap<Uuid, Locked>,
    mutations: &[&NewMutation],
) -> Result<Vec<MutationOut>, sqlx::Error> {
    if mutations.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows = Rows::default();
    for new in mutations {
        let topology = locked
            .get_mut(&new.topology_id)
            .expect("locked by the caller");
        topology.last_seq += 1;
        rows.push(new, topology.last_seq);
    }
    let stored = rows.insert(tx).await?;
    let mut touched: Vec<Uuid> = mutations.iter().map(|m| m.topology_id).collect();
    touched.sort_unstable();
    touched.dedup();
    advance_topologies(tx, locked, &touched).await?;
    let mut events: Vec<Event> = stored
        .iter()
        .zip(mutations)
        .map(|(mutation, new)| enqueued_event(mutation).in_trace(new.trace.as_ref()))
        .collect();
    for id in &touched {
        let topology = locked.get_mut(id).expect("locked by the caller");
        if topology.was_idle {
            topology.was_idle = false;
            let pending = TopologyStatus {
                topology_id: *id,
                version: topology.version,
                status: status::TopologyStatus::Pending,
                last_seq: None,
            };
            // In the trace of the request whose mutation made it pending.
            let first = mutations.iter().find(|m| m.topology_id == *id);
            events.push(
                pending
                    .event(SOURCE)
                    .in_trace(first.and_then(|m| m.trace.as_ref())),
            );
        }
    }
    tx.stage(&events);
    Ok(stored)
}

/// The columns of many mutation rows, for one `unnest` insert.
#[derive(Default)]
struct Rows {
    ids: Vec<Uuid>,
    topologies: Vec<Uuid>,
    seqs: Vec<i64>,
    ops: Vec<Value>,
    if_versions: Vec<Option<i64>>,
    actors: Vec<String>,
    keys: Vec<Option<String>>,
    hashes: Vec<Option<Vec<u8>>>,
    traceparents: Vec<Option<String>>,
    tracestates: Vec<Option<String>>,
}

impl Rows {
    fn push(&mut self, new: &NewMutation, seq: i64) {
        self.ids.push(Uuid::now_v7());
        self.topologies.push(new.topology_id);
        self.seqs.push(seq);
        self.ops.push(Value::Array(new.ops.clone()));
        self.if_versions.push(new.if_version);
        self.actors.push(new.actor.clone());
        self.keys.push(new.key.clone());
        self.hashes.push(new.key.as_ref().map(|_| new.hash.clone()));
        let trace = new.trace.as_ref();
        self.traceparents
            .push(trace.map(|t| t.traceparent().to_owned()));
        self.tracestates
            .push(trace.and_then(|t| t.tracestate()).map(str::to_owned));
    }

    /// One statement for every row; the stored rows come back in the order pushed.
    async fn insert(self, conn: &mut PgConnection) -> Result<Vec<MutationOut>, sqlx::Error> {
        let mut stored = sqlx::query_as!(
            MutationOut,
            r#"insert into mutations
               (id, topology_id, seq, ops, if_version, actor, idempotency_key, request_hash,
                traceparent, tracestate)
             select * from unnest($1::uuid[], $2::uuid[], $3::int8[], $4::jsonb[], $5::int8[],
                                  $6::text[], $7::text[], $8::bytea[], $9::text[], $10::text[])
             returning id, topology_id, seq, status as "status: MutationStatus", ops, if_version,
                       error, applied_version, actor, idempotency_key, created_at, finished_at"#,
            &self.ids,
            &self.topologies,
            &self.seqs,
            &self.ops,
            &self.if_versions as _,
            &self.actors,
            &self.keys as _,
            &self.hashes as _,
            &self.traceparents as _,
            &self.tracestates as _,
        )
        .fetch_all(conn)
        .await?;
        let order: HashMap<Uuid, usize> = self
            .ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i))
            .collect();
        stored.sort_by_key(|m| order[&m.id]);
        Ok(stored)
    }
}

/// Writes each touched topology's new `last_seq` and marks it pending.
async fn advance_topologies(
    conn: &mut PgConnection,
    locked: &HashMap<Uuid, Locked>,
    touched: &[Uuid],
) -> Result<(), sqlx::Error> {
    let last_seqs: Vec<i64> = touched.iter().map(|id| locked[id].last_seq).collect();
    sqlx::query!(
        "update topologies t
         set last_seq = u.last_seq, status = 'pending', updated_at = now()
         from unnest($1::uuid[], $2::int8[]) as u(id, last_seq)
         where t.id = u.id",
        touched,
        &last_seqs,
    )
    .execute(conn)
    .await?;
    Ok(())
}

fn enqueued_event(mutation: &MutationOut) -> Event {
    MutationEnqueued {
        mutation_id: mutation.id,
        topology_id: mutation.topology_id,
        seq: mutation.seq,
        if_version: mutation.if_version,
        ops_count: mutation.ops.as_array().map_or(0, Vec::len),
        reannounced: false,
    }
    .event(SOURCE)
}
