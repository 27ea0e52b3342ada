//! The tools: each one request to an `/api/v1` route through [`Loopback`], as the
//! caller.
//!
//! A tool never reads or writes the database: it forwards the `Authorization` header
//! of the HTTP request that carried the call, so the route's own role check,
//! validation, transaction, audit row and event apply, exactly as for a curl client.
//! Its answer is the route's JSON as structured content (a bare array is wrapped as
//! `{"items": [...]}`, since structured content is an object) and as text; a refusal
//! is a tool error whose text is the status and the API's message, for example
//! `403 Forbidden: this operation needs the operator role; your token has viewer`.

use axum::http::request::Parts;
use axum::http::{Method, header};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use serde::Serialize;
use serde_json::{Value, json};

use super::params::*;
use crate::loopback::{Credentials, Loopback, Refusal};

/// What an agent is told about the server when it connects.
const INSTRUCTIONS: &str = "switchyard: topologies edited by JSON Patch mutations, repos \
and the interface changes they announce to each other, plugin-shaped graphs and their \
migrations, and a cache of RFCs from Gitea. Each tool is one call of the HTTP API \
(/api/v1) with your bearer token: roles are the API's (viewer reads; operator also \
does the day's work; admin also reads the audit trail). Lists are paged: pass \
`next_cursor` back as `cursor` until it is null. Writes answer at once; the workers \
apply the work a moment later (a mutation is `pending`, then `applied` or `failed`: \
read it again with get_mutation). A refusal is a tool error starting with the HTTP \
status, then the API's message saying what was wrong.";

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

/// `text` as one path segment: everything but RFC 3986's unreserved characters is
/// percent-encoded, so a `/` or `?` in an argument cannot reach another route.
fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The serialized fields of `params` (path fields skip serializing) as a query
/// string, `?a=1&b=x`, or nothing when there are none.
fn query(params: &impl Serialize) -> String {
    let Ok(Value::Object(fields)) = serde_json::to_value(params) else {
        return String::new();
    };
    let mut query = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (key, value) in fields {
        let text = match value {
            Value::Null => continue,
            Value::String(text) => text,
            other => other.to_string(),
        };
        query.append_pair(&key, &text);
        any = true;
    }
    if any {
        format!("?{}", query.finish())
    } else {
        String::new()
    }
}

