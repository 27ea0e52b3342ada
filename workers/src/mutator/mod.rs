//! The mutator role: applies topology mutations strictly in `seq` order, each exactly
//! once, all operations or none.
//!
//! ## How messages are handled
//! A `topology.{id}.mutation.enqueued` message is a doorbell, not the work itself.
//! The messages pulled together are handled together (`messages.rs`): their
//! topologies drain in transactions across topologies ([`across::run`]), and a
//! message is acked once its mutation is finished; a message for a mutation this
//! process already saw finish costs no query. A topology another transaction holds
//! is drained alone:
//! 1. If its mutation is no longer pending (a duplicate, a redelivery, or a batch
//!    already took it), ack.
//! 2. Otherwise drain the topology: [`batch::run`] repeatedly, each batch one
//!    transaction under the topology's row lock.
//! 3. If another worker holds the topology, nak with a short delay; that worker is
//!    draining the same head, and the retry acks once it has.
//!
//! ## Nothing stays pending forever
//! A mutation that cannot apply (a bad path, a failed `test`, a limit) fails with a
//! reason in its batch. An outage of Postgres or NATS is retried with backoff until it
//! passes. Any other error would fail again on every attempt: the drain isolates the
//! mutation at fault by retrying one at a time, and marks it failed (see
//! [`Mutator::drain_topology`]).
//!
//! Different topologies drain concurrently, up to `concurrency` per process and across
//! every process sharing the durable consumer.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use switchyard_bus::payloads::MutationEnqueued;
use switchyard_bus::{Doorbell, Event};
use switchyard_domain::json::Limits;
use uuid::Uuid;

use crate::WorkerError;
use crate::consumer::{EventHandler, Outcome};

pub mod across;
pub mod apply;
pub mod batch;
mod messages;

pub use messages::FinishedSeqs;

pub use batch::{BatchLimits, BatchResult};

/// Mutator settings (config section `mutator`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MutatorConfig {
    /// Messages handled at once by one process; the messages already pulled, up to
    /// this many, are handled together (one transaction across their topologies).
    pub concurrency: usize,
    /// Mutations applied per transaction (fewer once they hold [`crate::BATCH_BYTES`]).
    pub batch_size: usize,
    /// Batches one message may drain before yielding to other topologies.
    pub max_batches_per_message: usize,
    /// Nak delay when another worker holds the topology.
    #[serde(with = "humantime_serde")]
    pub busy_retry_delay: Duration,
    /// Longest wait for a topology's row lock before reporting it busy.
    #[serde(with = "humantime_serde")]
    pub lock_timeout: Duration,
    /// Upper bound of the retry delay after errors (exponential from 100 ms).
    #[serde(with = "humantime_serde")]
    pub max_retry_delay: Duration,
    /// Unacked messages the shared consumer hands out across the fleet.
    pub max_ack_pending: i64,
}

impl Default for MutatorConfig {
    fn default() -> Self {
        Self {
            concurrency: 512,
            batch_size: 100,
            max_batches_per_message: 20,
            busy_retry_delay: Duration::from_millis(20),
            lock_timeout: Duration::from_millis(250),
            max_retry_delay: Duration::from_secs(30),
            max_ack_pending: 10_000,
        }
    }
}

/// What draining a topology did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Drain {
    /// Mutations that became applied or failed.
    pub finished: usize,
    /// Another worker held the topology when we tried.
    pub busy: bool,
    /// Pending mutations remain (the per-message budget ran out).
    pub more: bool,
}

/// A mutator: cheap to clone, safe to run many of.
#[derive(Clone, Debug)]
pub struct Mutator {
    pub pool: PgPool,
    /// Rung with each committed batch's events.
    pub doorbell: Doorbell,
    pub config: MutatorConfig,
    /// What a document must stay within after every operation
    /// (`documents.max_bytes`, `documents.max_depth`).
    pub limits: Limits,
    /// Topologies' finished seqs this process saw: messages for them need no query.
    pub finished: FinishedSeqs,
}

/// The reason a mutation is given up with when the database refuses to store its
/// outcome (the cause is in the worker's log, not in what clients read).
const NOT_STORABLE: &str = "the mutation could not be applied: storing its outcome failed with an error retrying would not cure (the worker log has the cause)";

