//! The end-to-end tests, in one test binary with a module per resource or concern:
//! each starts the fleet (in-process through [`harness`], or the real binary) against
//! its own database, stream and subject prefix, and talks HTTP, SSE and NATS to it.

mod harness;

mod api;
mod auth;
mod batching;
mod browser;
mod cli;
mod compose;
mod credentials;
mod dashboard;
mod events;
mod forge;
mod graphs;
mod limits;
mod mcp;
mod metrics;
mod migration_exits;
mod mutations;
mod nats_cluster;
mod nats_outage;
mod nats_server;
mod postgres_outage;
mod quick_start;
mod readme;
mod recovery;
mod registry;
mod requests;
mod tracing;
