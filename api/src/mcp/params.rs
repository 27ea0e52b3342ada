//! The arguments of each MCP tool: one struct per shape, whose JSON Schema (derived by
//! `schemars`, with the field docs as descriptions) is the tool's input schema, and
//! [`Parameters`], which carries an agent's arguments to the API as it sent them.
//!
//! ## What the schemas say
//! The structs are schemas and nothing else: no argument is ever parsed into one. A
//! field whose type is an `Option` may be left out; `null` is allowed only in the
//! fields a struct lists in its [`NullOnlyIn`] transform, which are exactly the fields
//! whose API route accepts `null` (`planned_for`, which `null` clears; `if_version`
//! and `target_version`, for which `null` means none; a topology's `document`, which
//! may be any JSON value). Fields whose values are a closed set (a status, a change
//! type) say so, read from the same enums the API accepts; ids the API reads as UUIDs
//! say `format: uuid`.
//!
//! ## Where each argument goes
//! A tool names its route as a template (`/topologies/{topology_id}/mutations`): the
//! fields in braces become path segments, a few named fields become headers
//! (`idempotency_key` → `Idempotency-Key`), and every other field is sent exactly as
//! the agent sent it: in the query string of a read, in the JSON body of a write. A
//! field left out stays out and an explicit `null` is sent as `null`, so the API's own
//! validation answers, as it would answer curl (its 422 names the field).
//!
//! What the server consumes itself, it checks itself, naming the field: an argument
//! the schema does not have, a path or header field that is missing or not a string
//! (or not a UUID where the schema says so), and a query field that a query string
//! cannot carry (`null`, an array, an object).

use std::marker::PhantomData;

use axum::http::{HeaderValue, StatusCode};
use rmcp::handler::server::common::{FromContextPart, schema_for_input};
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::JsonObject;
use schemars::transform::Transform;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Map, Value};
use switchyard_domain::status::{
    AuditEntity, BranchState, ChangeStatus, ChangeType, InterfaceType, MutationStatus, PullKind,
    PullState,
};

use crate::loopback::Refusal;
pub use crate::loopback::segment;

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

/// `asc` or `desc`: which end of a topology's seq order a list starts from.
fn seq_order(_: &mut SchemaGenerator) -> Schema {
    one_of(
        "`asc` (the default): oldest first; `desc`: newest first. Pass next_cursor back with the same order.",
        ["asc", "desc"].into_iter(),
    )
}

/// An id the API reads as a UUID (the field's doc comment describes it).
fn uuid(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "format": "uuid" })
}

/// A date, `YYYY-MM-DD`, or `null` (the field's doc comment says what `null` does).
fn date_or_null(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": ["string", "null"], "format": "date" })
}

/// Container transform of every argument struct: `null` is allowed only in the named
/// fields. `schemars` reads an `Option` as "may be null"; here it means "may be left
/// out", so every other property's `type` loses its `"null"`.
pub struct NullOnlyIn(pub &'static [&'static str]);

impl Transform for NullOnlyIn {
    fn transform(&mut self, schema: &mut Schema) {
        let Some(Value::Object(properties)) = schema.get_mut("properties") else {
            return;
        };
        for (name, property) in properties.iter_mut() {
            if self.0.contains(&name.as_str()) {
                continue;
            }
            let Some(Value::Array(types)) = property.get_mut("type") else {
                continue;
            };
            types.retain(|t| t != "null");
            if let [only] = types.as_slice() {
                property["type"] = only.clone();
            }
        }
    }
}

// ---- Carrying the arguments ---------------------------------------------------------

/// A tool's arguments exactly as the agent sent them, `T` being only their schema (the
/// tool's input schema). Extracting them never fails: [`Parameters::route`] checks what
/// the server consumes itself and answers a refusal naming the field.
///
/// (Named `Parameters` so that `rmcp`'s `#[tool]` macro finds the input schema in a
/// handler's signature.)
pub struct Parameters<T> {
    arguments: JsonObject,
    schema: PhantomData<fn() -> T>,
}

