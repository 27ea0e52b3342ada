//! The one event envelope: CloudEvents 1.0 attributes around a JSON `data` payload.
//!
//! The envelope's `id` is a UUIDv7 and doubles as the JetStream `Nats-Msg-Id`, so a
//! re-published event is dropped by the stream's duplicate window and recognised by
//! idempotent consumers.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Which part of switchyard produced an event: the CloudEvents `source`, also the
/// actor of the audit rows a worker writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Api,
    Mutator,
    Notifier,
    Migrator,
    Reconciler,
    Forge,
}

impl Source {
    /// The CloudEvents `source`: `switchyard/api`, `switchyard/mutator`, ….
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Api => "switchyard/api",
            Self::Mutator => "switchyard/mutator",
            Self::Notifier => "switchyard/notifier",
            Self::Migrator => "switchyard/migrator",
            Self::Reconciler => "switchyard/reconciler",
            Self::Forge => "switchyard/forge",
        }
    }
}

/// The kinds of event switchyard emits; the string form is the CloudEvents `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    MutationEnqueued,
    MutationApplied,
    MutationFailed,
    TopologyStatus,
    InterfaceDraft,
    InterfacePublished,
    InterfaceResolved,
    InboxMessage,
    InboxRead,
    Progress,
    RepoUpdated,
    MigrationRequested,
    MigrationRunning,
    MigrationProgress,
    MigrationSucceeded,
    MigrationFailed,
    MigrationCancelRequested,
    MigrationCancelled,
    GraphCreated,
    NodesWritten,
    PluginVersion,
    ForgeChanged,
    ForgeSweepRequested,
    ForgeSweepProgress,
    ForgeSweepFinished,
    ForgeParseError,
    RfcUpdated,
    RfcBranchCreated,
    RfcBranchUpdated,
    RfcBranchDeleted,
    RfcPullOpened,
    RfcPullUpdated,
    RfcPullMerged,
    RfcPullClosed,
}

impl EventType {
    /// Every kind, in declaration order (a browser's `EventSource` needs each name
    /// it listens for).
    pub const ALL: [Self; 34] = [
        Self::MutationEnqueued,
        Self::MutationApplied,
        Self::MutationFailed,
        Self::TopologyStatus,
        Self::InterfaceDraft,
        Self::InterfacePublished,
        Self::InterfaceResolved,
        Self::InboxMessage,
        Self::InboxRead,
        Self::Progress,
        Self::RepoUpdated,
        Self::MigrationRequested,
        Self::MigrationRunning,
        Self::MigrationProgress,
        Self::MigrationSucceeded,
        Self::MigrationFailed,
        Self::MigrationCancelRequested,
        Self::MigrationCancelled,
        Self::GraphCreated,
        Self::NodesWritten,
        Self::PluginVersion,
        Self::ForgeChanged,
        Self::ForgeSweepRequested,
        Self::ForgeSweepProgress,
        Self::ForgeSweepFinished,
        Self::ForgeParseError,
        Self::RfcUpdated,
        Self::RfcBranchCreated,
        Self::RfcBranchUpdated,
        Self::RfcBranchDeleted,
        Self::RfcPullOpened,
        Self::RfcPullUpdated,
        Self::RfcPullMerged,
        Self::RfcPullClosed,
    ];

    /// The CloudEvents `type`, also the SSE `event:` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MutationEnqueued => "mutation.enqueued",
            Self::MutationApplied => "mutation.applied",
            Self::MutationFailed => "mutation.failed",
            Self::TopologyStatus => "status",
            Self::InterfaceDraft => "interface.draft",
            Self::InterfacePublished => "interface.published",
            Self::InterfaceResolved => "interface.resolved",
            Self::InboxMessage => "inbox.message",
            Self::InboxRead => "inbox.read",
            Self::Progress => "progress",
            Self::RepoUpdated => "repo.updated",
            Self::MigrationRequested => "migration.requested",
            Self::MigrationRunning => "migration.running",
            Self::MigrationProgress => "migration.progress",
            Self::MigrationSucceeded => "migration.succeeded",
            Self::MigrationFailed => "migration.failed",
            Self::MigrationCancelRequested => "migration.cancel_requested",
            Self::MigrationCancelled => "migration.cancelled",
            Self::GraphCreated => "graph.created",
            Self::NodesWritten => "nodes.written",
            Self::PluginVersion => "plugin.version",
            Self::ForgeChanged => "forge.changed",
            Self::ForgeSweepRequested => "forge.sweep.requested",
            Self::ForgeSweepProgress => "forge.sweep.progress",
            Self::ForgeSweepFinished => "forge.sweep.finished",
            Self::ForgeParseError => "forge.parse_error",
            Self::RfcUpdated => "rfc.updated",
            Self::RfcBranchCreated => "rfc.branch.created",
            Self::RfcBranchUpdated => "rfc.branch.updated",
            Self::RfcBranchDeleted => "rfc.branch.deleted",
            Self::RfcPullOpened => "rfc.pull.opened",
            Self::RfcPullUpdated => "rfc.pull.updated",
            Self::RfcPullMerged => "rfc.pull.merged",
            Self::RfcPullClosed => "rfc.pull.closed",
        }
    }
}

/// A CloudEvents 1.0 event in structured JSON mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Always `"1.0"`.
    pub specversion: String,
    /// UUIDv7; also the `Nats-Msg-Id` used for de-duplication.
    pub id: Uuid,
    /// For example `mutation.applied`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The producing role, for example `switchyard/api` or `switchyard/mutator`.
    pub source: String,
    /// The logical subject (no deployment prefix), e.g. `topology.{id}.status`.
    pub subject: String,
    /// When the state change committed (to the producer's clock).
    pub time: DateTime<Utc>,
    /// Always `application/json`.
    pub datacontenttype: String,
    /// The event-specific payload.
    pub data: serde_json::Value,
}

impl Event {
    /// A new event with a fresh UUIDv7 id, stamped now.
    pub fn new(kind: EventType, source: Source, subject: String, data: serde_json::Value) -> Self {
        Self {
            specversion: "1.0".to_owned(),
            id: Uuid::now_v7(),
            kind: kind.as_str().to_owned(),
            source: source.as_str().to_owned(),
            subject,
            time: Utc::now(),
            datacontenttype: "application/json".to_owned(),
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_with_cloudevents_attribute_names() {
        let event = Event::new(
            EventType::MutationApplied,
            Source::Mutator,
            "topology.x.mutation.applied".into(),
            serde_json::json!({"seq": 1}),
        );
        let json = serde_json::to_value(&event).unwrap();
        for key in [
            "specversion",
            "id",
            "type",
            "source",
            "subject",
            "time",
            "data",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert_eq!(json["type"], "mutation.applied");
        assert_eq!(event.id.get_version_num(), 7);
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }
}
