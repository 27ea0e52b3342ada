//! Every status and kind a row or an event carries, typed once.
//!
//! Each is stored as Postgres `text` (the migrations' check constraints list the same
//! names) and serialized by serde with the same snake_case names, so a row, a JSON
//! body and an event all spell a value alike. Rust code matches on these enums; only
//! SQL text still names a status.
//!
//! With the `openapi` feature each also derives `utoipa::ToSchema`. The three the API
//! names in its contract (`InterfaceType`, `ChangeType`, `ChangeStatus`) keep the
//! schema names and descriptions they had there.

use serde::{Deserialize, Serialize};

/// Defines a text-stored enum: its derives, its variants and `as_str`, the name it is
/// stored and serialized under.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }
    ) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        #[sqlx(type_name = "text", rename_all = "snake_case")]
        $(#[$meta])*
        pub enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &[Self] = &[$(Self::$variant,)+];

            /// The name it is stored and serialized under.
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text,)+ }
            }

            /// The value named `text`, if any.
            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|value| value.as_str() == text)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum! {
    /// Where a mutation is: `pending` until the mutator applies it or it fails.
    // The contract describes the type where lists are filtered by it.
    #[cfg_attr(feature = "openapi", schema(description = "Mutation statuses a list can be filtered by."))]
    pub enum MutationStatus {
        Pending => "pending",
        Applied => "applied",
        Failed => "failed",
    }
}

text_enum! {
    /// A topology's status: `idle`, or `pending` while mutations wait to apply.
    pub enum TopologyStatus {
        Idle => "idle",
        Pending => "pending",
    }
}

text_enum! {
    /// Where a change is in its lifecycle.
    pub enum ChangeStatus {
        Draft => "draft",
        Published => "published",
        Resolved => "resolved",
    }
}

text_enum! {
    /// Which interface changes.
    pub enum InterfaceType {
        RestApi => "rest_api",
        McpTool => "mcp_tool",
        Cli => "cli",
        Schema => "schema",
        Capability => "capability",
    }
}

text_enum! {
    /// What kind of change it is.
    pub enum ChangeType {
        Breaking => "breaking",
        Additive => "additive",
        Deprecation => "deprecation",
        Removal => "removal",
    }
}

text_enum! {
    /// Where a graph migration run is. `pending` and `running` are open; the other
    /// three are final.
    pub enum MigrationRunStatus {
        Pending => "pending",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelled => "cancelled",
    }
}

impl MigrationRunStatus {
    /// Whether the run is still to be worked (`pending` or `running`).
    pub const fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Running)
    }
}

text_enum! {
    /// A graph's status: `ready`; `migrating` while a run works it (node writes are
    /// refused); `migration_failed` after a run failed, until a later run succeeds or
    /// the failed run is cancelled (node writes are allowed, to repair the data).
    pub enum GraphStatus {
        Ready => "ready",
        Migrating => "migrating",
        MigrationFailed => "migration_failed",
    }
}

text_enum! {
    /// Why a graph's node writes are refused.
    pub enum ReadOnlyReason {
        Migrating => "migrating",
    }
}

text_enum! {
    /// Which kind of entity an audit row is about (`audit_log.entity`).
    pub enum AuditEntity {
        Repo => "repo",
        InterfaceChange => "interface_change",
        InboxMessage => "inbox_message",
        Plugin => "plugin",
        Graph => "graph",
        /// A cached RFC (`rfcs`), keyed by slug.
        Rfc => "rfc",
        /// A cached branch of an RFC repo, keyed `owner/repo:branch`.
        RfcBranch => "rfc_branch",
        /// A cached pull request, keyed `owner/repo#number`.
        RfcPull => "rfc_pull",
        /// A Gitea webhook delivery, keyed by its `X-Gitea-Delivery` id.
        ForgeDelivery => "forge_delivery",
        /// The forge cache as a whole (dropped for a rebuild), keyed by meta repo.
        ForgeCache => "forge_cache",
        /// An actions-log entry: who asked switchyard to open a pull request.
        ForgeAction => "forge_action",
    }
}

text_enum! {
    /// What a progress event on a repo records (`progress_events.kind`).
    pub enum ProgressKind {
        /// A step of the repo's own work, such as a published interface change.
        Milestone => "milestone",
    }
}

text_enum! {
    /// The event names (SSE `event:`) of an event stream's own frames; every other
    /// frame is a bus event, named by its subject.
    pub enum StreamFrame {
        /// The current state, first on every connection.
        Snapshot => "snapshot",
        /// The client's `Last-Event-ID` is no longer retained; a snapshot follows.
        Reset => "reset",
        /// The client fell too far behind and is disconnected.
        Lagged => "lagged",
    }
}

text_enum! {
    /// What a pull request is for, read from its head branch (meta repo) or its repo
    /// (an RFC's own repo).
    pub enum PullKind {
        /// `propose/<slug>` on the meta repo: a new RFC is proposed.
        Idea => "idea",
        /// `edit/<slug>/…` on the meta repo: an entry's body is edited.
        MetaBodyEdit => "meta_body_edit",
        /// `claim/<slug>` on the meta repo: someone claims the RFC.
        MetaClaim => "meta_claim",
        /// `metadata/<slug>` on the meta repo: an entry's front matter is edited.
        MetaMetadata => "meta_metadata",
        /// Any pull request of an RFC's own repo.
        RfcBranch => "rfc_branch",
    }
}