impl<T: JsonSchema> JsonSchema for Parameters<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

impl<S, T> FromContextPart<ToolCallContext<'_, S>> for Parameters<T> {
    fn from_context_part(context: &mut ToolCallContext<S>) -> Result<Self, rmcp::ErrorData> {
        Ok(Self {
            arguments: context.arguments.take().unwrap_or_default(),
            schema: PhantomData,
        })
    }
}

/// One request's worth of arguments: the path with its segments filled in, the
/// headers, and the fields left to send as the query or the body.
#[derive(Debug)]
pub struct Route {
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub rest: JsonObject,
}

impl<T: JsonSchema + 'static> Parameters<T> {
    /// The arguments for a request to `template` (a path whose `{field}`s are filled
    /// with those arguments, percent-encoded), with `headers` (`(field, header name)`)
    /// sent as headers when given. A refusal (422, code `invalid_arguments`) names an
    /// argument the schema does not have, or a path or header field that is missing,
    /// not a string, or not a UUID where the schema says `format: uuid`.
    pub fn route(
        mut self,
        template: &str,
        headers: &[(&str, &'static str)],
    ) -> Result<Route, Refusal> {
        let schema = schema_for_input::<T>().map_err(|e| {
            invalid(format!(
                "this tool's input schema is broken ({e}); report it"
            ))
        })?;
        let properties = schema
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if let Some(unknown) = self.arguments.keys().find(|k| !properties.contains_key(*k)) {
            let known: Vec<String> = properties.keys().map(|k| format!("`{k}`")).collect();
            return Err(invalid(format!(
                "unknown argument `{unknown}`: this tool takes {}",
                if known.is_empty() {
                    "no arguments".to_owned()
                } else {
                    known.join(", ")
                }
            )));
        }
        let mut path = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let close = open
                + rest[open..]
                    .find('}')
                    .expect("a route template closes every `{`");
            path.push_str(&rest[..open]);
            let field = &rest[open + 1..close];
            let property = properties.get(field).unwrap_or(&Value::Null);
            let value = match self.arguments.remove(field) {
                Some(value) => text(field, property, value)?,
                None => return Err(invalid(missing(field, property))),
            };
            path.push_str(&segment(&value));
            rest = &rest[close + 1..];
        }
        path.push_str(rest);
        let mut sent_headers = Vec::new();
        for (field, header) in headers {
            let Some(value) = self.arguments.remove(*field) else {
                continue;
            };
            let property = properties.get(*field).unwrap_or(&Value::Null);
            let value = text(field, property, value)?;
            if HeaderValue::from_str(&value).is_err() {
                return Err(invalid(format!(
                    "`{field}` must be printable ASCII: it is sent as the `{header}` header"
                )));
            }
            sent_headers.push((*header, value));
        }
        Ok(Route {
            path,
            headers: sent_headers,
            rest: self.arguments,
        })
    }
}

impl Route {
    /// The fields left as a query string, `?a=1&b=x` (nothing when there are none):
    /// each scalar as its text. `null`, an array or an object has no spelling in a query
    /// string, so it is refused naming the field.
    pub fn query(&self) -> Result<String, Refusal> {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (key, value) in &self.rest {
            let text = match value {
                Value::String(text) => text.clone(),
                Value::Number(number) => number.to_string(),
                Value::Bool(flag) => flag.to_string(),
                Value::Null => {
                    return Err(invalid(format!(
                        "`{key}` cannot be null: leave it out instead"
                    )));
                }
                other => {
                    return Err(invalid(format!(
                        "`{key}` must be a single value, not {}",
                        describe(other)
                    )));
                }
            };
            query.append_pair(key, &text);
        }
        if self.rest.is_empty() {
            Ok(String::new())
        } else {
            Ok(format!("?{}", query.finish()))
        }
    }

