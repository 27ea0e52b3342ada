//! Applying across topologies: one transaction drains the pending heads of many
//! topologies, so a load spread over 200 topologies commits in a few large
//! transactions instead of 200 small ones.
//!
//! Each topology is still claimed by its row lock (`for no key update`), the same
//! claim [`super::batch`] takes, so there is one holder per topology across the fleet.
//! Here the locks are taken with `skip locked`: a topology another transaction holds
//! (an enqueue committing, another mutator) is reported [`Across::held`] and left to
//! the caller, which drains it alone, waiting for its lock. Nothing waits on a lock
//! inside a multi-topology transaction, so two of them can never deadlock.
//!
//! Within a topology, mutations apply in seq order exactly as in a single batch
//! ([`super::batch::Outcome::apply`]); every outcome, audit row, topology row and
//! event of every topology commits together ([`super::batch::commit_all`]).

use std::collections::HashMap;

use futures::TryStreamExt;
use sqlx::{PgConnection, PgPool};
use switchyard_bus::{Doorbell, OutboxTx};
use switchyard_domain::json;
use switchyard_domain::status;
use uuid::Uuid;

use super::apply::PendingMutation;
use super::batch::{self, BatchLimits, LockedTopology, Outcome};
use crate::{BATCH_BYTES, WorkerError};

/// Most mutations one transaction across topologies applies: it holds its
/// topologies' locks (which enqueues wait for) and its outbox row grows with it.
pub const MAX_MUTATIONS: usize = 2048;

/// Most topologies one transaction across topologies locks.
pub const MAX_TOPOLOGIES: usize = 256;

/// What one transaction across topologies did.
#[derive(Debug, Default)]
pub struct Across {
    /// Each topology it held: the highest seq it finished (`None`: nothing was
    /// pending) and whether pending mutations remain.
    pub drained: HashMap<Uuid, Drained>,
    /// Topologies another transaction held; untouched.
    pub held: Vec<Uuid>,
}

/// One topology's part in an [`Across`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drained {
    /// Every mutation up to this seq is finished (applied or failed).
    pub through: Option<i64>,
    /// How many this transaction finished.
    pub finished: usize,
    /// Pending mutations remain (the batch size or the byte budget ran out).
    pub more: bool,
}

impl Drained {
    /// Nothing finished; `more` says whether it still has pending mutations.
    fn untouched(more: bool) -> Self {
        Self {
            through: None,
            finished: 0,
            more,
        }
    }
}

/// Applies the pending heads of `topologies` (up to `limits.size` mutations each) in
/// one transaction and hands its events to the relay once committed.
pub async fn run(
    pool: &PgPool,
    doorbell: &Doorbell,
    topologies: &[Uuid],
    limits: BatchLimits,
) -> Result<Across, WorkerError> {
    let mut tx = OutboxTx::begin(pool).await?;
    let (locked, deferred) = lock(&mut tx, topologies).await?;
    let mut across = Across {
        held: held(topologies, &locked, &deferred),
        ..Across::default()
    };
    for id in &deferred {
        across.drained.insert(*id, Drained::untouched(true));
    }
    let ids: Vec<Uuid> = locked.iter().map(|(id, _)| *id).collect();
    let mut pending = load_pending(&mut tx, &ids, limits.size).await?;
    let mut outcomes = Vec::with_capacity(locked.len());
    for (id, topology) in &locked {
        let (mutations, more) = pending.remove(id).unwrap_or_default();
        let idle = topology.status == status::TopologyStatus::Idle;
        if mutations.is_empty() && (more || idle) {
            // Cut off by the byte budget (more), or nothing to do: leave it as it is.
            across.drained.insert(*id, Drained::untouched(more));
            continue;
        }
        // Pending work, or a topology still marked pending with none left (it goes idle).
        outcomes.push(Outcome::apply(
            *id,
            topology,
            mutations,
            more,
            &limits.document,
        ));
    }
    batch::commit_all(tx, doorbell, &outcomes).await?;
    for outcome in &outcomes {
        let drained = Drained {
            through: outcome.last_seq(),
            finished: outcome.finished.len(),
            more: outcome.more,
        };
        across.drained.insert(outcome.topology_id, drained);
    }
    Ok(across)
}