text_enum! {
    /// A pull request's state: Gitea's `open`/`closed`, with `merged` told apart.
    pub enum PullState {
        Open => "open",
        Closed => "closed",
        Merged => "merged",
    }
}

text_enum! {
    /// A cached branch: `active`, or `deleted` once Gitea no longer has it.
    pub enum BranchState {
        Active => "active",
        Deleted => "deleted",
    }
}

text_enum! {
    /// How a pull request's `opened_by` was decided, in the order tried.
    pub enum OpenedBySource {
        /// The Gitea account that opened it (not the bot).
        Opener => "opener",
        /// The actor switchyard recorded when its own action opened it.
        ActionsLog => "actions_log",
        /// The `On-behalf-of: Name <login>` trailer of its body.
        Trailer => "trailer",
        /// Nothing better: the opener's raw login (the bot's).
        Login => "login",
    }
}

text_enum! {
    /// Which part a repo plays in the forge cache (`forge_repos.role`).
    pub enum ForgeRepoRole {
        /// The meta repo: one entry per RFC under `rfcs/`.
        Meta => "meta",
        /// An RFC's own repo: `RFC.md`, branches, pull requests.
        Rfc => "rfc",
    }
}

text_enum! {
    /// What started a forge sweep (`forge_sweeps.trigger`).
    pub enum SweepTrigger {
        /// The reconciler's periodic sweep (and the one at start-up).
        Schedule => "schedule",
        /// Asked for: `POST /forge/reconcile` or `switchyard forge sweep`.
        Request => "request",
        /// `POST /forge/rebuild` or `switchyard forge rebuild`: the cache is dropped first.
        Rebuild => "rebuild",
    }
}

impl GraphStatus {
    /// Why node writes are refused in this status, if they are.
    pub const fn read_only_reason(self) -> Option<ReadOnlyReason> {
        match self {
            Self::Migrating => Some(ReadOnlyReason::Migrating),
            Self::Ready | Self::MigrationFailed => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// serde and `as_str` (and so SQL text and JSON) spell every value alike.
    fn spelled_alike<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(
        all: &[T],
        as_str: impl Fn(&T) -> &'static str,
    ) {
        for value in all {
            let json = serde_json::to_value(value).unwrap();
            assert_eq!(json, serde_json::Value::String(as_str(value).to_owned()));
            assert_eq!(&serde_json::from_value::<T>(json).unwrap(), value);
        }
    }

    #[test]
    fn serde_and_stored_names_agree() {
        spelled_alike(MutationStatus::ALL, |v| v.as_str());
        spelled_alike(TopologyStatus::ALL, |v| v.as_str());
        spelled_alike(ChangeStatus::ALL, |v| v.as_str());
        spelled_alike(InterfaceType::ALL, |v| v.as_str());
        spelled_alike(ChangeType::ALL, |v| v.as_str());
        spelled_alike(MigrationRunStatus::ALL, |v| v.as_str());
        spelled_alike(GraphStatus::ALL, |v| v.as_str());
        spelled_alike(ReadOnlyReason::ALL, |v| v.as_str());
        spelled_alike(StreamFrame::ALL, |v| v.as_str());
        spelled_alike(AuditEntity::ALL, |v| v.as_str());
        spelled_alike(ProgressKind::ALL, |v| v.as_str());
        spelled_alike(PullKind::ALL, |v| v.as_str());
        spelled_alike(PullState::ALL, |v| v.as_str());
        spelled_alike(BranchState::ALL, |v| v.as_str());
        spelled_alike(OpenedBySource::ALL, |v| v.as_str());
        spelled_alike(ForgeRepoRole::ALL, |v| v.as_str());
        spelled_alike(SweepTrigger::ALL, |v| v.as_str());
    }

    #[test]
    fn parse_reads_back_every_name_and_nothing_else() {
        for value in StreamFrame::ALL {
            assert_eq!(StreamFrame::parse(value.as_str()), Some(*value));
        }
        assert_eq!(StreamFrame::parse("Snapshot"), None);
        assert_eq!(
            MigrationRunStatus::parse("running"),
            Some(MigrationRunStatus::Running)
        );
    }

    #[test]
    fn the_names_are_the_ones_the_migrations_allow() {
        let names = |all: &[&'static str]| all.join(",");
        assert_eq!(
            names(
                &MutationStatus::ALL
                    .iter()
                    .map(|v| v.as_str())
                    .collect::<Vec<_>>()
            ),
            "pending,applied,failed"
        );
        assert_eq!(
            names(
                &MigrationRunStatus::ALL
                    .iter()
                    .map(|v| v.as_str())
                    .collect::<Vec<_>>()
            ),
            "pending,running,succeeded,failed,cancelled"
        );
        assert_eq!(
            names(
                &GraphStatus::ALL
                    .iter()
                    .map(|v| v.as_str())
                    .collect::<Vec<_>>()
            ),
            "ready,migrating,migration_failed"
        );
        assert_eq!(
            names(
                &InterfaceType::ALL
                    .iter()
                    .map(|v| v.as_str())
                    .collect::<Vec<_>>()
            ),
            "rest_api,mcp_tool,cli,schema,capability"
        );
    }

    #[test]
    fn only_a_migrating_graph_is_read_only() {
        assert_eq!(
            GraphStatus::Migrating.read_only_reason(),
            Some(ReadOnlyReason::Migrating)
        );
        assert_eq!(GraphStatus::Ready.read_only_reason(), None);
        assert_eq!(GraphStatus::MigrationFailed.read_only_reason(), None);
    }
}