    /// The fields left, as the JSON body: exactly the agent's.
    pub fn body(self) -> Value {
        Value::Object(self.rest)
    }
}

/// A refusal of the arguments, before any request: 422, code `invalid_arguments`.
pub fn invalid(message: String) -> Refusal {
    Refusal {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: "invalid_arguments".to_owned(),
        message,
    }
}

/// `field`'s value as text for a path segment or a header: a string, and a UUID if
/// its schema says `format: uuid`.
fn text(field: &str, property: &Value, value: Value) -> Result<String, Refusal> {
    let is_uuid = property["format"] == "uuid";
    let expected = if is_uuid { "a UUID" } else { "a string" };
    let Value::String(text) = value else {
        return Err(invalid(format!(
            "`{field}` must be {expected}, not {}",
            describe(&value)
        )));
    };
    if is_uuid && uuid::Uuid::parse_str(&text).is_err() {
        return Err(invalid(format!(
            "`{field}` must be a UUID, such as `0192f5e4-8c2a-7b1e-9d3f-5a6b7c8d9e0f`; {text:?} is not one"
        )));
    }
    Ok(text)
}

/// The refusal of a missing required field, with its description.
fn missing(field: &str, property: &Value) -> String {
    match property["description"].as_str() {
        Some(description) => format!("missing argument `{field}`: {description}"),
        None => format!("missing argument `{field}`"),
    }
}

/// A JSON value as a refusal names it: `the string "3"`, `null`, `an array`.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(flag) => format!("the boolean {flag}"),
        Value::Number(number) => format!("the number {number}"),
        Value::String(text) if text.chars().count() > 40 => {
            let head: String = text.chars().take(40).collect();
            format!("the string {head:?}…")
        }
        Value::String(text) => format!("the string {text:?}"),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

#[cfg(test)]
impl<T> Parameters<T> {
    /// `arguments` (an object) as an agent sent them.
    pub fn sent(arguments: Value) -> Self {
        let Value::Object(arguments) = arguments else {
            panic!("arguments are an object");
        };
        Self {
            arguments,
            schema: PhantomData,
        }
    }
}

// ---- The schemas --------------------------------------------------------------------

pub use schemas::*;

/// The argument structs. Schemas only: none is ever built or read (see the module docs).
#[allow(dead_code, reason = "schemas only: never built, never read")]
mod schemas {
    use super::*;

    /// Paging of a list: `limit` items from where `cursor` says.
    #[derive(Debug, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(transform = NullOnlyIn(&[]))]
    pub struct Page {
        /// Page size, 1 to 500 (default 50).
        pub limit: Option<i64>,
        /// `next_cursor` of the previous page; leave it out for the first page.
        pub cursor: Option<String>,
    }

    /// One topology, by id.
    #[derive(Debug, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(transform = NullOnlyIn(&[]))]
    pub struct TopologyId {
        /// The topology's id (a UUID, as `create_topology` or `list_topologies` return it).
        #[schemars(schema_with = "uuid")]
        pub id: String,
    }

    /// One mutation, by id.
    #[derive(Debug, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(transform = NullOnlyIn(&[]))]
    pub struct MutationId {
        /// The mutation's id (a UUID, as `enqueue_mutation` returns it).
        #[schemars(schema_with = "uuid")]
        pub id: String,
    }

    /// One interface change, by id.
    #[derive(Debug, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(transform = NullOnlyIn(&[]))]
    pub struct InterfaceChangeId {
        /// The interface change's id (a UUID, as `register_interface_change` returns it).
        #[schemars(schema_with = "uuid")]
        pub id: String,
    }

    /// One repo, by slug.
    #[derive(Debug, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(transform = NullOnlyIn(&[]))]
    pub struct RepoSlug {
        /// The repo's slug, for example `billing`.
        pub slug: String,
    }

    /// One graph, by slug.
    #[derive(Debug, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(transform = NullOnlyIn(&[]))]
    pub struct GraphSlug {
        /// The graph's slug, for example `dc-east`.
        pub slug: String,
    }

