//! The tools: each one request to an `/api/v1` route through [`Loopback`], as the
//! caller.
//!
//! A tool never reads or writes the database: it forwards the `Authorization` header
//! of the HTTP request that carried the call, so the route's own role check,
//! validation, transaction, audit row and event apply, exactly as for a curl client.
//! The arguments go as the agent sent them (`params::Parameters`): a field left out is left
//! out of the query or body, and `null` is sent as `null`.
//!
//! Its answer is the route's JSON as structured content (a bare array is wrapped as
//! `{"items": [...]}`, since structured content is an object) and as text; a refusal
//! is a tool error whose text is the status and the API's message, for example
//! `403 Forbidden: this operation needs the operator role; your token has viewer`, and
//! whose structured content is `{"error": {"status", "code", "message"}}`. Arguments
//! the server cannot send at all (an unknown one, a missing or malformed id) are
//! refused the same way, as a 422 with code `invalid_arguments`, before any request.

use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::model::{CallToolResult, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde_json::{Value, json};

use super::params::*;
use crate::loopback::{Credentials, Loopback, Refusal};

/// What an agent is told about the server when it connects.
const INSTRUCTIONS: &str = "switchyard: topologies edited by JSON Patch mutations, repos \
and the interface changes they announce to each other, plugin-shaped graphs and their \
migrations, and a cache of RFCs from Gitea. Each tool is one call of the HTTP API \
(/api/v1) with your bearer token: roles are the API's (viewer reads; operator also \
does the day's work; admin also reads the audit trail). Arguments are sent as you give \
them: leave a field out to leave it unset; `null` is accepted only where a schema \
allows it. Lists are paged: pass `next_cursor` back as `cursor` until it is null. \
Writes answer at once; the workers apply the work a moment later (a mutation is \
`pending`, then `applied` or `failed`: read it again with get_mutation). A refusal is a \
tool error starting with the HTTP status, then the API's message saying what was \
wrong (which field, which values it takes).";

/// The MCP server of one session: the tools, and the API they call.
#[derive(Clone)]
pub struct Tools {
    loopback: Loopback,
    tool_router: ToolRouter<Self>,
}

impl std::fmt::Debug for Tools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tools").finish_non_exhaustive()
    }
}

/// A refusal as a tool error: `403 Forbidden: <the message>` as text, and
/// `{"error": {"status", "code", "message"}}` as structured content.
fn refused(refusal: &Refusal) -> CallToolResult {
    let mut result =
        CallToolResult::error(vec![rmcp::model::ContentBlock::text(refusal.to_string())]);
    result.structured_content = Some(json!({
        "error": {
            "status": refusal.status.as_u16(),
            "code": refusal.code,
            "message": refusal.message,
        }
    }));
    result
}

/// An answer of the API as a tool result: its JSON as structured content (an object;
/// an array is wrapped as `{"items": [...]}`) and as text.
fn answered(body: Value) -> CallToolResult {
    match body {
        Value::Object(_) => CallToolResult::structured(body),
        Value::Array(items) => CallToolResult::structured(json!({ "items": items })),
        other => CallToolResult::structured(json!({ "value": other })),
    }
}

/// Framing of the API's 400/422 texts that speaks of a body or a query string the
/// agent never wrote (the loopback wrote them from its arguments).
const FRAMINGS: [&str; 2] = [
    "Failed to deserialize the JSON body into the target type: ",
    "Failed to deserialize query string: ",
];

/// The API's refusal `message` as an agent reads it: a 400's or 422's framing
/// ([`FRAMINGS`]) and its position (` at line 1 column 118`, in a body the agent never
/// saw) are dropped, leaving the field and what it takes, for example
/// `if_version: invalid type: string "3", expected i64`. Other messages are the
/// API's own, unchanged.
fn for_agent(status: StatusCode, message: &str) -> String {
    if !matches!(
        status,
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY
    ) {
        return message.to_owned();
    }
    let mut text = message;
    for framing in FRAMINGS {
        text = text.strip_prefix(framing).unwrap_or(text);
    }
    if let Some((head, position)) = text.rsplit_once(" at line ")
        && let Some((line, column)) = position.split_once(" column ")
        && !line.is_empty()
        && line.bytes().all(|b| b.is_ascii_digit())
        && !column.is_empty()
        && column.bytes().all(|b| b.is_ascii_digit())
    {
        text = head;
    }
    text.to_owned()
}

