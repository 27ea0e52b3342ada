//! What the workers record through the `metrics` facade: the work each role commits
//! (`switchyard_work_total`) and the graph nodes the migrator moves
//! (`switchyard_migration_nodes_total`). Names and help texts are in
//! `switchyard_domain::metrics`; the process installs the recorder and serves
//! `/metrics`. Each call comes after the transaction it counts has committed, so a
//! rolled-back or fenced-out attempt is never counted.

use switchyard_domain::metrics::{self as catalogue, Outcome, Resource};

/// Counts `count` units of committed work.
pub(crate) fn work(resource: Resource, outcome: Outcome, count: usize) {
    if count == 0 {
        return;
    }
    metrics::counter!(
        catalogue::WORK.name,
        "resource" => resource.as_str(),
        "outcome" => outcome.as_str(),
    )
    .increment(count as u64);
}

/// Counts `count` graph nodes migrated in a committed batch.
pub(crate) fn nodes_migrated(count: usize) {
    metrics::counter!(catalogue::MIGRATION_NODES.name).increment(count as u64);
}
