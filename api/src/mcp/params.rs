//! The arguments of each MCP tool: one struct per shape, whose JSON Schema (derived by
//! `schemars`, with the field docs as descriptions) is the tool's input schema.
//!
//! A field marked `#[serde(skip_serializing)]` goes into the request's path; every
//! other field is sent as the API receives it: in the query string of a read, in the
//! JSON body of a write ([`super::tools`] does the sending). No value is checked here
//! beyond its JSON type: the API validates, and its 422 names what was wrong. Fields
//! whose values are a closed set (a status, a change type) say so in their schema,
//! read from the same enums the API accepts.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_domain::status::{
    AuditEntity, BranchState, ChangeStatus, ChangeType, InterfaceType, MutationStatus, PullKind,
    PullState,
};

/// A string schema allowing exactly `values`.
fn one_of<'a>(description: &str, values: impl Iterator<Item = &'a str>) -> Schema {
    let values: Vec<&str> = values.collect();
    json_schema!({ "type": "string", "enum": values, "description": description })
}

/// Schema functions for the text enums the API reads, from their own `ALL` lists.
macro_rules! text_enum_schemas {
    ($($name:ident: $ty:ty, $what:literal;)+) => {
        $(
            fn $name(_: &mut SchemaGenerator) -> Schema {
                one_of($what, <$ty>::ALL.iter().map(|value| value.as_str()))
            }
        )+
    };
}

text_enum_schemas! {
    interface_type: InterfaceType, "Which interface changes.";
    change_type: ChangeType, "What kind of change it is.";
    change_status: ChangeStatus, "Only changes in this lifecycle status.";
    mutation_status: MutationStatus, "Only mutations in this status.";
    audit_entity: AuditEntity, "Only audit rows about this kind of entity.";
    branch_state: BranchState, "Only branches in this state.";
    pull_state: PullState, "Only pull requests in this state.";
    pull_kind: PullKind, "Only pull requests of this kind.";
}

/// Paging of a list: `limit` items from where `cursor` says.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// Page size, 1 to 500 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page; leave it out for the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// One topology, by id.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopologyId {
    /// The topology's id (a UUID, as `create_topology` or `list_topologies` return it).
    #[serde(skip_serializing)]
    pub id: String,
}

/// One mutation, by id.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MutationId {
    /// The mutation's id (a UUID, as `enqueue_mutation` returns it).
    #[serde(skip_serializing)]
    pub id: String,
}

/// One interface change, by id.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InterfaceChangeId {
    /// The interface change's id (a UUID, as `register_interface_change` returns it).
    #[serde(skip_serializing)]
    pub id: String,
}

/// One repo, by slug.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RepoSlug {
    /// The repo's slug, for example `billing`.
    #[serde(skip_serializing)]
    pub slug: String,
}

/// One graph, by slug.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GraphSlug {
    /// The graph's slug, for example `dc-east`.
    #[serde(skip_serializing)]
    pub slug: String,
}

/// One plugin, by name.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginName {
    /// The plugin's name.
    #[serde(skip_serializing)]
    pub name: String,
}

/// One cached RFC, by slug.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RfcSlug {
    /// The RFC's slug, as the meta repo's `rfcs/<slug>.md` names it.
    #[serde(skip_serializing)]
    pub slug: String,
}

/// Arguments of `register_interface_change` (the body of `POST /interface-changes`).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterInterfaceChange {
    /// Slug of the repo whose interface changes (a registered repo).
    pub repo_slug: String,
    #[schemars(schema_with = "interface_type")]
    pub interface_type: String,
    #[schemars(schema_with = "change_type")]
    pub change_type: String,
    /// A one-line title, 1 to 200 characters.
    pub title: String,
    /// What changes and what the affected repos must do, 1 to 20,000 characters.
    pub description: String,
    /// Endpoints, tools, commands or fields that change, for example `GET /v1/users`
    /// (at most 1,000).
    pub affected_paths: Vec<String>,
    /// Slugs of the repos that must adapt, each once (at most 500); each gets an inbox
    /// message when the change is published.
    pub affected_repo_slugs: Vec<String>,
    /// When the change is planned to ship, `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_for: Option<String>,
    /// Who wrote it; the token's subject when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
}

/// Arguments of `update_interface_change` (the body of `PATCH /interface-changes/{id}`):
/// only the fields to change.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateInterfaceChange {
    /// The draft's id (a UUID).
    #[serde(skip_serializing)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "interface_type")]
    pub interface_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "change_type")]
    pub change_type: Option<String>,
    /// A new title, 1 to 200 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// A new description, 1 to 20,000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The new list of affected paths (replaces the old one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affected_paths: Option<Vec<String>>,
    /// The new list of affected repo slugs (replaces the old one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affected_repo_slugs: Option<Vec<String>>,
    /// A new planned date, `YYYY-MM-DD`; `null` clears it; left out, it stays.
    #[serde(
        default,
        with = "serde_with::rust::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub planned_for: Option<Option<String>>,
    /// A new author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
}