impl Tools {
    /// The tools, calling `loopback`, with `tool_router` (built once by
    /// [`Tools::router`] and shared by every session).
    pub fn new(loopback: Loopback, tool_router: ToolRouter<Self>) -> Self {
        Self {
            loopback,
            tool_router,
        }
    }

    /// Every tool, with its schema.
    pub fn router() -> ToolRouter<Self> {
        Self::tool_router()
    }

    /// Sends `method path` with `body` and `headers` as the caller whose request
    /// carried this tool call: the API's answer as a tool result, its refusal as a
    /// tool error ([`for_agent`]).
    async fn call(
        &self,
        parts: &Parts,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&'static str, String)],
    ) -> CallToolResult {
        // The middleware in `super::router` let only requests with a valid API token in
        // this header through.
        let Some(authorization) = parts.headers.get(header::AUTHORIZATION) else {
            return refused(&Refusal {
                status: StatusCode::UNAUTHORIZED,
                code: "unauthorized".to_owned(),
                message: "missing credentials: send `Authorization: Bearer <token>`".to_owned(),
            });
        };
        let reply = self
            .loopback
            .call(
                Credentials::Authorization(authorization),
                method,
                path,
                body,
                headers,
            )
            .await;
        match reply.into_result() {
            Ok(body) => answered(body),
            Err(refusal) => refused(&Refusal {
                message: for_agent(refusal.status, &refusal.message),
                ..refusal
            }),
        }
    }

    /// `GET template`, its `{field}`s filled from `args`, with the other arguments as
    /// the query string.
    async fn read<T: JsonSchema + 'static>(
        &self,
        parts: &Parts,
        template: &str,
        args: Parameters<T>,
    ) -> CallToolResult {
        let sent = args
            .route(template, &[])
            .and_then(|route| Ok(format!("{}{}", route.path, route.query()?)));
        match sent {
            Ok(path) => self.call(parts, Method::GET, &path, None, &[]).await,
            Err(refusal) => refused(&refusal),
        }
    }

    /// `method template`, its `{field}`s filled from `args` and `headers`
    /// (`(field, header name)`) taken from them, with the other arguments as the JSON
    /// body, exactly as the agent sent them.
    async fn write<T: JsonSchema + 'static>(
        &self,
        parts: &Parts,
        method: Method,
        template: &str,
        args: Parameters<T>,
        headers: &[(&str, &'static str)],
    ) -> CallToolResult {
        match args.route(template, headers) {
            Ok(route) => {
                let (path, headers) = (route.path.clone(), route.headers.clone());
                let body = route.body();
                self.call(parts, method, &path, Some(&body), &headers).await
            }
            Err(refusal) => refused(&refusal),
        }
    }

    /// `POST template` without a body: an action named by its path alone (`args`
    /// holds only the path's fields).
    async fn act<T: JsonSchema + 'static>(
        &self,
        parts: &Parts,
        template: &str,
        args: Parameters<T>,
    ) -> CallToolResult {
        match args.route(template, &[]) {
            Ok(route) if route.rest.is_empty() => {
                self.call(parts, Method::POST, &route.path, None, &[]).await
            }
            Ok(route) => refused(&invalid(format!(
                "unexpected arguments {:?}: this tool takes only the fields of its path",
                route.rest.keys().collect::<Vec<_>>()
            ))),
            Err(refusal) => refused(&refusal),
        }
    }
}

#[tool_router]
impl Tools {
    // ---- Interface changes -------------------------------------------------------

    #[tool(
        description = "Draft an interface change: a repo announces that one of its \
interfaces (REST API, MCP tool, CLI, schema, capability) changes, and which repos must \
adapt. Needs the operator role. Returns the change with status `draft` and its `id`; \
nothing is announced until publish_interface_change. 409/422 name what was wrong (an \
unknown or archived repo, a bad date).",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn register_interface_change(
        &self,
        args: Parameters<RegisterInterfaceChange>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.write(&parts, Method::POST, "/interface-changes", args, &[])
            .await
    }

    #[tool(
        description = "List interface changes, newest first, filtered by the announcing \
repo, status (draft, published, resolved), change type or an affected repo. Needs the \
viewer role. Returns {items, next_cursor}: pass next_cursor back as cursor for the next \
page (null on the last).",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_interface_changes(
        &self,
        args: Parameters<ListInterfaceChanges>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/interface-changes", args).await
    }

