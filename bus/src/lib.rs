//! # switchyard-bus
//!
//! Everything that crosses the message bus is defined here, so producers and
//! consumers cannot drift apart.
//!
//! ## What it owns
//! - [`subjects`]: every subject switchyard publishes, built by functions, plus the
//!   deployment [`subjects::Namespace`] (prefix) that lets tenants and tests share a server.
//! - [`envelope`]: the one JSON [`envelope::Event`] with CloudEvents 1.0 attributes.
//! - [`outbox`]: staging events in the caller's Postgres transaction, and the
//!   [`outbox::Doorbell`] a committer rings so the relay publishes right away; every
//!   statement on the outbox (`outbox_commits`, one row per committed transaction).
//! - [`audit`]: the one writer of `audit_log`, called in the same transactions.
//! - [`jetstream`]: connecting, the stream, and the durable consumers, created
//!   idempotently at start-up.
//! - [`trace`]: the W3C trace context events and messages carry, so one trace runs
//!   from a request through the outbox and the bus into the workers.
//!
//! ## Where the data goes next
//! Staged rows are published by the relay (`switchyard-workers`) with
//! `Nats-Msg-Id` = event id; workers consume them through the consumers declared here.

pub mod audit;
pub mod envelope;
pub mod jetstream;
pub mod outbox;
pub mod payloads;
pub mod subjects;
pub mod trace;

pub use envelope::{Event, EventType, Source};
pub use jetstream::{Bus, BusConfig, BusError, ConsumerBacklog, ConsumerRole};
pub use outbox::{Commit, Doorbell, DoorbellReceiver, OutboxTx};
pub use payloads::Payload;
pub use subjects::Namespace;
pub use trace::TraceContext;