/// The topologies neither locked nor deferred: another transaction holds them (or
/// they no longer exist, which draining alone finds out).
fn held(asked: &[Uuid], locked: &[(Uuid, LockedTopology)], deferred: &[Uuid]) -> Vec<Uuid> {
    let mine: std::collections::HashSet<&Uuid> =
        locked.iter().map(|(id, _)| id).chain(deferred).collect();
    let mut held: Vec<Uuid> = asked
        .iter()
        .filter(|id| !mine.contains(id))
        .copied()
        .collect();
    held.sort_unstable();
    held.dedup();
    held
}

/// Locks every free topology of `ids`, skipping those another transaction holds.
/// Documents are read until they hold [`BATCH_BYTES`]; topologies locked past that
/// are returned as deferred (untouched this time), so memory never depends on how
/// many large documents one batch meets.
async fn lock(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<(Vec<(Uuid, LockedTopology)>, Vec<Uuid>), sqlx::Error> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut rows = sqlx::query!(
        r#"select id, document::text as "document!", version,
                  status as "status: status::TopologyStatus"
         from topologies where id = any($1) order by id
         for no key update skip locked"#,
        &ids,
    )
    .fetch(conn);
    let (mut locked, mut deferred, mut bytes) = (Vec::new(), Vec::new(), 0);
    while let Some(row) = rows.try_next().await? {
        if bytes >= BATCH_BYTES {
            deferred.push(row.id);
            continue;
        }
        bytes += row.document.len();
        let topology = LockedTopology {
            document: row.document,
            version: row.version,
            status: row.status,
        };
        locked.push((row.id, topology));
    }
    Ok((locked, deferred))
}

/// Each topology's pending head in seq order, up to `size` mutations, and whether
/// more are pending; read as a stream, and cut short once the operations read hold
/// [`BATCH_BYTES`] or number [`MAX_MUTATIONS`] (a topology cut short, and any not
/// reached, report more pending).
async fn load_pending(
    conn: &mut PgConnection,
    ids: &[Uuid],
    size: usize,
) -> Result<HashMap<Uuid, (Vec<PendingMutation>, bool)>, sqlx::Error> {
    let mut heads: HashMap<Uuid, (Vec<PendingMutation>, bool)> = HashMap::new();
    let mut rows = sqlx::query!(
        r#"select p.topology_id as "topology_id!", p.id as "id!", p.seq as "seq!",
                  p.ops as "ops!", p.if_version, p.actor as "actor!", p.traceparent, p.tracestate
         from unnest($1::uuid[]) as t(id)
         cross join lateral (
             select m.topology_id, m.id, m.seq, m.ops, m.if_version, m.actor, m.traceparent,
                    m.tracestate
             from mutations m
             where m.topology_id = t.id and m.status = 'pending'
             order by m.seq limit $2
         ) p
         order by p.topology_id, p.seq"#,
        ids,
        size as i64 + 1,
    )
    .fetch(conn);
    let (mut bytes, mut taken) = (0, 0);
    while let Some(row) = rows.try_next().await? {
        let head = heads.entry(row.topology_id).or_default();
        if head.0.len() == size || bytes >= BATCH_BYTES || taken == MAX_MUTATIONS {
            head.1 = true;
            continue;
        }
        bytes += json::encoded_len(&row.ops);
        taken += 1;
        head.0.push(PendingMutation {
            id: row.id,
            seq: row.seq,
            ops: row.ops,
            if_version: row.if_version,
            actor: row.actor,
            traceparent: row.traceparent,
            tracestate: row.tracestate,
        });
    }
    Ok(heads)
}
