//! The one event envelope: CloudEvents 1.0 attributes around a JSON `data` payload.
//!
//! The envelope's `id` is a UUIDv7 and doubles as the JetStream `Nats-Msg-Id`, so a
//! re-published event is dropped by the stream's duplicate window and recognised by
//! idempotent consumers.
//!
//! It also carries the CloudEvents Distributed Tracing extension: `traceparent` and
//! `tracestate`, the W3C trace context of the span that produced the event (see
//! [`crate::trace`]). Both are optional; an event stored without them still reads.

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

/// Declares [`EventType`] from one list of `Variant => "type"`, so its variants,
/// [`EventType::ALL`] and [`EventType::as_str`] cannot disagree.
macro_rules! event_types {
    ($($variant:ident => $name:literal,)+) => {
        /// The kinds of event switchyard emits; the string form is the CloudEvents `type`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum EventType {
            $($variant,)+
        }

        impl EventType {
            /// Every kind, in declaration order (a browser's `EventSource` needs each
            /// name it listens for).
            pub const ALL: &[Self] = &[$(Self::$variant,)+];

            /// The CloudEvents `type`, also the SSE `event:` name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                }
            }
        }
    };
}

event_types! {
    MutationEnqueued => "mutation.enqueued",
    MutationApplied => "mutation.applied",
    MutationFailed => "mutation.failed",
    TopologyStatus => "status",
    InterfaceDraft => "interface.draft",
    InterfacePublished => "interface.published",
    InterfaceResolved => "interface.resolved",
    InboxMessage => "inbox.message",
    InboxRead => "inbox.read",
    Progress => "progress",
    RepoUpdated => "repo.updated",
    MigrationRequested => "migration.requested",
    MigrationRunning => "migration.running",
    MigrationProgress => "migration.progress",
    MigrationSucceeded => "migration.succeeded",
    MigrationFailed => "migration.failed",
    MigrationCancelRequested => "migration.cancel_requested",
    MigrationCancelled => "migration.cancelled",
    GraphCreated => "graph.created",
    NodesWritten => "nodes.written",
    PluginVersion => "plugin.version",
    ForgeChanged => "forge.changed",
    ForgeSweepRequested => "forge.sweep.requested",
    ForgeSweepProgress => "forge.sweep.progress",
    ForgeSweepFinished => "forge.sweep.finished",
    ForgeParseError => "forge.parse_error",
    RfcUpdated => "rfc.updated",
    RfcBranchCreated => "rfc.branch.created",
    RfcBranchUpdated => "rfc.branch.updated",
    RfcBranchDeleted => "rfc.branch.deleted",
    RfcPullOpened => "rfc.pull.opened",
    RfcPullUpdated => "rfc.pull.updated",
    RfcPullMerged => "rfc.pull.merged",
    RfcPullClosed => "rfc.pull.closed",
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
    /// W3C `traceparent` of the span that produced the event (CloudEvents Distributed
    /// Tracing extension); absent when unknown. Set through [`crate::trace`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// W3C `tracestate` that goes with `traceparent`, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

impl Event {
    /// A new event with a fresh UUIDv7 id, stamped now, without trace context (the
    /// outbox adds the current span's when it is staged).
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
            traceparent: None,
            tracestate: None,
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