    #[tool(
        description = "Read one interface change by id: its repo, types, title, \
description, affected paths and repos, planned date, status and timestamps. Needs the \
viewer role. Returns the change.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_interface_change(
        &self,
        args: Parameters<InterfaceChangeId>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/interface-changes/{id}", args).await
    }

    #[tool(
        description = "Edit a draft interface change: only the fields given change \
(planned_for: null clears the date). Needs the operator role. Returns the edited draft; \
a change that is no longer a draft is a 409.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn update_interface_change(
        &self,
        args: Parameters<UpdateInterfaceChange>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.write(&parts, Method::PATCH, "/interface-changes/{id}", args, &[])
            .await
    }

    #[tool(
        description = "Publish a draft interface change: each affected repo gets an inbox \
message a moment later (the notifier delivers it), and the change shows in their \
get_dispatch until resolved. Needs the operator role. Returns the change with status \
`published`; publishing a change that is not a draft is a 409 naming its status.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn publish_interface_change(
        &self,
        args: Parameters<InterfaceChangeId>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.act(&parts, "/interface-changes/{id}/publish", args)
            .await
    }

    #[tool(
        description = "Resolve a published interface change once the affected repos have \
adapted: it leaves their pending changes. Needs the operator role. Returns the change \
with status `resolved`; a change that is not published is a 409 naming its status.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn resolve_interface_change(
        &self,
        args: Parameters<InterfaceChangeId>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.act(&parts, "/interface-changes/{id}/resolve", args)
            .await
    }

    // ---- Repos, inboxes, dispatch -------------------------------------------------

    #[tool(
        description = "List registered repos by slug, optionally of one domain, archived \
ones only on request. Needs the viewer role. Returns {items, next_cursor}.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_repos(
        &self,
        args: Parameters<ListRepos>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/repos", args).await
    }

    #[tool(
        description = "Read one repo by slug: name, domain, remote URL, git fingerprint, \
description, archived_at. Needs the viewer role. Returns the repo.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_repo(
        &self,
        args: Parameters<RepoSlug>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/repos/{slug}", args).await
    }

    #[tool(
        description = "Find the repo of a git remote URL (any usual spelling: https, ssh, \
scp-like): the active one, else the last archived. Use it to learn which repo a checkout \
is. Needs the viewer role. Returns the repo; none is a 404.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn find_repo_by_remote(
        &self,
        args: Parameters<RepoByRemote>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/repos/by-remote", args).await
    }

    #[tool(
        description = "Find the repos with a git fingerprint, optionally narrowed to a \
remote. Needs the viewer role. Returns {items}: the matching repos by slug, possibly \
none.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn find_repos_by_fingerprint(
        &self,
        args: Parameters<ReposByFingerprint>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/repos/by-fingerprint", args).await
    }

    #[tool(
        description = "What an agent starting work on a repo must know: the published, \
unresolved interface changes affecting it (newest first), its unread inbox (count and \
the 20 newest) and its 10 newest progress events. Call it first when you start on a \
repo. Needs the viewer role. Returns {repo_slug, repo, pending_interface_changes, \
unread_inbox_count, unread_inbox, recent_progress, generated_at}.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_dispatch(
        &self,
        args: Parameters<RepoSlug>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/repos/{slug}/dispatch", args).await
    }

    #[tool(
        description = "Read a repo's inbox, newest first, optionally only unread \
messages: each names the interface change and the repo it came from. Needs the viewer \
role. Returns {items, next_cursor}.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_inbox(
        &self,
        args: Parameters<ListInbox>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/repos/{slug}/inbox", args).await
    }

    #[tool(
        description = "Mark one inbox message read; marking it again changes nothing. \
Needs the operator role. Returns the message with its read_at.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn mark_inbox_read(
        &self,
        args: Parameters<MarkInboxRead>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.act(&parts, "/repos/{slug}/inbox/{message_id}/read", args)
            .await
    }

    // ---- Topologies and mutations ------------------------------------------------

    #[tool(
        description = "Create a topology: a named JSON document changed only by \
mutations (enqueue_mutation). Needs the operator role. Returns the topology with its \
`id`, version 0 and status `idle`.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn create_topology(
        &self,
        args: Parameters<CreateTopology>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.write(&parts, Method::POST, "/topologies", args, &[])
            .await
    }

    #[tool(
        description = "List topologies, oldest first. Needs the viewer role. Returns \
{items, next_cursor}; each item has id, name, document, version and status.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_topologies(
        &self,
        args: Parameters<Page>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/topologies", args).await
    }

    #[tool(
        description = "Read one topology: its document, version (the number of \
mutations applied) and status (`idle`, or `pending` while mutations wait to apply). \
Needs the viewer role. Returns the topology.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_topology(
        &self,
        args: Parameters<TopologyId>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/topologies/{id}", args).await
    }

    #[tool(
        description = "Enqueue a mutation: RFC 6902 JSON Patch operations for one \
topology (topology_id), applied by the mutator in order of arrival, a moment after this answers. \
if_version makes it apply only at that version; idempotency_key makes a retry return \
the original. Needs the operator role. Returns the mutation with its `id`, `seq` and \
status `pending`: read it with get_mutation until it is `applied` (with \
applied_version) or `failed` (with the error).",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            open_world_hint = false
        )
    )]
    async fn enqueue_mutation(
        &self,
        args: Parameters<EnqueueMutation>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.write(
            &parts,
            Method::POST,
            "/topologies/{topology_id}/mutations",
            args,
            &[("idempotency_key", "idempotency-key")],
        )
        .await
    }

    #[tool(
        description = "List one topology's mutations in seq order (the order they \
apply), or newest first with order `desc`, optionally only pending, applied or failed \
ones. Needs the viewer role. Returns {items, next_cursor}.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_topology_mutations(
        &self,
        args: Parameters<ListTopologyMutations>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/topologies/{id}/mutations", args).await
    }

    #[tool(
        description = "List every topology's mutations, newest first; status `failed` \
lists the failed work. Needs the viewer role. Returns {items, next_cursor}.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_mutations(
        &self,
        args: Parameters<ListMutations>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/mutations", args).await
    }

    #[tool(
        description = "Read one mutation: its status (`pending`, `applied` with \
applied_version, or `failed` with the error), operations, seq and actor. Needs the \
viewer role. Returns the mutation.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_mutation(
        &self,
        args: Parameters<MutationId>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/mutations/{id}", args).await
    }

    // ---- Plugins, graphs, migrations -----------------------------------------------

    #[tool(
        description = "List registered plugins by name, with their current version. \
Needs the viewer role. Returns {items, next_cursor}.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_plugins(
        &self,
        args: Parameters<Page>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/plugins", args).await
    }

    #[tool(
        description = "Read one plugin with every version and its migration steps. \
Needs the viewer role. Returns the plugin.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_plugin(
        &self,
        args: Parameters<PluginName>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/plugins/{name}", args).await
    }

    #[tool(
        description = "Create a graph of nodes shaped by a registered plugin, at the \
plugin's current version. Needs the operator role. Returns the graph with its \
schema_version and status `ready`; a taken slug is a 409, an unknown plugin a 422.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn create_graph(
        &self,
        args: Parameters<CreateGraph>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.write(&parts, Method::POST, "/graphs", args, &[]).await
    }

    #[tool(
        description = "List graphs by slug. Needs the viewer role. Returns {items, \
next_cursor}; each graph has its plugin, schema_version, status and node_count.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_graphs(
        &self,
        args: Parameters<Page>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/graphs", args).await
    }

    #[tool(
        description = "Read one graph: plugin, schema_version, status (`ready`, \
`migrating`, `migration_failed`), read_only_reason (node writes are refused while \
`migrating`) and node_count. Needs the viewer role. Returns the graph.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_graph(
        &self,
        args: Parameters<GraphSlug>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/graphs/{slug}", args).await
    }

    #[tool(
        description = "List a graph's nodes by id, each with its data and \
schema_version. Needs the viewer role. Returns {items, next_cursor}.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_graph_nodes(
        &self,
        args: Parameters<GraphPage>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/graphs/{slug}/nodes", args).await
    }

    #[tool(
        description = "Request a migration run: the migrator moves every node of the \
graph to target_version (the plugin's current version by default), a moment after this \
answers. Needs the operator role. Returns the run with status `pending`; follow it with \
list_migrations. A graph with a run already pending or running, or already at the \
target version, is a 409; a target_version the plugin does not have, or below the \
graph's, is a 422.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn request_migration(
        &self,
        args: Parameters<RequestMigration>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.write(&parts, Method::POST, "/graphs/{slug}/re-migrate", args, &[])
            .await
    }

    #[tool(
        description = "A graph's migration history, newest first: each run's status \
(pending, running, succeeded, failed, cancelled), error, processed/total and times. \
Needs the viewer role. Returns {items, next_cursor}.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_migrations(
        &self,
        args: Parameters<GraphPage>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/graphs/{slug}/migrations", args).await
    }

    #[tool(
        description = "Cancel a migration run, the way back to a `ready` graph at its \
current version: a pending run, or the failed run that left the graph \
`migration_failed`, is cancelled at once; a running one stops at its next batch \
(cancel_requested_at is set). Needs the operator role. Returns the run; a run that \
already ended is a 409.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            open_world_hint = false
        )
    )]
    async fn cancel_migration(
        &self,
        args: Parameters<CancelMigration>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.act(&parts, "/graphs/{slug}/migrations/{run_id}/cancel", args)
            .await
    }

    // ---- The forge cache (RFCs from Gitea) ----------------------------------------

    #[tool(
        description = "List the cached RFCs by slug, without bodies, filtered by state, \
tag, or whether they are gone from the meta repo. Needs the viewer role. Returns \
{items, next_cursor}.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_rfcs(
        &self,
        args: Parameters<ListRfcs>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/rfcs", args).await
    }

    #[tool(
        description = "Read one cached RFC: front matter, body, its repo's RFC.md and \
counts of branches and pull requests. Needs the viewer role. Returns the RFC.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_rfc(
        &self,
        args: Parameters<RfcSlug>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/rfcs/{slug}", args).await
    }

    #[tool(
        description = "List an RFC's cached branches, optionally only active or deleted \
ones. Needs the viewer role. Returns {items, next_cursor}.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_rfc_branches(
        &self,
        args: Parameters<ListRfcBranches>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/rfcs/{slug}/branches", args).await
    }

    #[tool(
        description = "List an RFC's pull requests (in the meta repo and its own repo) \
by repo and number, filtered by state and kind. Needs the viewer role. Returns {items, \
next_cursor}.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_rfc_pulls(
        &self,
        args: Parameters<ListRfcPulls>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/rfcs/{slug}/pulls", args).await
    }

    #[tool(
        description = "List every RFC's pull requests by repo and number; kind `idea` \
with state `open` is the pending ideas. Needs the viewer role. Returns {items, \
next_cursor}.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_pulls(
        &self,
        args: Parameters<ListPulls>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/forge/pulls", args).await
    }

    #[tool(
        description = "List the Gitea repos the forge cache follows (the meta repo and \
each RFC's own), with what was last read from each. Needs the viewer role. Returns \
{items, next_cursor}.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_forge_repos(
        &self,
        args: Parameters<Page>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/forge/repos", args).await
    }

    #[tool(
        description = "List the RFC files the forge cache could not parse, with the \
reason. Needs the viewer role. Returns {items, next_cursor}.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_parse_errors(
        &self,
        args: Parameters<Page>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/forge/parse-errors", args).await
    }

    #[tool(
        description = "List the forge cache's sweeps, newest first: trigger, repos \
read, changes, Gitea calls, unreachable repos and duration. Needs the viewer role. \
Returns {items, next_cursor}.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_sweeps(
        &self,
        args: Parameters<Page>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/forge/sweeps", args).await
    }

    // ---- Audit ---------------------------------------------------------------------

    #[tool(
        description = "Read the audit trail, newest first: who did what to which repo, \
interface change, inbox message, plugin, graph or forge entity, optionally one entity \
kind or one entity (entity and key). Needs the admin role. Returns {items, \
next_cursor}.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_audit(
        &self,
        args: Parameters<ListAudit>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/audit", args).await
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("switchyard", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPOLOGY: &str = "0192f5e4-8c2a-7b1e-9d3f-5a6b7c8d9e0f";

    #[test]
    fn arguments_cannot_leave_their_path_segment() {
        assert_eq!(segment("dc-east"), "dc-east");
        assert_eq!(segment("../audit?x=1"), "..%2Faudit%3Fx%3D1");
        assert_eq!(segment("a b#c"), "a%20b%23c");
        let route = Parameters::<GraphSlug>::sent(json!({"slug": "../audit?x=1"}))
            .route("/graphs/{slug}", &[])
            .unwrap();
        assert_eq!(route.path, "/graphs/..%2Faudit%3Fx%3D1");
    }

    #[test]
    fn a_write_sends_exactly_the_arguments_given() {
        let route = Parameters::<EnqueueMutation>::sent(json!({
            "topology_id": TOPOLOGY,
            "ops": [{"op": "add", "path": "/a", "value": 1}],
            "if_version": null,
            "idempotency_key": "retry-1",
        }))
        .route(
            "/topologies/{topology_id}/mutations",
            &[("idempotency_key", "idempotency-key")],
        )
        .unwrap();
        assert_eq!(route.path, format!("/topologies/{TOPOLOGY}/mutations"));
        assert_eq!(
            route.headers,
            vec![("idempotency-key", "retry-1".to_owned())]
        );
        // `null` stays `null`, a wrong type stays as sent: the API answers for both.
        assert_eq!(
            route.body(),
            json!({"ops": [{"op": "add", "path": "/a", "value": 1}], "if_version": null})
        );
        let route = Parameters::<UpdateInterfaceChange>::sent(json!({
            "id": TOPOLOGY, "title": null, "if_it_were": 3,
        }))
        .route("/interface-changes/{id}", &[]);
        assert_eq!(
            route.unwrap_err().message,
            "unknown argument `if_it_were`: this tool takes `affected_paths`, \
`affected_repo_slugs`, `author`, `change_type`, `description`, `id`, `interface_type`, \
`planned_for`, `title`"
        );
        let route = Parameters::<UpdateInterfaceChange>::sent(json!({
            "id": TOPOLOGY, "title": null,
        }))
        .route("/interface-changes/{id}", &[])
        .unwrap();
        assert_eq!(route.body(), json!({"title": null}));
    }

    #[test]
    fn path_and_header_fields_are_checked_by_name() {
        let refusal = |arguments: Value| {
            let refusal = Parameters::<EnqueueMutation>::sent(arguments)
                .route(
                    "/topologies/{topology_id}/mutations",
                    &[("idempotency_key", "idempotency-key")],
                )
                .unwrap_err();
            assert_eq!(
                (refusal.status, refusal.code.as_str()),
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_arguments")
            );
            refusal.message
        };
        assert_eq!(
            refusal(json!({"topology_id": "not-a-uuid", "ops": []})),
            "`topology_id` must be a UUID, such as `0192f5e4-8c2a-7b1e-9d3f-5a6b7c8d9e0f`; \
\"not-a-uuid\" is not one"
        );
        assert_eq!(
            refusal(json!({"topology_id": 7, "ops": []})),
            "`topology_id` must be a UUID, not the number 7"
        );
        assert!(
            refusal(json!({"ops": []})).starts_with("missing argument `topology_id`: The topology"),
            "{}",
            refusal(json!({"ops": []}))
        );
        assert_eq!(
            refusal(json!({"topology_id": TOPOLOGY, "ops": [], "idempotency_key": "é\n"})),
            "`idempotency_key` must be printable ASCII: it is sent as the `idempotency-key` header"
        );
        assert_eq!(
            refusal(json!({"topology_id": TOPOLOGY, "ops": [], "idempotency_key": null})),
            "`idempotency_key` must be a string, not null"
        );
    }

    #[test]
    fn a_read_sends_its_scalars_as_the_query() {
        let route = Parameters::<ListTopologyMutations>::sent(json!({
            "id": TOPOLOGY, "status": "failed", "limit": 5,
        }))
        .route("/topologies/{id}/mutations", &[])
        .unwrap();
        assert_eq!(route.path, format!("/topologies/{TOPOLOGY}/mutations"));
        // In key order (serde_json sorts an object's keys).
        assert_eq!(route.query().unwrap(), "?limit=5&status=failed");
        let odd = Parameters::<ListRfcs>::sent(json!({"tag": "a&b=c", "missing": false}))
            .route("/rfcs", &[])
            .unwrap();
        assert_eq!(odd.query().unwrap(), "?missing=false&tag=a%26b%3Dc");
        let none = Parameters::<TopologyId>::sent(json!({"id": TOPOLOGY}))
            .route("/topologies/{id}", &[])
            .unwrap();
        assert_eq!(none.query().unwrap(), "");
        let query = |arguments: Value| {
            Parameters::<ListMutations>::sent(arguments)
                .route("/mutations", &[])
                .unwrap()
                .query()
                .unwrap_err()
                .message
        };
        assert_eq!(
            query(json!({"status": null})),
            "`status` cannot be null: leave it out instead"
        );
        assert_eq!(
            query(json!({"limit": [5]})),
            "`limit` must be a single value, not an array"
        );
    }

    #[test]
    fn api_texts_lose_the_position_in_a_body_the_agent_never_wrote() {
        let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
        assert_eq!(
            for_agent(
                unprocessable,
                "Failed to deserialize the JSON body into the target type: interface_type: \
unknown variant `graphql`, expected one of `rest_api`, `cli` at line 1 column 118"
            ),
            "interface_type: unknown variant `graphql`, expected one of `rest_api`, `cli`"
        );
        assert_eq!(
            for_agent(
                unprocessable,
                "Failed to deserialize query string: limit: invalid digit found in string"
            ),
            "limit: invalid digit found in string"
        );
        assert_eq!(
            for_agent(unprocessable, "body: expected i32 at line 1 column 20"),
            "body: expected i32"
        );
        // Only a real position goes, and only from a 400 or 422.
        let title = "title \"meet at line 3 column four\" is too long";
        assert_eq!(for_agent(unprocessable, title), title);
        let conflict = "a migration at line 1 column 2";
        assert_eq!(for_agent(StatusCode::CONFLICT, conflict), conflict);
    }

    #[test]
    fn schemas_allow_null_only_where_the_api_does() {
        let nullable = [
            ("register_interface_change", "planned_for"),
            ("update_interface_change", "planned_for"),
            ("enqueue_mutation", "if_version"),
            ("request_migration", "target_version"),
        ];
        let tools = Tools::router().list_all();
        assert!(tools.len() >= 38, "{} tools", tools.len());
        let mut seen = Vec::new();
        for tool in &tools {
            let description = tool.description.as_deref().unwrap_or_default();
            assert!(
                description.contains("Needs the "),
                "{} does not say which role it needs",
                tool.name
            );
            assert_eq!(tool.input_schema["type"], "object", "{}", tool.name);
            assert_eq!(
                tool.input_schema["additionalProperties"], false,
                "{}",
                tool.name
            );
            let properties = tool.input_schema["properties"].as_object().unwrap();
            for (field, property) in properties {
                let at = (tool.name.as_ref(), field.as_str());
                assert!(property["description"].is_string(), "{at:?}: {property}");
                assert!(property.get("writeOnly").is_none(), "{at:?}: {property}");
                let types = match &property["type"] {
                    Value::Array(types) => types.clone(),
                    other => vec![other.clone()],
                };
                if types.contains(&json!("null")) {
                    seen.push(at);
                }
                if ["id", "topology_id", "message_id", "run_id"].contains(&field.as_str()) {
                    assert_eq!(property["format"], "uuid", "{at:?}");
                }
            }
        }
        seen.sort();
        let mut expected = nullable.to_vec();
        expected.sort();
        assert_eq!(seen, expected);
        // A topology's document is any JSON value, null too (no `type` at all).
        let create = Tools::router().get("create_topology").cloned().unwrap();
        assert!(
            create.input_schema["properties"]["document"]
                .get("type")
                .is_none(),
            "{}",
            create.input_schema["properties"]["document"]
        );
    }

    #[test]
    fn schemas_name_what_each_tool_needs() {
        let get = Tools::router().get("get_topology").cloned().unwrap();
        assert_eq!(get.input_schema["required"], json!(["id"]));
        let enqueue = Tools::router().get("enqueue_mutation").cloned().unwrap();
        let properties = &enqueue.input_schema["properties"];
        assert!(properties["idempotency_key"].is_object(), "{properties}");
        assert_eq!(properties["ops"]["items"]["type"], "object");
        assert_eq!(
            enqueue.input_schema["required"],
            json!(["topology_id", "ops"])
        );
        let list = Tools::router().get("list_mutations").cloned().unwrap();
        assert_eq!(
            list.input_schema["properties"]["status"]["enum"],
            json!(["pending", "applied", "failed"])
        );
        assert!(
            list.input_schema
                .get("required")
                .is_none_or(|r| r == &json!([]))
        );
        let register = Tools::router()
            .get("register_interface_change")
            .cloned()
            .unwrap();
        assert_eq!(
            register.input_schema["properties"]["planned_for"]["format"],
            "date"
        );
        assert_eq!(
            register.input_schema["properties"]["author"]["type"],
            "string"
        );
        assert_eq!(
            register.input_schema["required"],
            json!([
                "repo_slug",
                "interface_type",
                "change_type",
                "title",
                "description",
                "affected_paths",
                "affected_repo_slugs"
            ])
        );
    }
}
