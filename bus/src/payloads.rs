//! The `data` of each event type, typed, so producers and consumers share one
//! definition. Fields are only ever added (consumers ignore unknown fields), which
//! keeps old and new processes compatible during a rolling upgrade.

use serde::{Deserialize, Serialize};
use switchyard_domain::status::{
    self, BranchState, ChangeStatus, ChangeType, InterfaceType, MutationStatus, OpenedBySource,
    ProgressKind, PullKind, PullState, SweepTrigger,
};
use uuid::Uuid;

use crate::{Event, EventType, Source, subjects};

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
    pub status: MutationStatus,
    pub version: i64,
}

/// `mutation.failed`: the mutation could not apply; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MutationFailed {
    pub mutation_id: Uuid,
    pub topology_id: Uuid,
    pub seq: i64,
    /// Always `failed`.
    pub status: MutationStatus,
    pub error: String,
}

/// `status`: a topology's version and status after a committed change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyStatus {
    pub topology_id: Uuid,
    pub version: i64,
    /// `idle` or `pending`.
    pub status: status::TopologyStatus,
    /// The highest seq that finished (applied or failed) in the change, if any.
    pub last_seq: Option<i64>,
}

impl Payload for MutationEnqueued {
    fn route(&self) -> (EventType, String) {
        (
            EventType::MutationEnqueued,
            subjects::mutation_enqueued(self.topology_id),
        )
    }
}

impl Payload for MutationApplied {
    fn route(&self) -> (EventType, String) {
        (
            EventType::MutationApplied,
            subjects::mutation_applied(self.topology_id),
        )
    }
}

impl Payload for MutationFailed {
    fn route(&self) -> (EventType, String) {
        (
            EventType::MutationFailed,
            subjects::mutation_failed(self.topology_id),
        )
    }
}

impl Payload for TopologyStatus {
    fn route(&self) -> (EventType, String) {
        (
            EventType::TopologyStatus,
            subjects::topology_status(self.topology_id),
        )
    }
}

/// `interface.published` / `interface.resolved`: an interface change moved on in its
/// lifecycle. Carries what the notifier and a dashboard need without a lookup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceChanged {
    pub interface_change_id: Uuid,
    pub repo_slug: String,
    pub title: String,
    pub interface_type: InterfaceType,
    pub change_type: ChangeType,
    /// `draft`, `published` or `resolved`: which event this is.
    pub status: ChangeStatus,
    pub affected_repo_slugs: Vec<String>,
}

impl Payload for InterfaceChanged {
    fn route(&self) -> (EventType, String) {
        let id = self.interface_change_id;
        match self.status {
            ChangeStatus::Draft => (EventType::InterfaceDraft, subjects::interface_draft(id)),
            ChangeStatus::Published => (
                EventType::InterfacePublished,
                subjects::interface_published(id),
            ),
            ChangeStatus::Resolved => (
                EventType::InterfaceResolved,
                subjects::interface_resolved(id),
            ),
        }
    }
}

/// `inbox.message`: a message arrived in a repo's inbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxMessageCreated {
    pub message_id: Uuid,
    pub repo_slug: String,
    pub from_repo_slug: String,
    pub interface_change_id: Uuid,
    pub subject: String,
}

impl Payload for InboxMessageCreated {
    fn route(&self) -> (EventType, String) {
        (
            EventType::InboxMessage,
            subjects::repo_inbox(&self.repo_slug),
        )
    }
}

/// `inbox.read`: a repo's inbox message was marked read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxMessageRead {
    pub message_id: Uuid,
    pub repo_slug: String,
}

impl Payload for InboxMessageRead {
    fn route(&self) -> (EventType, String) {
        (
            EventType::InboxRead,
            subjects::repo_inbox_read(&self.repo_slug),
        )
    }
}

/// `repo.updated`: a repo was registered, edited or archived.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoUpdated {
    pub repo_slug: String,
    /// `registered`, `edited` or `archived`.
    pub action: String,
}

impl Payload for RepoUpdated {
    fn route(&self) -> (EventType, String) {
        (
            EventType::RepoUpdated,
            subjects::repo_updated(&self.repo_slug),
        )
    }
}

/// `progress`: a progress event was recorded on a repo.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgressRecorded {
    pub progress_id: Uuid,
    pub repo_slug: String,
    pub kind: ProgressKind,
    pub summary: String,
    pub detail: serde_json::Value,
}

impl Payload for ProgressRecorded {
    fn route(&self) -> (EventType, String) {
        (
            EventType::Progress,
            subjects::repo_progress(&self.repo_slug),
        )
    }
}

