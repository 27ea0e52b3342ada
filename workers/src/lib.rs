//! # switchyard-workers
//!
//! The roles that do the work the API only records.
//!
//! ## Roles
//! - [`mutator`]: consumes `topology.*.mutation.enqueued`, applies pending mutations
//!   of a topology in `seq` order, and commits outcome + audit row + events together.
//! - [`migrator`]: consumes `graph.*.migration.requested` and migrates a graph's
//!   nodes to a new plugin schema version in fenced batches, resumable after a crash.
//! - [`notifier`]: consumes `interface.*.published` and writes one inbox message per
//!   affected repo plus a milestone on the origin repo, exactly once.
//! - [`relay`]: publishes outbox rows to JetStream, right after commit (doorbell) and
//!   by sweeping rows left behind.
//! - [`forge`]: consumes `forge.*.*.changed` and keeps the forge metadata cache (RFCs,
//!   branches, pull requests) as Gitea has them; its sweep catches missed webhooks.
//! - [`reconciler`]: re-announces work that sat pending too long and trims the outbox.
//!
//! [`metrics`] counts what the roles commit, for the process's `/metrics`.
//!
//! [`consumer`] is the pull loop every bus-driven role shares: bounded concurrency,
//! ack/nak/term by [`consumer::Outcome`], errors settled in one place
//! ([`consumer::settled`]), and a bounded drain on shutdown. [`spans`] are the spans
//! that handling runs in, each in the trace its work came with.
//!
//! ## Where the data goes next
//! Every outcome is staged in the outbox in the transaction that records it
//! (`bus::OutboxTx`), and the relay publishes it: `topology.{id}.mutation.*` and
//! `.status` (mutator), `repo.{slug}.inbox` and `.progress` (notifier),
//! `graph.{slug}.migration.*` (migrator), `rfc.{slug}.*` (forge), and re-announcements (reconciler).

use switchyard_domain::faults;

/// Most stored data (JSON, as encoded) one batch holds in memory: a mutator's pending
/// operations, a migrator's nodes. Batches also stop at their count
/// (`mutator.batch_size`, `migrator.batch_size`), whichever comes first, and always
/// take at least one item.
pub const BATCH_BYTES: usize = 8 * 1024 * 1024;

pub mod consumer;
pub mod forge;
mod metrics;
pub mod migrator;
pub mod mutator;
pub mod notifier;
pub mod reconciler;
pub mod relay;
pub mod spans;

/// Errors a worker meets while doing work. Every unit of work is one transaction, so
/// none of them leaves anything half-written. [`WorkerError::is_transient`] splits
/// them: an outage is retried with backoff until it passes; anything else would fail
/// the same way again, so the role gives the work up with a reason (a failed
/// mutation, a failed migration run) rather than retry it forever.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Bus(#[from] switchyard_bus::BusError),
    /// Another worker took the work over; it carries on.
    #[error("fenced out: {0}")]
    Fenced(String),
    #[error("{0} events were not acknowledged by JetStream")]
    Unpublished(usize),
    /// Gitea could not be read (the forge role).
    #[error(transparent)]
    Gitea(#[from] forge::GiteaError),
    /// Stored data the work needs cannot be used (it does not parse as what it must be).
    #[error("corrupt: {0}")]
    Corrupt(String),
}

impl WorkerError {
    /// Whether retrying later may succeed: the database or the bus was unreachable or
    /// busy, or another worker holds the work ([`faults::is_transient`]). A statement
    /// that ran past `statement_timeout` is not: the same work would again.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Database(error) => {
                faults::is_transient(error) && !faults::is_statement_timeout(error)
            }
            Self::Bus(_) | Self::Fenced(_) | Self::Unpublished(_) => true,
            Self::Gitea(error) => error.is_transient(),
            Self::Corrupt(_) => false,
        }
    }
}
