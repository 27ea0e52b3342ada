//! # switchyard-domain
//!
//! The rules every other crate applies the same way, below the API, the bus and the
//! workers, so none of them can drift from another.
//!
//! ## What it owns
//! - [`json`]: JSON value equality (RFC 6902 §4.6: numbers by value), the canonical
//!   form equal values share, and the limits a stored document must keep (size, depth,
//!   number range).
//! - [`patch`]: RFC 6902 JSON Patch, applied all-or-nothing with every limit checked
//!   as each operation applies, plus the checks an operation must pass on arrival.
//! - [`faults`]: which database errors are an outage (retry later) and which will
//!   fail the same way again.
//! - [`status`]: every status and kind a row or an event carries (mutation, topology,
//!   interface change and its two types, migration run, graph, read-only reason), one
//!   enum each, stored as text and serialized with the same names.
//! - [`steps`]: the plugin migration step language (validated by the API when a
//!   version is registered, applied to node data by the migrator).
//! - [`metrics`]: the catalogue of Prometheus metrics (names, kinds, labels, help)
//!   that the API and the workers record and `/metrics` serves.
//!
//! ## What it does not do
//! No I/O: callers read and write Postgres and NATS, and call in here to decide.

pub mod faults;
pub mod forge;
pub mod json;
pub mod metrics;
pub mod patch;
pub mod status;
pub mod steps;