/// Where a migration run is, as its events say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationPhase {
    Requested,
    Running,
    Progress,
    Succeeded,
    Failed,
    /// An operator asked a running run to stop; it stops at its next batch boundary.
    CancelRequested,
    /// Cancelled: pending or failed (by the API), or running (by its migrator).
    Cancelled,
}

impl MigrationPhase {
    fn event_type(self) -> (EventType, &'static str) {
        match self {
            Self::Requested => (EventType::MigrationRequested, "requested"),
            Self::Running => (EventType::MigrationRunning, "running"),
            Self::Progress => (EventType::MigrationProgress, "progress"),
            Self::Succeeded => (EventType::MigrationSucceeded, "succeeded"),
            Self::Failed => (EventType::MigrationFailed, "failed"),
            Self::CancelRequested => (EventType::MigrationCancelRequested, "cancel_requested"),
            Self::Cancelled => (EventType::MigrationCancelled, "cancelled"),
        }
    }
}

/// `migration.*`: a graph migration run moved on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationChanged {
    pub run_id: Uuid,
    pub graph_slug: String,
    pub phase: MigrationPhase,
    pub from_version: i32,
    pub to_version: i32,
    /// Nodes migrated so far, of `total`.
    pub processed: i64,
    pub total: i64,
    /// Why it failed (failed only): the step and the node, nothing internal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Payload for MigrationChanged {
    fn route(&self) -> (EventType, String) {
        let (kind, phase) = self.phase.event_type();
        (kind, subjects::graph_migration(&self.graph_slug, phase))
    }
}

/// What happened to a graph, as its event says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GraphAction {
    Created,
    NodesWritten,
}

impl GraphAction {
    /// The name the event carries and the audit trail records.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::NodesWritten => "nodes_written",
        }
    }
}

/// `graph.created` / `nodes.written`: a graph was created, or nodes were written to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphChanged {
    pub graph_slug: String,
    /// `created` or `nodes_written`.
    pub action: GraphAction,
    pub schema_version: i32,
    /// Nodes written (`nodes_written` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<usize>,
}

impl Payload for GraphChanged {
    fn route(&self) -> (EventType, String) {
        match self.action {
            GraphAction::Created => (
                EventType::GraphCreated,
                subjects::graph_created(&self.graph_slug),
            ),
            GraphAction::NodesWritten => (
                EventType::NodesWritten,
                subjects::graph_nodes_written(&self.graph_slug),
            ),
        }
    }
}

/// `plugin.version`: a plugin was registered (at its last version) or got a version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginVersioned {
    pub plugin: String,
    pub version: i32,
}

impl Payload for PluginVersioned {
    fn route(&self) -> (EventType, String) {
        (
            EventType::PluginVersion,
            subjects::plugin_version(&self.plugin),
        )
    }
}

/// Why a forge repo is to be read again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForgeTrigger {
    /// A verified Gitea webhook delivery.
    Webhook,
    /// The meta repo named a repo for an RFC that was not read yet (it graduated).
    Graduated,
    /// An action was recorded in the actions log: `opened_by` may resolve anew.
    Action,
}

/// `forge.changed`: repo `owner/name` must be read from Gitea again. The forge role's
/// work; the repo is read only after its refresh claim is held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgeChanged {
    /// Repo owner, lower case.
    pub owner: String,
    /// Repo name, lower case.
    pub name: String,
    pub trigger: ForgeTrigger,
    /// `X-Gitea-Event` (`push`, `pull_request`, `create`, `delete`, …); webhooks only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitea_event: Option<String>,
    /// `X-Gitea-Delivery`; webhooks only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
}

impl Payload for ForgeChanged {
    fn route(&self) -> (EventType, String) {
        (
            EventType::ForgeChanged,
            subjects::forge_changed(&self.owner, &self.name),
        )
    }
}

/// Where a sweep of the forge cache is, as its events say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepPhase {
    /// Asked for (`POST /forge/reconcile`, `POST /forge/rebuild`): the forge role's work.
    Requested,
    /// One more repo read (the meta repo first).
    Progress,
    Finished,
}

/// `forge.sweep.*`: a sweep was requested, read one more repo, or finished.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgeSweep {
    pub sweep_id: uuid::Uuid,
    pub trigger: SweepTrigger,
    pub phase: SweepPhase,
    /// Repos read so far (the meta repo included), of `repos_total` (known once the
    /// meta repo is read; 0 before).
    pub repos_done: usize,
    pub repos_total: usize,
    /// Cache rows changed so far.
    pub changes: usize,
    /// Repos that could not be read so far.
    pub unreachable: usize,
}