/// A refusal of the API as a tool error: `403 Forbidden: <the API's message>` as
/// text, and `{"error": {"status", "code", "message"}}` as structured content.
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
    /// carried this tool call.
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
                status: axum::http::StatusCode::UNAUTHORIZED,
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
            Err(refusal) => refused(&refusal),
        }
    }

    /// `GET path` with the serialized fields of `params` as its query string.
    async fn read(&self, parts: &Parts, path: &str, params: &impl Serialize) -> CallToolResult {
        let path = format!("{path}{}", query(params));
        self.call(parts, Method::GET, &path, None, &[]).await
    }

    /// `method path` with the serialized fields of `params` as its JSON body.
    async fn write(
        &self,
        parts: &Parts,
        method: Method,
        path: &str,
        params: &impl Serialize,
    ) -> CallToolResult {
        let body = match serde_json::to_value(params) {
            Ok(body) => body,
            Err(e) => {
                return refused(&Refusal {
                    status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                    code: "invalid_request".to_owned(),
                    message: format!("the arguments cannot be sent: {e}"),
                });
            }
        };
        self.call(parts, method, path, Some(&body), &[]).await
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
        Parameters(p): Parameters<RegisterInterfaceChange>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.write(&parts, Method::POST, "/interface-changes", &p)
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
        Parameters(p): Parameters<ListInterfaceChanges>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/interface-changes", &p).await
    }

    #[tool(
        description = "Read one interface change by id: its repo, types, title, \
description, affected paths and repos, planned date, status and timestamps. Needs the \
viewer role. Returns the change.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_interface_change(
        &self,
        Parameters(p): Parameters<InterfaceChangeId>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(
            &parts,
            &format!("/interface-changes/{}", segment(&p.id)),
            &p,
        )
        .await
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
        Parameters(p): Parameters<UpdateInterfaceChange>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        let path = format!("/interface-changes/{}", segment(&p.id));
        self.write(&parts, Method::PATCH, &path, &p).await
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
        Parameters(p): Parameters<InterfaceChangeId>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        let path = format!("/interface-changes/{}/publish", segment(&p.id));
        self.call(&parts, Method::POST, &path, None, &[]).await
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
        Parameters(p): Parameters<InterfaceChangeId>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        let path = format!("/interface-changes/{}/resolve", segment(&p.id));
        self.call(&parts, Method::POST, &path, None, &[]).await
    }

    // ---- Repos, inboxes, dispatch -------------------------------------------------

    #[tool(
        description = "List registered repos by slug, optionally of one domain, archived \
ones only on request. Needs the viewer role. Returns {items, next_cursor}.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_repos(
        &self,
        Parameters(p): Parameters<ListRepos>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/repos", &p).await
    }

    #[tool(
        description = "Read one repo by slug: name, domain, remote URL, git fingerprint, \
description, archived_at. Needs the viewer role. Returns the repo.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_repo(
        &self,
        Parameters(p): Parameters<RepoSlug>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, &format!("/repos/{}", segment(&p.slug)), &p)
            .await
    }

    #[tool(
        description = "Find the repo of a git remote URL (any usual spelling: https, ssh, \
scp-like): the active one, else the last archived. Use it to learn which repo a checkout \
is. Needs the viewer role. Returns the repo; none is a 404.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn find_repo_by_remote(
        &self,
        Parameters(p): Parameters<RepoByRemote>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/repos/by-remote", &p).await
    }

    #[tool(
        description = "Find the repos with a git fingerprint, optionally narrowed to a \
remote. Needs the viewer role. Returns {items}: the matching repos by slug, possibly \
none.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn find_repos_by_fingerprint(
        &self,
        Parameters(p): Parameters<ReposByFingerprint>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/repos/by-fingerprint", &p).await
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
        Parameters(p): Parameters<RepoSlug>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        let path = format!("/repos/{}/dispatch", segment(&p.slug));
        self.read(&parts, &path, &p).await
    }

    #[tool(
        description = "Read a repo's inbox, newest first, optionally only unread \
messages: each names the interface change and the repo it came from. Needs the viewer \
role. Returns {items, next_cursor}.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_inbox(
        &self,
        Parameters(p): Parameters<ListInbox>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        let path = format!("/repos/{}/inbox", segment(&p.slug));
        self.read(&parts, &path, &p).await
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
        Parameters(p): Parameters<MarkInboxRead>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        let path = format!(
            "/repos/{}/inbox/{}/read",
            segment(&p.slug),
            segment(&p.message_id)
        );
        self.call(&parts, Method::POST, &path, None, &[]).await
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
        Parameters(p): Parameters<CreateTopology>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.write(&parts, Method::POST, "/topologies", &p).await
    }

    #[tool(
        description = "List topologies, oldest first. Needs the viewer role. Returns \
{items, next_cursor}; each item has id, name, document, version and status.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_topologies(
        &self,
        Parameters(p): Parameters<Page>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/topologies", &p).await
    }

    #[tool(
        description = "Read one topology: its document, version (the number of \
mutations applied) and status (`idle`, or `pending` while mutations wait to apply). \
Needs the viewer role. Returns the topology.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_topology(
        &self,
        Parameters(p): Parameters<TopologyId>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, &format!("/topologies/{}", segment(&p.id)), &p)
            .await
    }

    #[tool(
        description = "Enqueue a mutation: RFC 6902 JSON Patch operations for one \
topology, applied by the mutator in order of arrival, a moment after this answers. \
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
        Parameters(p): Parameters<EnqueueMutation>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        let path = format!("/topologies/{}/mutations", segment(&p.id));
        let body = match serde_json::to_value(&p) {
            Ok(body) => body,
            Err(e) => return answered(json!({ "error": e.to_string() })),
        };
        let headers: Vec<(&'static str, String)> = p
            .idempotency_key
            .iter()
            .map(|key| ("idempotency-key", key.clone()))
            .collect();
        self.call(&parts, Method::POST, &path, Some(&body), &headers)
            .await
    }

    #[tool(
        description = "List one topology's mutations in seq order (the order they \
apply), optionally only pending, applied or failed ones. Needs the viewer role. Returns \
{items, next_cursor}.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_topology_mutations(
        &self,
        Parameters(p): Parameters<ListTopologyMutations>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        let path = format!("/topologies/{}/mutations", segment(&p.id));
        self.read(&parts, &path, &p).await
    }

    #[tool(
        description = "List every topology's mutations, newest first; status `failed` \
lists the failed work. Needs the viewer role. Returns {items, next_cursor}.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_mutations(
        &self,
        Parameters(p): Parameters<ListMutations>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/mutations", &p).await
    }

    #[tool(
        description = "Read one mutation: its status (`pending`, `applied` with \
applied_version, or `failed` with the error), operations, seq and actor. Needs the \
viewer role. Returns the mutation.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_mutation(
        &self,
        Parameters(p): Parameters<MutationId>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, &format!("/mutations/{}", segment(&p.id)), &p)
            .await
    }

    // ---- Plugins, graphs, migrations -----------------------------------------------

    #[tool(
        description = "List registered plugins by name, with their current version. \
Needs the viewer role. Returns {items, next_cursor}.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_plugins(
        &self,
        Parameters(p): Parameters<Page>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/plugins", &p).await
    }

    #[tool(
        description = "Read one plugin with every version and its migration steps. \
Needs the viewer role. Returns the plugin.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_plugin(
        &self,
        Parameters(p): Parameters<PluginName>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, &format!("/plugins/{}", segment(&p.name)), &p)
            .await
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
        Parameters(p): Parameters<CreateGraph>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.write(&parts, Method::POST, "/graphs", &p).await
    }

    #[tool(
        description = "List graphs by slug. Needs the viewer role. Returns {items, \
next_cursor}; each graph has its plugin, schema_version, status and node_count.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_graphs(
        &self,
        Parameters(p): Parameters<Page>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/graphs", &p).await
    }

    #[tool(
        description = "Read one graph: plugin, schema_version, status (`ready`, \
`migrating`, `migration_failed`), read_only_reason (node writes are refused while \
`migrating`) and node_count. Needs the viewer role. Returns the graph.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_graph(
        &self,
        Parameters(p): Parameters<GraphSlug>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, &format!("/graphs/{}", segment(&p.slug)), &p)
            .await
    }

    #[tool(
        description = "List a graph's nodes by id, each with its data and \
schema_version. Needs the viewer role. Returns {items, next_cursor}.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_graph_nodes(
        &self,
        Parameters(p): Parameters<GraphPage>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        let path = format!("/graphs/{}/nodes", segment(&p.slug));
        self.read(&parts, &path, &p).await
    }

    #[tool(
        description = "Request a migration run: the migrator moves every node of the \
graph to target_version (the plugin's current version by default), a moment after this \
answers. Needs the operator role. Returns the run with status `pending`; follow it with \
list_migrations. A graph already migrating is a 409.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn request_migration(
        &self,
        Parameters(p): Parameters<RequestMigration>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        let path = format!("/graphs/{}/re-migrate", segment(&p.slug));
        self.write(&parts, Method::POST, &path, &p).await
    }

    #[tool(
        description = "A graph's migration history, newest first: each run's status \
(pending, running, succeeded, failed, cancelled), error, processed/total and times. \
Needs the viewer role. Returns {items, next_cursor}.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_migrations(
        &self,
        Parameters(p): Parameters<GraphPage>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        let path = format!("/graphs/{}/migrations", segment(&p.slug));
        self.read(&parts, &path, &p).await
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
        Parameters(p): Parameters<CancelMigration>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        let path = format!(
            "/graphs/{}/migrations/{}/cancel",
            segment(&p.slug),
            segment(&p.run_id)
        );
        self.call(&parts, Method::POST, &path, None, &[]).await
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
        Parameters(p): Parameters<ListRfcs>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/rfcs", &p).await
    }

    #[tool(
        description = "Read one cached RFC: front matter, body, its repo's RFC.md and \
counts of branches and pull requests. Needs the viewer role. Returns the RFC.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_rfc(
        &self,
        Parameters(p): Parameters<RfcSlug>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, &format!("/rfcs/{}", segment(&p.slug)), &p)
            .await
    }

    #[tool(
        description = "List an RFC's cached branches, optionally only active or deleted \
ones. Needs the viewer role. Returns {items, next_cursor}.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_rfc_branches(
        &self,
        Parameters(p): Parameters<ListRfcBranches>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        let path = format!("/rfcs/{}/branches", segment(&p.slug));
        self.read(&parts, &path, &p).await
    }

    #[tool(
        description = "List an RFC's pull requests (in the meta repo and its own repo) \
by repo and number, filtered by state and kind. Needs the viewer role. Returns {items, \
next_cursor}.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_rfc_pulls(
        &self,
        Parameters(p): Parameters<ListRfcPulls>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        let path = format!("/rfcs/{}/pulls", segment(&p.slug));
        self.read(&parts, &path, &p).await
    }

    #[tool(
        description = "List every RFC's pull requests by repo and number; kind `idea` \
with state `open` is the pending ideas. Needs the viewer role. Returns {items, \
next_cursor}.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_pulls(
        &self,
        Parameters(p): Parameters<ListPulls>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/forge/pulls", &p).await
    }

    #[tool(
        description = "List the Gitea repos the forge cache follows (the meta repo and \
each RFC's own), with what was last read from each. Needs the viewer role. Returns \
{items, next_cursor}.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_forge_repos(
        &self,
        Parameters(p): Parameters<Page>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/forge/repos", &p).await
    }

    #[tool(
        description = "List the RFC files the forge cache could not parse, with the \
reason. Needs the viewer role. Returns {items, next_cursor}.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_parse_errors(
        &self,
        Parameters(p): Parameters<Page>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/forge/parse-errors", &p).await
    }

    #[tool(
        description = "List the forge cache's sweeps, newest first: trigger, repos \
read, changes, Gitea calls, unreachable repos and duration. Needs the viewer role. \
Returns {items, next_cursor}.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_sweeps(
        &self,
        Parameters(p): Parameters<Page>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/forge/sweeps", &p).await
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
        Parameters(p): Parameters<ListAudit>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.read(&parts, "/audit", &p).await
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

    #[test]
    fn arguments_cannot_leave_their_path_segment() {
        assert_eq!(segment("dc-east"), "dc-east");
        assert_eq!(segment("../audit?x=1"), "..%2Faudit%3Fx%3D1");
        assert_eq!(segment("a b#c"), "a%20b%23c");
    }

    #[test]
    fn path_fields_stay_out_of_the_query() {
        let params = ListTopologyMutations {
            id: "t1".to_owned(),
            status: Some("failed".to_owned()),
            limit: Some(5),
            cursor: None,
        };
        // In key order (serde_json sorts an object's keys).
        assert_eq!(query(&params), "?limit=5&status=failed");
        assert_eq!(
            query(&TopologyId {
                id: "t1".to_owned()
            }),
            ""
        );
        let odd = ListRfcs {
            tag: Some("a&b=c".to_owned()),
            missing: Some(false),
            ..ListRfcs::default()
        };
        assert_eq!(query(&odd), "?missing=false&tag=a%26b%3Dc");
    }

    #[test]
    fn every_tool_has_a_description_and_an_object_schema() {
        let tools = Tools::router().list_all();
        assert!(tools.len() >= 38, "{} tools", tools.len());
        for tool in tools {
            let description = tool.description.as_deref().unwrap_or_default();
            assert!(
                description.contains("Needs the "),
                "{} does not say which role it needs",
                tool.name
            );
            assert_eq!(tool.input_schema["type"], "object", "{}", tool.name);
        }
        let get = Tools::router().get("get_topology").cloned().unwrap();
        assert_eq!(get.input_schema["required"], json!(["id"]));
        let enqueue = Tools::router().get("enqueue_mutation").cloned().unwrap();
        let properties = &enqueue.input_schema["properties"];
        assert!(properties["idempotency_key"].is_object(), "{properties}");
        assert_eq!(enqueue.input_schema["required"], json!(["id", "ops"]));
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
    }
}
