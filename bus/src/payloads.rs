//! The `data` of each event type, typed, so producers and consumers share one
//! definition. Fields are only ever added (consumers ignore unknown fields), which
//! keeps old and new processes compatible during a rolling upgrade.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Event, EventType, subjects};

/// `mutation.enqueued`: a mutation waits to be applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MutationEnqueued {
    pub mutation_id: Uuid,
    pub topology_id: Uuid,
    pub seq: i64,
    pub if_version: Option<i64>,
    pub ops_count: usize,
    /// Set by the reconciler when it announces a mutation again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reannounced: bool,
}

/// `mutation.applied`: the topology moved to `version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MutationApplied {
    pub mutation_id: Uuid,
    pub topology_id: Uuid,
    pub seq: i64,
    /// Always `applied`; lets a client treat applied and failed events alike.
    pub status: String,
    pub version: i64,
}

/// `mutation.failed`: the mutation could not apply; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MutationFailed {
    pub mutation_id: Uuid,
    pub topology_id: Uuid,
    pub seq: i64,
    /// Always `failed`.
    pub status: String,
    pub error: String,
}

/// `status`: a topology's version and status after a committed change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyStatus {
    pub topology_id: Uuid,
    pub version: i64,
    /// `idle` or `pending`.
    pub status: String,
    /// The highest seq that finished (applied or failed) in the change, if any.
    pub last_seq: Option<i64>,
}

impl MutationEnqueued {
    pub fn event(&self, source: &str) -> Event {
        Event::new(
            EventType::MutationEnqueued,
            source,
            subjects::mutation_enqueued(self.topology_id),
            to_data(self),
        )
    }
}

impl MutationApplied {
    pub fn event(&self, source: &str) -> Event {
        Event::new(
            EventType::MutationApplied,
            source,
            subjects::mutation_applied(self.topology_id),
            to_data(self),
        )
    }
}

impl MutationFailed {
    pub fn event(&self, source: &str) -> Event {
        Event::new(
            EventType::MutationFailed,
            source,
            subjects::mutation_failed(self.topology_id),
            to_data(self),
        )
    }
}

impl TopologyStatus {
    pub fn event(&self, source: &str) -> Event {
        Event::new(
            EventType::TopologyStatus,
            source,
            subjects::topology_status(self.topology_id),
            to_data(self),
        )
    }
}

fn to_data(payload: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(payload).expect("payloads always serialize")
}