/// Filters of `list_interface_changes`, plus paging.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListInterfaceChanges {
    /// Only changes announced by this repo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_slug: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "change_status")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "change_type")]
    pub change_type: Option<String>,
    /// Only changes that list this repo among the affected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affected_repo: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page; leave it out for the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Filters of `list_repos`, plus paging.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListRepos {
    /// Only repos of this domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Include archived repos (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_archived: Option<bool>,
    /// Page size, 1 to 500 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page; leave it out for the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Arguments of `find_repo_by_remote`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RepoByRemote {
    /// A git remote URL in any of its usual spellings (`https://…`, `git@host:owner/name`,
    /// `ssh://…`), without credentials.
    pub url: String,
}

/// Arguments of `find_repos_by_fingerprint`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReposByFingerprint {
    /// The git fingerprint to look for.
    pub hash: String,
    /// Only repos with this remote (compared normalized).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_url: Option<String>,
}

/// Arguments of `list_inbox`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListInbox {
    /// The repo whose inbox to read.
    #[serde(skip_serializing)]
    pub slug: String,
    /// Only unread messages (default false: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread: Option<bool>,
    /// Page size, 1 to 500 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page; leave it out for the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Arguments of `mark_inbox_read`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkInboxRead {
    /// The repo whose inbox holds the message.
    #[serde(skip_serializing)]
    pub slug: String,
    /// The message's id (a UUID, from `list_inbox` or `get_dispatch`).
    #[serde(skip_serializing)]
    pub message_id: String,
}

/// Arguments of `create_topology` (the body of `POST /topologies`).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTopology {
    /// A human-readable name, 1 to 200 characters.
    pub name: String,
    /// The initial document, any JSON value; `{}` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<Value>,
}

/// Arguments of `enqueue_mutation`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueMutation {
    /// The topology to change (a UUID).
    #[serde(skip_serializing)]
    pub id: String,
    /// RFC 6902 JSON Patch operations, applied in order as one mutation, for example
    /// `[{"op": "add", "path": "/nodes/-", "value": {"id": "sw1"}}]`. Each is an object
    /// with `op` (`add`, `remove`, `replace`, `move`, `copy` or `test`), `path`, and
    /// `value` or `from` as its op needs.
    pub ops: Vec<Value>,
    /// Apply only if the topology is then at exactly this version (applied mutations
    /// so far); otherwise the mutation fails, naming both versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_version: Option<i64>,
    /// Sent as the `Idempotency-Key` header (1 to 255 printable ASCII characters): a
    /// retry with the same key and operations returns the original mutation instead of
    /// enqueueing it twice.
    #[serde(default, skip_serializing)]
    pub idempotency_key: Option<String>,
}

/// Arguments of `list_topology_mutations`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListTopologyMutations {
    /// The topology (a UUID).
    #[serde(skip_serializing)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "mutation_status")]
    pub status: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page; leave it out for the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Arguments of `list_mutations`.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListMutations {
    /// `failed` lists every topology's failed work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "mutation_status")]
    pub status: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page; leave it out for the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Arguments of `create_graph` (the body of `POST /graphs`).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGraph {
    /// Lowercase letters, digits and dashes, 1 to 63 characters; never changes.
    pub slug: String,
    /// The registered plugin whose schema shapes the nodes; the graph starts at its
    /// current version.
    pub plugin: String,
}

/// Arguments of `list_graph_nodes` and `list_migrations`: a graph, plus paging.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GraphPage {
    /// The graph's slug.
    #[serde(skip_serializing)]
    pub slug: String,
    /// Page size, 1 to 500 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page; leave it out for the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Arguments of `request_migration` (`POST /graphs/{slug}/re-migrate`).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestMigration {
    /// The graph to migrate.
    #[serde(skip_serializing)]
    pub slug: String,
    /// The plugin version to migrate to; the plugin's current version when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<i32>,
}

/// Arguments of `cancel_migration`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelMigration {
    /// The graph the run migrates.
    #[serde(skip_serializing)]
    pub slug: String,
    /// The run's id (a UUID, from `request_migration` or `list_migrations`).
    #[serde(skip_serializing)]
    pub run_id: String,
}

/// Filters of `list_rfcs`, plus paging.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListRfcs {
    /// Only RFCs in this state, as their front matter writes it (for example `active`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Only RFCs with this tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Only RFCs gone from the meta repo's `rfcs/` (true) or still there (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<bool>,
    /// Page size, 1 to 500 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page; leave it out for the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Arguments of `list_rfc_branches`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListRfcBranches {
    /// The RFC's slug.
    #[serde(skip_serializing)]
    pub slug: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "branch_state")]
    pub state: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page; leave it out for the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Arguments of `list_rfc_pulls`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListRfcPulls {
    /// The RFC's slug.
    #[serde(skip_serializing)]
    pub slug: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pull_state")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pull_kind")]
    pub kind: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page; leave it out for the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Filters of `list_pulls`, plus paging.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListPulls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pull_state")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pull_kind")]
    pub kind: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page; leave it out for the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Filters of `list_audit`, plus paging.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListAudit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "audit_entity")]
    pub entity: Option<String>,
    /// Only the entity with this slug, name or id; needs `entity` (keys are unique only
    /// within one kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page; leave it out for the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}