    /// One plugin, by name.
    #[derive(Debug, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(transform = NullOnlyIn(&[]))]
    pub struct PluginName {
        /// The plugin's name.
        pub name: String,
    }

    /// One cached RFC, by slug.
    #[derive(Debug, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(transform = NullOnlyIn(&[]))]
    pub struct RfcSlug {
        /// The RFC's slug, as the meta repo's `rfcs/<slug>.md` names it.
        pub slug: String,
    }

    /// Arguments of `register_interface_change` (the body of `POST /interface-changes`).
    #[derive(Debug, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(transform = NullOnlyIn(&["planned_for"]))]
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
        /// When the change is planned to ship, `YYYY-MM-DD`; `null` or left out: not
        /// planned.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "date_or_null")]
        pub planned_for: Option<String>,
        /// Who wrote it, 1 to 200 characters; the token's subject when left out.
        pub author: Option<String>,
    }

    /// Arguments of `update_interface_change` (the body of `PATCH /interface-changes/{id}`):
    /// only the fields to change.
    #[derive(Debug, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(transform = NullOnlyIn(&["planned_for"]))]
    pub struct UpdateInterfaceChange {
        /// The draft's id (a UUID).
        #[schemars(schema_with = "uuid")]
        pub id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "interface_type")]
        pub interface_type: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "change_type")]
        pub change_type: Option<String>,
        /// A new title, 1 to 200 characters.
        pub title: Option<String>,
        /// A new description, 1 to 20,000 characters.
        pub description: Option<String>,
        /// The new list of affected paths (replaces the old one).
        pub affected_paths: Option<Vec<String>>,
        /// The new list of affected repo slugs (replaces the old one).
        pub affected_repo_slugs: Option<Vec<String>>,
        /// A new planned date, `YYYY-MM-DD`; `null` clears it; left out, it stays.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "date_or_null")]
        pub planned_for: Option<String>,
        /// A new author, 1 to 200 characters.
        pub author: Option<String>,
    }

    /// Filters of `list_interface_changes`, plus paging.
    #[derive(Debug, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(transform = NullOnlyIn(&[]))]
    pub struct ListInterfaceChanges {
        /// Only changes announced by this repo.
        pub repo_slug: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "change_status")]
        pub status: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "change_type")]
        pub change_type: Option<String>,
        /// Only changes that list this repo among the affected.
        pub affected_repo: Option<String>,
        /// Page size, 1 to 500 (default 50).
        pub limit: Option<i64>,
        /// `next_cursor` of the previous page; leave it out for the first page.
        pub cursor: Option<String>,
    }

    /// Filters of `list_repos`, plus paging.
    #[derive(Debug, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(transform = NullOnlyIn(&[]))]
    pub struct ListRepos {
        /// Only repos of this domain.
        pub domain: Option<String>,
        /// Include archived repos (default false).
        pub include_archived: Option<bool>,
        /// Page size, 1 to 500 (default 50).
        pub limit: Option<i64>,
        /// `next_cursor` of the previous page; leave it out for the first page.
        pub cursor: Option<String>,
    }

    /// Arguments of `find_repo_by_remote`.
    #[derive(Debug, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(transform = NullOnlyIn(&[]))]
    pub struct RepoByRemote {
        /// A git remote URL in any of its usual spellings (`https://…`, `git@host:owner/name`,
        /// `ssh://…`), without credentials.
        pub url: String,
    }

    /// Arguments of `find_repos_by_fingerprint`.
    #[derive(Debug, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(transform = NullOnlyIn(&[]))]
    pub struct ReposByFingerprint {
        /// The git fingerprint to look for.
        pub hash: String,
        /// Only repos with this remote (compared normalized).
        pub remote_url: Option<String>,
    }

    /// Arguments of `list_inbox`.
    #[derive(Debug, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(transform = NullOnlyIn(&[]))]
    pub struct ListInbox {
        /// The repo whose inbox to read.
        pub slug: String,
        /// Only unread messages (default false: all).
        pub unread: Option<bool>,
        /// Page size, 1 to 500 (default 50).
        pub limit: Option<i64>,
        /// `next_cursor` of the previous page; leave it out for the first page.
        pub cursor: Option<String>,
    }

    /// Arguments of `mark_inbox_read`.
    #[derive(Debug, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(transform = NullOnlyIn(&[]))]
    pub struct MarkInboxRead {
        /// The repo whose inbox holds the message.
        pub slug: String,
        /// The message's id (a UUID, from `list_inbox` or `get_dispatch`).
        #[schemars(schema_with = "uuid")]
        pub message_id: String,
    }

    /// Arguments of `create_topology` (the body of `POST /topologies`).
    #[derive(Debug, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(transform = NullOnlyIn(&[]))]
    pub struct CreateTopology {
        /// A human-readable name, 1 to 200 characters.
        pub name: String,
        /// The initial document, any JSON value (`null` too); `{}` when left out.
        pub document: Option<Value>,
    }

    /// Arguments of `enqueue_mutation` (the body of `POST /topologies/{id}/mutations`, and
    /// its `Idempotency-Key` header).
    #[derive(Debug, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(transform = NullOnlyIn(&["if_version"]))]
    pub struct EnqueueMutation {
        /// The topology to change (a UUID, as `create_topology` or `list_topologies`
        /// return it).
        #[schemars(schema_with = "uuid")]
        pub topology_id: String,
        /// RFC 6902 JSON Patch operations (1 to 1,000), applied in order as one mutation,
        /// for example `[{"op": "add", "path": "/nodes/-", "value": {"id": "sw1"}}]`. Each
        /// is an object with `op` (`add`, `remove`, `replace`, `move`, `copy` or `test`),
        /// `path`, and `value` or `from` as its op needs.
        pub ops: Vec<Map<String, Value>>,
        /// Apply only if the topology is then at exactly this version (applied mutations
        /// so far), 0 or more; otherwise the mutation fails, naming both versions. `null`
        /// or left out: at whatever version it is.
        pub if_version: Option<i64>,
        /// Sent as the `Idempotency-Key` header (1 to 255 printable ASCII characters): a
        /// retry with the same key and operations returns the original mutation instead of
        /// enqueueing it twice.
        pub idempotency_key: Option<String>,
    }

    /// Arguments of `list_topology_mutations`.
    #[derive(Debug, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(transform = NullOnlyIn(&[]))]
    pub struct ListTopologyMutations {
        /// The topology (a UUID).
        #[schemars(schema_with = "uuid")]
        pub id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "mutation_status")]
        pub status: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "seq_order")]
        pub order: Option<String>,
        /// Page size, 1 to 500 (default 50).
        pub limit: Option<i64>,
        /// `next_cursor` of the previous page; leave it out for the first page.
        pub cursor: Option<String>,
    }

    /// Arguments of `list_mutations`.
    #[derive(Debug, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(transform = NullOnlyIn(&[]))]
    pub struct ListMutations {
        /// `failed` lists every topology's failed work.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "mutation_status")]
        pub status: Option<String>,
        /// Page size, 1 to 500 (default 50).
        pub limit: Option<i64>,
        /// `next_cursor` of the previous page; leave it out for the first page.
        pub cursor: Option<String>,
    }

    /// Arguments of `create_graph` (the body of `POST /graphs`).
    #[derive(Debug, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(transform = NullOnlyIn(&[]))]
    pub struct CreateGraph {
        /// Lowercase letters, digits and dashes, 1 to 63 characters; never changes.
        pub slug: String,
        /// The registered plugin whose schema shapes the nodes; the graph starts at its
        /// current version.
        pub plugin: String,
    }

    /// Arguments of `list_graph_nodes` and `list_migrations`: a graph, plus paging.
    #[derive(Debug, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(transform = NullOnlyIn(&[]))]
    pub struct GraphPage {
        /// The graph's slug.
        pub slug: String,
        /// Page size, 1 to 500 (default 50).
        pub limit: Option<i64>,
        /// `next_cursor` of the previous page; leave it out for the first page.
        pub cursor: Option<String>,
    }

    /// Arguments of `request_migration` (`POST /graphs/{slug}/re-migrate`).
    #[derive(Debug, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(transform = NullOnlyIn(&["target_version"]))]
    pub struct RequestMigration {
        /// The graph to migrate.
        pub slug: String,
        /// The plugin version to migrate to, 1 or more; `null` or left out: the plugin's
        /// current version.
        pub target_version: Option<i32>,
    }

    /// Arguments of `cancel_migration`.
    #[derive(Debug, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(transform = NullOnlyIn(&[]))]
    pub struct CancelMigration {
        /// The graph the run migrates.
        pub slug: String,
        /// The run's id (a UUID, from `request_migration` or `list_migrations`).
        #[schemars(schema_with = "uuid")]
        pub run_id: String,
    }

    /// Filters of `list_rfcs`, plus paging.
    #[derive(Debug, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(transform = NullOnlyIn(&[]))]
    pub struct ListRfcs {
        /// Only RFCs in this state, compared exactly with their front matter's `state`.
        /// It is free text, not a closed set (the usual ones are in `examples`; any other
        /// an RFC's author wrote is matched too).
        #[schemars(extend("examples" = ["idea", "active", "withdrawn", "rejected", "archived"]))]
        pub state: Option<String>,
        /// Only RFCs with this tag.
        pub tag: Option<String>,
        /// Only RFCs gone from the meta repo's `rfcs/` (true) or still there (false).
        pub missing: Option<bool>,
        /// Page size, 1 to 500 (default 50).
        pub limit: Option<i64>,
        /// `next_cursor` of the previous page; leave it out for the first page.
        pub cursor: Option<String>,
    }

    /// Arguments of `list_rfc_branches`.
    #[derive(Debug, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(transform = NullOnlyIn(&[]))]
    pub struct ListRfcBranches {
        /// The RFC's slug.
        pub slug: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "branch_state")]
        pub state: Option<String>,
        /// Page size, 1 to 500 (default 50).
        pub limit: Option<i64>,
        /// `next_cursor` of the previous page; leave it out for the first page.
        pub cursor: Option<String>,
    }

    /// Arguments of `list_rfc_pulls`.
    #[derive(Debug, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(transform = NullOnlyIn(&[]))]
    pub struct ListRfcPulls {
        /// The RFC's slug.
        pub slug: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "pull_state")]
        pub state: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "pull_kind")]
        pub kind: Option<String>,
        /// Page size, 1 to 500 (default 50).
        pub limit: Option<i64>,
        /// `next_cursor` of the previous page; leave it out for the first page.
        pub cursor: Option<String>,
    }

    /// Filters of `list_pulls`, plus paging.
    #[derive(Debug, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(transform = NullOnlyIn(&[]))]
    pub struct ListPulls {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "pull_state")]
        pub state: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "pull_kind")]
        pub kind: Option<String>,
        /// Page size, 1 to 500 (default 50).
        pub limit: Option<i64>,
        /// `next_cursor` of the previous page; leave it out for the first page.
        pub cursor: Option<String>,
    }

    /// Filters of `list_audit`, plus paging.
    #[derive(Debug, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(transform = NullOnlyIn(&[]))]
    pub struct ListAudit {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "audit_entity")]
        pub entity: Option<String>,
        /// Only the entity with this slug, name or id; needs `entity` (keys are unique only
        /// within one kind).
        pub key: Option<String>,
        /// Page size, 1 to 500 (default 50).
        pub limit: Option<i64>,
        /// `next_cursor` of the previous page; leave it out for the first page.
        pub cursor: Option<String>,
    }
}