impl Payload for ForgeSweep {
    fn route(&self) -> (EventType, String) {
        let (kind, phase) = match self.phase {
            SweepPhase::Requested => (EventType::ForgeSweepRequested, "requested"),
            SweepPhase::Progress => (EventType::ForgeSweepProgress, "progress"),
            SweepPhase::Finished => (EventType::ForgeSweepFinished, "finished"),
        };
        (kind, subjects::forge_sweep(phase))
    }
}

/// `forge.parse_error`: an entry of the meta repo does not read as an RFC (`error`
/// says why), or reads again (`error` null: the parse error cleared).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgeParseError {
    /// Owner and name of the meta repo, lower case.
    pub owner: String,
    pub name: String,
    /// The entry's path, e.g. `rfcs/graph-cache.md`.
    pub path: String,
    pub blob_sha: Option<String>,
    pub error: Option<String>,
}

impl Payload for ForgeParseError {
    fn route(&self) -> (EventType, String) {
        (
            EventType::ForgeParseError,
            subjects::forge_parse_error(&self.owner, &self.name),
        )
    }
}

/// `rfc.updated`: a cached RFC changed: its entry in the meta repo (created, edited,
/// gone missing upstream, back) or its own repo's `RFC.md`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RfcUpdated {
    pub slug: String,
    pub title: String,
    pub state: String,
    /// The entry's path in the meta repo and its blob sha.
    pub path: String,
    pub blob_sha: String,
    /// The entry is gone from `rfcs/`; the cached RFC is kept.
    pub missing_upstream: bool,
    /// The blob sha of the RFC repo's `RFC.md`, once read.
    pub document_sha: Option<String>,
}

impl Payload for RfcUpdated {
    fn route(&self) -> (EventType, String) {
        (EventType::RfcUpdated, subjects::rfc_updated(&self.slug))
    }
}

/// What happened to a cached branch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BranchAction {
    Created,
    /// A new head commit (or a deleted branch came back).
    Updated,
    Deleted,
}

/// `rfc.branch.*`: a branch of an RFC's repo changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RfcBranchChanged {
    pub slug: String,
    /// `owner/name`, lower case.
    pub repo: String,
    pub branch: String,
    pub head_sha: String,
    pub state: BranchState,
    pub action: BranchAction,
}

impl BranchAction {
    /// The name the subject and the audit trail give it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Deleted => "deleted",
        }
    }
}

impl Payload for RfcBranchChanged {
    fn route(&self) -> (EventType, String) {
        let kind = match self.action {
            BranchAction::Created => EventType::RfcBranchCreated,
            BranchAction::Updated => EventType::RfcBranchUpdated,
            BranchAction::Deleted => EventType::RfcBranchDeleted,
        };
        (kind, subjects::rfc_branch(&self.slug, self.action.as_str()))
    }
}

/// What happened to a cached pull request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullAction {
    /// First seen.
    Opened,
    /// Its title, head, state (reopened) or person behind it changed.
    Updated,
    Merged,
    Closed,
}

/// `rfc.pull.*`: a pull request about an RFC changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RfcPullChanged {
    pub slug: String,
    /// `owner/name`, lower case.
    pub repo: String,
    pub number: i64,
    pub kind: PullKind,
    pub state: PullState,
    pub title: String,
    /// The person behind it, and how that was decided.
    pub opened_by: String,
    pub opened_by_source: OpenedBySource,
    pub action: PullAction,
}

impl PullAction {
    /// The name the subject and the audit trail give it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Updated => "updated",
            Self::Merged => "merged",
            Self::Closed => "closed",
        }
    }
}

impl Payload for RfcPullChanged {
    fn route(&self) -> (EventType, String) {
        let kind = match self.action {
            PullAction::Opened => EventType::RfcPullOpened,
            PullAction::Updated => EventType::RfcPullUpdated,
            PullAction::Merged => EventType::RfcPullMerged,
            PullAction::Closed => EventType::RfcPullClosed,
        };
        (kind, subjects::rfc_pull(&self.slug, self.action.as_str()))
    }
}

/// An event's typed `data`: it knows its own CloudEvents type and subject, so no
/// producer picks either from a string, and a new variant of what decides them fails
/// to compile until it has both.
pub trait Payload: Serialize {
    /// The event type and the logical subject (without the deployment prefix) this
    /// payload is announced with.
    fn route(&self) -> (EventType, String);

    /// The event announcing this payload, from `source`, with a fresh id and time.
    fn event(&self, source: Source) -> Event {
        let (kind, subject) = self.route();
        let data = serde_json::to_value(self).expect("payloads always serialize");
        Event::new(kind, source, subject, data)
    }
}