impl Mutator {
    /// Drains pending mutations of one topology, batch by batch, within the budget.
    ///
    /// An error that is not an outage would fail the same batch again, so the drain
    /// goes on one mutation at a time to find the one at fault, and marks that one
    /// failed with a reason: it is never retried forever.
    pub async fn drain_topology(&self, topology_id: Uuid) -> Result<Drain, WorkerError> {
        let mut drain = Drain::default();
        let mut limits = BatchLimits {
            size: self.config.batch_size,
            document: self.limits,
            lock_timeout: self.config.lock_timeout,
        };
        for _ in 0..self.config.max_batches_per_message {
            let (result, _announced) = match batch::run(
                &self.pool,
                &self.doorbell,
                topology_id,
                limits,
            )
            .await
            {
                Ok(done) => done,
                Err(error) if error.is_transient() => return Err(error),
                Err(error) if limits.size > 1 => {
                    tracing::warn!(%error, %topology_id, "batch failed; retrying one mutation at a time");
                    limits.size = 1;
                    continue;
                }
                Err(error) => {
                    tracing::error!(%error, %topology_id, "a mutation's outcome cannot be stored; marking it failed");
                    // The one at fault is found: the rest go in full batches again.
                    limits.size = self.config.batch_size;
                    batch::fail_head(
                        &self.pool,
                        &self.doorbell,
                        topology_id,
                        limits.lock_timeout,
                        NOT_STORABLE,
                    )
                    .await?
                }
            };
            match result {
                BatchResult::Busy => {
                    drain.busy = drain.finished == 0;
                    return Ok(drain);
                }
                BatchResult::Committed { finished, more } => {
                    drain.finished += finished;
                    drain.more = more;
                    if !more {
                        return Ok(drain);
                    }
                }
            }
        }
        Ok(drain)
    }

    /// Drains every topology with pending mutations, without the bus. Tests and
    /// one-off maintenance use it to reach a quiescent state deterministically.
    pub async fn run_until_idle(&self) -> Result<usize, WorkerError> {
        let mut finished = 0;
        loop {
            let topologies = sqlx::query_scalar!(
                "select distinct topology_id from mutations where status = 'pending'",
            )
            .fetch_all(&self.pool)
            .await?;
            if topologies.is_empty() {
                return Ok(finished);
            }
            for topology_id in topologies {
                let drain = self.drain_topology(topology_id).await?;
                finished += drain.finished;
                if drain.busy {
                    // Someone else holds it; give them a moment rather than spin.
                    tokio::time::sleep(self.config.busy_retry_delay).await;
                }
            }
        }
    }

    async fn is_pending(&self, mutation_id: Uuid) -> Result<bool, sqlx::Error> {
        let pending = sqlx::query_scalar!(
            r#"select status = 'pending' as "pending!" from mutations where id = $1"#,
            mutation_id,
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(pending.unwrap_or(false))
    }

    /// Drains the topology of `enqueued`, unless its mutation is no longer pending; asks
    /// for a redelivery while it is still pending behind a busy lock or the budget.
    async fn try_handle(&self, enqueued: &MutationEnqueued) -> Result<Outcome, WorkerError> {
        if !self.is_pending(enqueued.mutation_id).await? {
            return Ok(Outcome::Ack);
        }
        let drain = self.drain_topology(enqueued.topology_id).await?;
        // Busy, or the budget ran out before reaching this message's own mutation:
        // come back for it rather than leave it to the reconciler.
        if (drain.busy || drain.more) && self.is_pending(enqueued.mutation_id).await? {
            tracing::debug!(topology_id = %enqueued.topology_id, ?drain, "mutation still pending; retrying later");
            return Ok(Outcome::Retry(self.config.busy_retry_delay));
        }
        Ok(Outcome::Ack)
    }
}

impl EventHandler for Mutator {
    const BATCHES: bool = true;

    fn max_retry_delay(&self) -> Duration {
        self.config.max_retry_delay
    }

    /// Drains the topologies of every pulled message together ([`messages`]).
    async fn handle_events(&self, events: &[(Event, i64)]) -> Vec<Outcome> {
        self.handle_all(events).await
    }

    /// Drains the event's topology, unless its mutation is no longer pending.
    async fn handle_event(&self, event: &Event, _delivered: i64) -> Result<Outcome, WorkerError> {
        let Ok(enqueued) = serde_json::from_value::<MutationEnqueued>(event.data.clone()) else {
            return Ok(Outcome::Reject(format!(
                "event {} has no mutation_id/topology_id",
                event.id
            )));
        };
        self.try_handle(&enqueued).await
    }
}
