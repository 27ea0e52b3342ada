//! The MCP server at `/mcp`, driven by a client nobody here wrote: the official MCP
//! Python SDK (PyPI `mcp`, pinned and installed by `scripts/test`), through
//! `mcp_client.py`. Each tool's effect is checked over plain HTTP.

use crate::harness;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use harness::{TestFleet, client_with, eventually, token};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use switchyard_api::auth::Role;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// What to do when the SDK is missing.
const INSTALL_HINT: &str = "run scripts/test, or `. scripts/services.sh && install_mcp_sdk` (it installs the pinned MCP Python SDK into .switchyard/venv and exports MCP_PYTHON)";

/// The python of the venv holding the MCP SDK: `MCP_PYTHON` (exported by
/// `scripts/test`), else `.switchyard/venv`'s. A missing SDK fails the test, never skips
/// it. Checked once per test process.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let python = std::env::var_os("MCP_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../.switchyard/venv/bin/python"
                ))
            });
        let probe = std::process::Command::new(&python)
            .args([
                "-c",
                "import importlib.metadata as m; print(m.version('mcp'))",
            ])
            .output();
        match probe {
            Ok(out) if out.status.success() => python,
            Ok(out) => panic!(
                "the MCP Python SDK is not installed for {} ({}); {INSTALL_HINT}",
                python.display(),
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or_default()
            ),
            Err(e) => panic!("cannot run {} ({e}); {INSTALL_HINT}", python.display()),
        }
    })
}

/// One MCP session of the Python SDK, over `/mcp`, as one token.
struct Mcp {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    protocol_version: String,
}

/// One `tools/call` answer, as the SDK read it.
#[derive(Debug)]
struct ToolResult {
    is_error: bool,
    text: String,
    structured: Value,
}

impl Mcp {
    /// Connects as `token`, in `mode` (`auto`: the SDK negotiates; `legacy`: the
    /// initialize handshake, with a session). `Err` with the client's
    /// `{"error", "http_statuses"}` when the connection is refused.
    async fn connect(fleet: &TestFleet, token: &str, mode: &str) -> Result<Self, Value> {
        let mut child = Command::new(python())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/e2e/mcp_client.py"
            ))
            .arg(format!("{}/mcp", fleet.base))
            .arg(mode)
            .env("MCP_TOKEN", token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("starting the MCP client");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let hello = next_line(&mut stdout).await;
        if hello["connected"] != true {
            let _ = child.wait().await;
            return Err(hello);
        }
        Ok(Self {
            child,
            stdin,
            stdout,
            protocol_version: hello["protocol_version"].as_str().unwrap().to_owned(),
        })
    }

    async fn ask(&mut self, request: Value) -> Value {
        let line = format!("{request}\n");
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
        let answer = next_line(&mut self.stdout).await;
        assert!(
            answer.get("error").is_none(),
            "the SDK failed on {request}: {}",
            answer["error"]
        );
        answer
    }

    /// Every tool as listed: `{name, description, inputSchema}`.
    async fn list_tools(&mut self) -> Vec<Value> {
        let answer = self.ask(json!({"list_tools": true})).await;
        answer["tools"].as_array().unwrap().clone()
    }

    async fn call(&mut self, tool: &str, arguments: Value) -> ToolResult {
        let answer = self
            .ask(json!({"call": tool, "arguments": arguments}))
            .await;
        ToolResult {
            is_error: answer["isError"].as_bool().unwrap(),
            text: answer["text"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap())
                .collect::<Vec<_>>()
                .join("\n"),
            structured: answer["structuredContent"].clone(),
        }
    }

    /// A call that must succeed: its structured content (the API's JSON), which its
    /// text must also carry.
    async fn ok(&mut self, tool: &str, arguments: Value) -> Value {
        let result = self.call(tool, arguments).await;
        assert!(!result.is_error, "{tool} failed: {}", result.text);
        let text: Value = serde_json::from_str(&result.text).expect("the text is the JSON");
        assert_eq!(
            text, result.structured,
            "{tool}: text and structured content"
        );
        result.structured
    }

    /// Ends the session (the SDK sends DELETE for a session it holds).
    async fn close(mut self) {
        drop(self.stdin);
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the MCP client did not exit")
            .unwrap();
        assert!(status.success(), "the MCP client exited with {status}");
    }
}

async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the MCP client did not answer within 60 s")
        .unwrap()
        .expect("the MCP client exited without answering");
    serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON from the client: {line}"))
}

/// The API's answer to `method path` as `token`: for comparing with a tool's.
async fn http(
    fleet: &TestFleet,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = client_with(token).request(method, fleet.url(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    harness::read(request.send().await.unwrap()).await
}

/// Registers repos `billing` and `web` and plugin `netbox` (version 1), as an admin.
async fn registry(fleet: &TestFleet) {
    for (slug, name) in [("billing", "Billing"), ("web", "Web")] {
        let (status, body) = fleet
            .post("/repos", json!({"slug": slug, "name": name}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = fleet
        .post(
            "/plugins",
            json!({"name": "netbox", "versions": [{"version": 1, "steps": []}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

const ORIGINAL_TOOLS: [&str; 4] = [
    "register_interface_change",
    "list_interface_changes",
    "publish_interface_change",
    "resolve_interface_change",
];

const OTHER_TOOLS: [&str; 34] = [
    "get_interface_change",
    "update_interface_change",
    "get_dispatch",
    "list_repos",
    "get_repo",
    "find_repo_by_remote",
    "find_repos_by_fingerprint",
    "list_inbox",
    "mark_inbox_read",
    "create_topology",
    "list_topologies",
    "get_topology",
    "enqueue_mutation",
    "list_topology_mutations",
    "list_mutations",
    "get_mutation",
    "list_plugins",
    "get_plugin",
    "create_graph",
    "list_graphs",
    "get_graph",
    "list_graph_nodes",
    "request_migration",
    "list_migrations",
    "cancel_migration",
    "list_rfcs",
    "get_rfc",
    "list_rfc_branches",
    "list_rfc_pulls",
    "list_pulls",
    "list_forge_repos",
    "list_parse_errors",
    "list_sweeps",
    "list_audit",
];

#[sqlx::test(migrations = "../migrations")]
async fn every_tool_is_listed_with_a_description_and_an_input_schema(pool: PgPool) {
    let fleet = TestFleet::api_only(&pool).await;
    let viewer = token(&fleet.config, Role::Viewer);
    // Both eras: the SDK's own negotiation (the stateless 2026-07-28 revision, with
    // these pins), and the initialize handshake of the revisions before it (sessions).
    let mut versions = Vec::new();
    for mode in ["auto", "legacy"] {
        let mut mcp = Mcp::connect(&fleet, &viewer, mode).await.unwrap();
        versions.push(mcp.protocol_version.clone());
        let tools = mcp.list_tools().await;
        let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
        for name in ORIGINAL_TOOLS.iter().chain(&OTHER_TOOLS) {
            assert!(
                names.contains(name),
                "{mode}: {name} is not listed: {names:?}"
            );
        }
        assert_eq!(names.len(), ORIGINAL_TOOLS.len() + OTHER_TOOLS.len());
        for tool in &tools {
            let name = &tool["name"];
            let description = tool["description"].as_str().unwrap_or_default();
            assert!(
                description.len() > 60 && description.contains("Needs the "),
                "{name}: {description:?} does not say what it does and which role it needs"
            );
            let schema = &tool["inputSchema"];
            assert_eq!(schema["type"], "object", "{name}: {schema}");
            for (field, property) in schema["properties"].as_object().unwrap() {
                assert!(
                    property["description"].is_string(),
                    "{name}.{field} has no description: {property}"
                );
            }
        }
        let enqueue = tools
            .iter()
            .find(|t| t["name"] == "enqueue_mutation")
            .unwrap();
        assert_eq!(
            enqueue["inputSchema"]["required"],
            json!(["topology_id", "ops"])
        );
        let register = tools
            .iter()
            .find(|t| t["name"] == "register_interface_change")
            .unwrap();
        assert_eq!(
            register["inputSchema"]["properties"]["change_type"]["enum"],
            json!(["breaking", "additive", "deprecation", "removal"])
        );
        mcp.close().await;
    }
    assert!(versions[1].starts_with("2025-"), "{versions:?}");
    assert_ne!(
        versions[0], versions[1],
        "both connections used one revision"
    );
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn write_tools_act_through_the_api(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    registry(&fleet).await;
    let operator = token(&fleet.config, Role::Operator);
    let mut mcp = Mcp::connect(&fleet, &operator, "auto").await.unwrap();

    // create_topology, then enqueue_mutation: applied by the mutator.
    let topology = mcp
        .ok(
            "create_topology",
            json!({"name": "edge", "document": {"n": 0}}),
        )
        .await;
    let id = topology["id"].as_str().unwrap().to_owned();
    let (status, shown) = fleet.get(&format!("/topologies/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["name"], "edge");
    let enqueue = json!({
        "topology_id": id,
        "ops": [{"op": "replace", "path": "/n", "value": 1}],
        "if_version": 0,
        "idempotency_key": "mcp-1",
    });
    let mutation = mcp.ok("enqueue_mutation", enqueue.clone()).await;
    assert_eq!(mutation["status"], "pending");
    assert_eq!(mutation["actor"], "tester");
    let mutation_id = mutation["id"].as_str().unwrap().to_owned();
    // The key went along as Idempotency-Key: a retry is the original.
    let again = mcp.ok("enqueue_mutation", enqueue).await;
    assert_eq!(again["id"], mutation["id"]);
    eventually(Duration::from_secs(20), || async {
        let (_, m) = fleet.get(&format!("/mutations/{mutation_id}")).await;
        m["status"] == "applied"
    })
    .await;
    let (_, shown) = fleet.get(&format!("/topologies/{id}")).await;
    assert_eq!(shown["document"], json!({"n": 1}));
    assert_eq!(shown["version"], 1);
    let read = mcp.ok("get_mutation", json!({"id": mutation_id})).await;
    assert_eq!(read["applied_version"], 1);

    // The interface-change lifecycle: register, update, publish, inbox, resolve.
    let change = mcp
        .ok(
            "register_interface_change",
            json!({
                "repo_slug": "billing", "interface_type": "rest_api", "change_type": "breaking",
                "title": "Invoices move to /v2", "description": "v1 goes away.",
                "affected_paths": ["GET /v1/invoices"], "affected_repo_slugs": ["web"],
                "planned_for": "2027-01-15",
            }),
        )
        .await;
    assert_eq!(change["status"], "draft");
    let change_id = change["id"].as_str().unwrap().to_owned();
    let change_path = format!("/interface-changes/{change_id}");
    let (_, shown) = fleet.get(&change_path).await;
    assert_eq!(
        (&shown["status"], &shown["author"]),
        (&json!("draft"), &json!("tester"))
    );
    mcp.ok(
        "update_interface_change",
        json!({"id": change_id, "title": "Invoices move to /v2 (paged)", "planned_for": null}),
    )
    .await;
    let (_, shown) = fleet.get(&change_path).await;
    assert_eq!(shown["title"], "Invoices move to /v2 (paged)");
    assert_eq!(shown["planned_for"], Value::Null);
    let published = mcp
        .ok("publish_interface_change", json!({"id": change_id}))
        .await;
    assert_eq!(published["status"], "published");
    let (_, shown) = fleet.get(&change_path).await;
    assert_eq!(shown["status"], "published");
    let listed = mcp
        .ok(
            "list_interface_changes",
            json!({"status": "published", "affected_repo": "web", "limit": 10}),
        )
        .await;
    assert_eq!(listed["items"][0]["id"], json!(change_id));
    eventually(Duration::from_secs(20), || async {
        let (_, inbox) = fleet.get("/repos/web/inbox?unread=true").await;
        inbox["items"]
            .as_array()
            .is_some_and(|items| items.len() == 1)
    })
    .await;
    let dispatch = mcp.ok("get_dispatch", json!({"slug": "web"})).await;
    assert_eq!(dispatch["unread_inbox_count"], 1);
    assert_eq!(
        dispatch["pending_interface_changes"][0]["id"],
        json!(change_id)
    );
    let inbox = mcp
        .ok("list_inbox", json!({"slug": "web", "unread": true}))
        .await;
    let message_id = inbox["items"][0]["id"].as_str().unwrap().to_owned();
    let read = mcp
        .ok(
            "mark_inbox_read",
            json!({"slug": "web", "message_id": message_id}),
        )
        .await;
    assert!(read["read_at"].is_string(), "{read}");
    let (_, unread) = fleet.get("/repos/web/inbox?unread=true").await;
    assert_eq!(unread["items"], json!([]));
    let resolved = mcp
        .ok("resolve_interface_change", json!({"id": change_id}))
        .await;
    assert_eq!(resolved["status"], "resolved");
    let (_, shown) = fleet.get(&change_path).await;
    assert_eq!(shown["status"], "resolved");

    // A refusal carries the API's own status and message: the same request over HTTP.
    let refused = mcp
        .call("publish_interface_change", json!({"id": change_id}))
        .await;
    assert!(refused.is_error);
    let (status, body) = http(
        &fleet,
        &operator,
        reqwest::Method::POST,
        &format!("{change_path}/publish"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let message = body["error"]["message"].as_str().unwrap();
    assert_eq!(refused.text, format!("409 Conflict: {message}"));
    assert_eq!(refused.structured["error"]["code"], "conflict");
    let invalid = mcp
        .call(
            "update_interface_change",
            json!({"id": change_id, "change_type": "sideways"}),
        )
        .await;
    assert!(invalid.is_error);
    assert!(
        invalid.text.starts_with("422 Unprocessable Entity: ") && invalid.text.contains("sideways"),
        "{}",
        invalid.text
    );

    // create_graph, then request_migration to the plugin's next version: the migrator runs it.
    let graph = mcp
        .ok(
            "create_graph",
            json!({"slug": "dc-east", "plugin": "netbox"}),
        )
        .await;
    assert_eq!(graph["schema_version"], 1);
    let (status, _) = fleet.get("/graphs/dc-east").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = fleet
        .post(
            "/plugins/netbox/versions",
            json!({"version": 2, "steps": [{"op": "set_default", "property": "weight", "value": 1}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let run = mcp
        .ok("request_migration", json!({"slug": "dc-east"}))
        .await;
    assert_eq!(
        (&run["status"], &run["to_version"]),
        (&json!("pending"), &json!(2))
    );
    let run_id = run["id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(30), || async {
        let (_, runs) = fleet.get("/graphs/dc-east/migrations").await;
        runs["items"][0]["id"] == json!(run_id) && runs["items"][0]["status"] == "succeeded"
    })
    .await;
    let history = mcp
        .ok("list_migrations", json!({"slug": "dc-east", "limit": 5}))
        .await;
    assert_eq!(history["items"][0]["status"], "succeeded");
    mcp.close().await;
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn cancel_migration_cancels_a_pending_run(pool: PgPool) {
    // No migrator runs here, so the run stays pending until cancelled.
    let fleet = TestFleet::api_only(&pool).await;
    registry(&fleet).await;
    let operator = token(&fleet.config, Role::Operator);
    let mut mcp = Mcp::connect(&fleet, &operator, "legacy").await.unwrap();
    mcp.ok(
        "create_graph",
        json!({"slug": "dc-west", "plugin": "netbox"}),
    )
    .await;
    let (status, body) = fleet
        .post(
            "/plugins/netbox/versions",
            json!({"version": 2, "steps": []}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let run = mcp
        .ok(
            "request_migration",
            json!({"slug": "dc-west", "target_version": 2}),
        )
        .await;
    let run_id = run["id"].as_str().unwrap().to_owned();
    let (_, runs) = fleet.get("/graphs/dc-west/migrations").await;
    assert_eq!(runs["items"][0]["status"], "pending");
    let cancelled = mcp
        .ok(
            "cancel_migration",
            json!({"slug": "dc-west", "run_id": run_id}),
        )
        .await;
    assert_eq!(cancelled["status"], "cancelled");
    let (_, runs) = fleet.get("/graphs/dc-west/migrations").await;
    assert_eq!(runs["items"][0]["status"], "cancelled");
    let (_, graph) = fleet.get("/graphs/dc-west").await;
    assert_eq!(
        (&graph["status"], &graph["schema_version"]),
        (&json!("ready"), &json!(1))
    );
    // Cancelling it again: the API's 409, as a tool error.
    let again = mcp
        .call(
            "cancel_migration",
            json!({"slug": "dc-west", "run_id": run_id}),
        )
        .await;
    assert!(again.is_error);
    assert!(again.text.starts_with("409 Conflict: "), "{}", again.text);
    mcp.close().await;
    fleet.stop().await;
}

/// `result` is the tool error of the API's answer `(status, body)` to the same request
/// over HTTP: its status, its code, and its message, less the framing and the position
/// in a body the agent never wrote (`Failed to deserialize the JSON body into the
/// target type: ` … ` at line 1 column 118`). Returns the message as the tool said it.
fn the_apis_refusal(result: &ToolResult, status: StatusCode, body: &Value) -> String {
    assert!(result.is_error, "not a tool error: {result:?}");
    let prefix = format!("{status}: ");
    let message = result
        .text
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{:?} does not start with {prefix:?}", result.text));
    let api_message = body["error"]["message"].as_str().unwrap();
    assert!(
        api_message.contains(message),
        "{message:?} is not the API's {api_message:?}"
    );
    assert!(
        !message.contains(" at line ") && !message.starts_with("Failed to deserialize"),
        "{message:?} speaks of a body the agent never wrote"
    );
    assert_eq!(result.structured["error"]["status"], status.as_u16());
    assert_eq!(result.structured["error"]["code"], body["error"]["code"]);
    assert_eq!(result.structured["error"]["message"], message);
    message.to_owned()
}

/// A refusal of the arguments by the server itself, before any request: its message.
fn refused_arguments(result: &ToolResult) -> String {
    assert!(result.is_error, "not a tool error: {result:?}");
    assert_eq!(
        result.structured["error"]["code"], "invalid_arguments",
        "{result:?}"
    );
    let message = result.structured["error"]["message"].as_str().unwrap();
    assert_eq!(result.text, format!("422 Unprocessable Entity: {message}"));
    message.to_owned()
}

#[sqlx::test(migrations = "../migrations")]
async fn arguments_reach_the_api_as_the_agent_sent_them(pool: PgPool) {
    let fleet = TestFleet::api_only(&pool).await;
    registry(&fleet).await;
    let operator = token(&fleet.config, Role::Operator);
    let mut mcp = Mcp::connect(&fleet, &operator, "auto").await.unwrap();
    let post = reqwest::Method::POST;
    let patch = reqwest::Method::PATCH;
    let change = json!({
        "repo_slug": "billing", "interface_type": "rest_api", "change_type": "breaking",
        "title": "Invoices move to /v2", "description": "v1 goes away.",
        "affected_paths": ["GET /v1/invoices"], "affected_repo_slugs": ["web"],
        "planned_for": "2027-01-15",
    });

    // An explicit null where the API takes none is the API's 422, naming the field,
    // exactly as over HTTP; nothing is created.
    let mut null_author = change.clone();
    null_author["author"] = Value::Null;
    let refused = mcp
        .call("register_interface_change", null_author.clone())
        .await;
    let (status, body) = http(
        &fleet,
        &operator,
        post.clone(),
        "/interface-changes",
        Some(null_author),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = the_apis_refusal(&refused, status, &body);
    assert!(
        message.starts_with("author: null is not a value"),
        "{message}"
    );
    let (_, listed) = fleet.get("/interface-changes").await;
    assert_eq!(listed["items"], json!([]));

    // A value the API does not take: its 422 names the field and the values it takes.
    let mut graphql = change.clone();
    graphql["interface_type"] = json!("graphql");
    let refused = mcp.call("register_interface_change", graphql.clone()).await;
    let (status, body) = http(
        &fleet,
        &operator,
        post.clone(),
        "/interface-changes",
        Some(graphql),
    )
    .await;
    let message = the_apis_refusal(&refused, status, &body);
    assert!(
        message
            .starts_with("interface_type: unknown variant `graphql`, expected one of `rest_api`"),
        "{message}"
    );

    let created = mcp.ok("register_interface_change", change).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("/interface-changes/{id}");

    // PATCH {"title": null}: the API's 422, and the title stays.
    let null_title = json!({"title": null});
    let refused = mcp
        .call("update_interface_change", json!({"id": id, "title": null}))
        .await;
    let (status, body) = http(&fleet, &operator, patch.clone(), &path, Some(null_title)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = the_apis_refusal(&refused, status, &body);
    assert!(
        message.starts_with("title: null is not a value"),
        "{message}"
    );
    let (_, shown) = fleet.get(&path).await;
    assert_eq!(shown["title"], "Invoices move to /v2");

    // A field left out stays as it is; planned_for: null clears the date.
    mcp.ok(
        "update_interface_change",
        json!({"id": id, "title": "Invoices move"}),
    )
    .await;
    let (_, shown) = fleet.get(&path).await;
    assert_eq!(
        (&shown["title"], &shown["planned_for"]),
        (&json!("Invoices move"), &json!("2027-01-15"))
    );
    let cleared = mcp
        .ok(
            "update_interface_change",
            json!({"id": id, "planned_for": null}),
        )
        .await;
    assert_eq!(cleared["planned_for"], Value::Null);
    let (_, shown) = fleet.get(&path).await;
    assert_eq!(
        (&shown["title"], &shown["planned_for"]),
        (&json!("Invoices move"), &Value::Null)
    );

    // A date that is no date: the API's 422, without the position in its body.
    let refused = mcp
        .call(
            "update_interface_change",
            json!({"id": id, "planned_for": "2027-13-45"}),
        )
        .await;
    let (status, body) = http(
        &fleet,
        &operator,
        patch.clone(),
        &path,
        Some(json!({"planned_for": "2027-13-45"})),
    )
    .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(" at line "),
        "the API's own text no longer has a position: {body}"
    );
    let message = the_apis_refusal(&refused, status, &body);
    assert!(message.starts_with("planned_for: "), "{message}");

    // A document of null is sent as null (the API takes any JSON value).
    let topology = mcp
        .ok(
            "create_topology",
            json!({"name": "nothing yet", "document": null}),
        )
        .await;
    let topology_id = topology["id"].as_str().unwrap().to_owned();
    let (_, shown) = fleet.get(&format!("/topologies/{topology_id}")).await;
    assert_eq!(shown["document"], Value::Null);

    // Wrongly typed fields: the API's 422, naming the field and the type it takes.
    let mutations = format!("/topologies/{topology_id}/mutations");
    let ops = json!([{"op": "add", "path": "/n", "value": 1}]);
    let refused = mcp
        .call(
            "enqueue_mutation",
            json!({"topology_id": topology_id, "ops": ops, "if_version": "3"}),
        )
        .await;
    let (status, body) = http(
        &fleet,
        &operator,
        post.clone(),
        &mutations,
        Some(json!({"ops": ops, "if_version": "3"})),
    )
    .await;
    let message = the_apis_refusal(&refused, status, &body);
    assert!(
        message.starts_with("if_version: invalid type: string \"3\""),
        "{message}"
    );
    let refused = mcp
        .call(
            "enqueue_mutation",
            json!({"topology_id": topology_id, "ops": "add /n"}),
        )
        .await;
    let (status, body) = http(
        &fleet,
        &operator,
        post.clone(),
        &mutations,
        Some(json!({"ops": "add /n"})),
    )
    .await;
    let message = the_apis_refusal(&refused, status, &body);
    assert!(
        message.starts_with("ops: invalid type: string"),
        "{message}"
    );
    let (_, listed) = fleet.get(&mutations).await;
    assert_eq!(listed["items"], json!([]));

    // What the server itself puts in a path, a header or a query string, it checks,
    // naming the field.
    let refused = mcp.call("get_topology", json!({"id": "not-a-uuid"})).await;
    assert_eq!(
        refused_arguments(&refused),
        "`id` must be a UUID, such as `0192f5e4-8c2a-7b1e-9d3f-5a6b7c8d9e0f`; \"not-a-uuid\" is not one"
    );
    let refused = mcp
        .call("enqueue_mutation", json!({"id": topology_id, "ops": ops}))
        .await;
    assert_eq!(
        refused_arguments(&refused),
        "unknown argument `id`: this tool takes `idempotency_key`, `if_version`, `ops`, `topology_id`"
    );
    let refused = mcp.call("enqueue_mutation", json!({"ops": ops})).await;
    assert!(
        refused_arguments(&refused).starts_with("missing argument `topology_id`: "),
        "{refused:?}"
    );
    let refused = mcp.call("list_mutations", json!({"status": null})).await;
    assert_eq!(
        refused_arguments(&refused),
        "`status` cannot be null: leave it out instead"
    );
    mcp.close().await;
    fleet.stop().await;
}

/// What each tool is called with in [`every_tool_reaches_its_route`]; `{topology}`,
/// `{mutation}`, `{change}` and `{random}` are ids filled in there.
const CALLS: [(&str, &str); 38] = [
    (
        "register_interface_change",
        r#"{"repo_slug": "billing", "interface_type": "cli", "change_type": "additive", "title": "t", "description": "d", "affected_paths": [], "affected_repo_slugs": []}"#,
    ),
    (
        "list_interface_changes",
        r#"{"status": "draft", "limit": 5}"#,
    ),
    ("get_interface_change", r#"{"id": "{change}"}"#),
    (
        "update_interface_change",
        r#"{"id": "{change}", "title": "t2"}"#,
    ),
    ("publish_interface_change", r#"{"id": "{change}"}"#),
    ("resolve_interface_change", r#"{"id": "{change}"}"#),
    ("list_repos", r#"{"include_archived": true}"#),
    ("get_repo", r#"{"slug": "billing"}"#),
    (
        "find_repo_by_remote",
        r#"{"url": "https://git.example.com/acme/billing"}"#,
    ),
    ("find_repos_by_fingerprint", r#"{"hash": "abc"}"#),
    ("get_dispatch", r#"{"slug": "web"}"#),
    ("list_inbox", r#"{"slug": "web", "unread": true}"#),
    (
        "mark_inbox_read",
        r#"{"slug": "web", "message_id": "{random}"}"#,
    ),
    ("create_topology", r#"{"name": "n"}"#),
    ("list_topologies", r#"{}"#),
    ("get_topology", r#"{"id": "{topology}"}"#),
    (
        "enqueue_mutation",
        r#"{"topology_id": "{topology}", "ops": [{"op": "add", "path": "/a", "value": 1}]}"#,
    ),
    (
        "list_topology_mutations",
        r#"{"id": "{topology}", "status": "pending"}"#,
    ),
    ("list_mutations", r#"{"status": "failed"}"#),
    ("get_mutation", r#"{"id": "{mutation}"}"#),
    ("list_plugins", r#"{}"#),
    ("get_plugin", r#"{"name": "netbox"}"#),
    (
        "create_graph",
        r#"{"slug": "dc-north", "plugin": "netbox"}"#,
    ),
    ("list_graphs", r#"{}"#),
    ("get_graph", r#"{"slug": "dc-south"}"#),
    ("list_graph_nodes", r#"{"slug": "dc-south"}"#),
    (
        "request_migration",
        r#"{"slug": "dc-south", "target_version": null}"#,
    ),
    ("list_migrations", r#"{"slug": "dc-south"}"#),
    (
        "cancel_migration",
        r#"{"slug": "dc-south", "run_id": "{random}"}"#,
    ),
    ("list_rfcs", r#"{"state": "active", "missing": false}"#),
    ("get_rfc", r#"{"slug": "graph-cache"}"#),
    (
        "list_rfc_branches",
        r#"{"slug": "graph-cache", "state": "active"}"#,
    ),
    (
        "list_rfc_pulls",
        r#"{"slug": "graph-cache", "state": "open"}"#,
    ),
    ("list_pulls", r#"{"kind": "idea", "state": "open"}"#),
    ("list_forge_repos", r#"{}"#),
    ("list_parse_errors", r#"{}"#),
    ("list_sweeps", r#"{}"#),
    ("list_audit", r#"{"entity": "repo"}"#),
];

#[sqlx::test(migrations = "../migrations")]
async fn every_tool_reaches_its_route(pool: PgPool) {
    // Every tool, called as a viewer with arguments of the right shape, reaches its
    // own route: a read answers (or names the missing RFC), a write is the role
    // check's 403; none is a refusal of its arguments or a path the API does not have.
    let fleet = TestFleet::api_only(&pool).await;
    registry(&fleet).await;
    let (_, topology) = fleet.post("/topologies", json!({"name": "t"})).await;
    let topology = topology["id"].as_str().unwrap().to_owned();
    let (_, mutation) = fleet
        .post(
            &format!("/topologies/{topology}/mutations"),
            json!({"ops": [{"op": "add", "path": "/a", "value": 1}]}),
        )
        .await;
    let (_, change) = fleet
        .post(
            "/interface-changes",
            json!({"repo_slug": "billing", "interface_type": "cli", "change_type": "additive",
                   "title": "t", "description": "d", "affected_paths": [], "affected_repo_slugs": []}),
        )
        .await;
    let (status, body) = fleet
        .post("/graphs", json!({"slug": "dc-south", "plugin": "netbox"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let viewer = token(&fleet.config, Role::Viewer);
    let mut mcp = Mcp::connect(&fleet, &viewer, "legacy").await.unwrap();
    let names: Vec<&str> = CALLS.iter().map(|(name, _)| *name).collect();
    for name in ORIGINAL_TOOLS.iter().chain(&OTHER_TOOLS) {
        assert!(names.contains(name), "{name} is not called");
    }
    let writes = [
        "register_interface_change",
        "update_interface_change",
        "publish_interface_change",
        "resolve_interface_change",
        "mark_inbox_read",
        "create_topology",
        "enqueue_mutation",
        "create_graph",
        "request_migration",
        "cancel_migration",
        "list_audit",
    ];
    for (name, arguments) in CALLS {
        let arguments = arguments
            .replace("{topology}", &topology)
            .replace("{mutation}", mutation["id"].as_str().unwrap())
            .replace("{change}", change["id"].as_str().unwrap())
            .replace("{random}", &uuid::Uuid::new_v4().to_string());
        let result = mcp
            .call(name, serde_json::from_str(&arguments).unwrap())
            .await;
        let code = &result.structured["error"]["code"];
        if writes.contains(&name) {
            assert_eq!(code, "forbidden", "{name}: {result:?}");
        } else if [
            "get_rfc",
            "list_rfc_branches",
            "list_rfc_pulls",
            "find_repo_by_remote",
        ]
        .contains(&name)
        {
            // Nothing is cached or registered under these: the route's own 404.
            assert_eq!(code, "not_found", "{name}: {result:?}");
            assert!(!result.text.contains("no route for"), "{name}: {result:?}");
        } else {
            assert!(!result.is_error, "{name}: {result:?}");
        }
    }
    mcp.close().await;
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_viewer_reads_but_gets_the_apis_403_for_a_write(pool: PgPool) {
    let fleet = TestFleet::api_only(&pool).await;
    registry(&fleet).await;
    let viewer = token(&fleet.config, Role::Viewer);
    let mut mcp = Mcp::connect(&fleet, &viewer, "auto").await.unwrap();
    let repos = mcp.ok("list_repos", json!({"limit": 1})).await;
    assert_eq!(repos["items"][0]["slug"], "billing");
    assert!(repos["next_cursor"].is_string());
    let found = mcp
        .ok("find_repos_by_fingerprint", json!({"hash": "nothing"}))
        .await;
    assert_eq!(found, json!({"items": []}));

    let refused = mcp.call("create_topology", json!({"name": "nope"})).await;
    assert!(refused.is_error);
    let (status, body) = http(
        &fleet,
        &viewer,
        reqwest::Method::POST,
        "/topologies",
        Some(json!({"name": "nope"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let message = body["error"]["message"].as_str().unwrap();
    assert_eq!(refused.text, format!("403 Forbidden: {message}"));
    assert!(refused.text.contains("operator"), "{}", refused.text);
    assert_eq!(
        refused.structured["error"],
        json!({"status": 403, "code": "forbidden", "message": message})
    );
    // Nothing was created.
    let (_, topologies) = fleet.get("/topologies").await;
    assert_eq!(topologies["items"], json!([]));
    // The admin read is the API's too.
    let audit = mcp.call("list_audit", json!({})).await;
    assert!(audit.text.starts_with("403 Forbidden: "), "{}", audit.text);
    mcp.close().await;
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn mcp_without_a_valid_api_token_is_the_apis_401(pool: PgPool) {
    let fleet = TestFleet::api_only(&pool).await;
    let url = format!("{}/mcp", fleet.base);
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "curl", "version": "1"}}
    });
    let plain = reqwest::Client::new();
    let post = |client: &reqwest::Client| {
        client
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .json(&initialize)
    };
    let response = post(&plain).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"switchyard\""
    );
    let (_, body) = harness::read(response).await;
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(
        body["error"]["message"],
        "missing credentials: send `Authorization: Bearer <token>`"
    );

    // A forged token, and a stream token (header or query): refused the same way.
    let forged = switchyard_api::auth::Authenticator::new(b"another-secret-of-32-characters!")
        .mint("eve", Role::Admin, Duration::from_secs(60));
    let response = post(&client_with(&forged)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"switchyard\", error=\"invalid_token\""
    );
    let secret = fleet.config.auth.secret.as_deref().unwrap().as_bytes();
    let authenticator = switchyard_api::auth::Authenticator::new(secret);
    let caller = switchyard_api::auth::Caller {
        subject: "tester".to_owned(),
        role: Role::Admin,
    };
    let (stream, _) = authenticator.mint_stream(&caller, "/mcp", Duration::from_secs(60));
    let response = post(&client_with(&stream)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = plain
        .get(format!("{url}?token={stream}"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (_, body) = harness::read(response).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stream tokens"),
        "{body}"
    );

    // The SDK, with a bad token, cannot connect: the server answered 401.
    let refused = Mcp::connect(&fleet, &forged, "auto")
        .await
        .err()
        .expect("connected with a forged token");
    let statuses = refused["http_statuses"].as_array().unwrap();
    assert!(
        !statuses.is_empty() && statuses.iter().all(|s| s == 401),
        "{refused}"
    );
    fleet.stop().await;
}

/// The protocol revision of the session tests (one with sessions).
const SESSION_VERSION: &str = "2025-06-18";

/// `POST /mcp` of one JSON-RPC `message` by `client`, in `session` when given: the
/// status, the `Mcp-Session-Id` answered, and the whole body (an event stream, or the
/// JSON of a refusal).
async fn rpc(
    client: &reqwest::Client,
    url: &str,
    session: Option<&str>,
    message: Value,
) -> (StatusCode, Option<String>, String) {
    let mut request = client
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", SESSION_VERSION)
        .json(&message);
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    let response = tokio::time::timeout(Duration::from_secs(20), request.send())
        .await
        .expect("no answer within 20 s")
        .unwrap();
    let status = response.status();
    let opened = response
        .headers()
        .get("mcp-session-id")
        .map(|id| id.to_str().unwrap().to_owned());
    let body = tokio::time::timeout(Duration::from_secs(20), response.text())
        .await
        .expect("the answer did not end within 20 s")
        .unwrap();
    (status, opened, body)
}

/// Opens a session as `client` (initialize, then initialized): its id.
async fn open_session(client: &reqwest::Client, url: &str) -> String {
    let (status, session, body) = rpc(
        client,
        url,
        None,
        json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": SESSION_VERSION, "capabilities": {},
                       "clientInfo": {"name": "test", "version": "1"}}
        }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let session = session.expect("initialize answered no Mcp-Session-Id");
    let (status, _, body) = rpc(
        client,
        url,
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    session
}

/// `GET /mcp` in `session` as `client`, resuming after `last_event_id` when given: its
/// status, and its body when it is a refusal (a stream that opens is left unread).
async fn session_stream(
    client: &reqwest::Client,
    url: &str,
    session: &str,
    last_event_id: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = client
        .get(url)
        .header("accept", "text/event-stream")
        .header("mcp-protocol-version", SESSION_VERSION)
        .header("mcp-session-id", session);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = tokio::time::timeout(Duration::from_secs(20), request.send())
        .await
        .expect("no answer within 20 s")
        .unwrap();
    if response.status().is_success() {
        return (response.status(), Value::Null);
    }
    harness::read(response).await
}

#[sqlx::test(migrations = "../migrations")]
async fn a_session_answers_only_the_subject_that_opened_it(pool: PgPool) {
    let fleet = TestFleet::api_only(&pool).await;
    registry(&fleet).await;
    let secret = fleet.config.auth.secret.as_deref().unwrap().as_bytes();
    let authenticator = switchyard_api::auth::Authenticator::new(secret);
    let minute = Duration::from_secs(60);
    let alice = client_with(&authenticator.mint("alice", Role::Operator, minute));
    let alice_again = client_with(&authenticator.mint("alice", Role::Viewer, minute));
    let bob = client_with(&authenticator.mint("bob", Role::Admin, minute));
    let url = format!("{}/mcp", fleet.base);
    let session = open_session(&alice, &url).await;

    // Alice calls a tool. Its answer comes on a stream with event ids, which rmcp lets
    // a client resume (GET with Last-Event-ID) while it is open; the session's own
    // stream (GET without one) carries what the server sends unasked.
    let call = json!({
        "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "list_repos", "arguments": {}}
    });
    let (status, _, answer) = rpc(&alice, &url, Some(&session), call.clone()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer.contains("billing"), "{answer}");
    let event = answer
        .lines()
        .find_map(|line| line.strip_prefix("id:"))
        .expect("the answer's stream has event ids")
        .trim()
        .to_owned();
    let (status, _) = session_stream(&alice, &url, &session, Some(&event)).await;
    assert_eq!(status, StatusCode::OK);

    // Bob's token is valid, but the session is Alice's: 404 for every use of it.
    for last_event_id in [Some(event.as_str()), None] {
        let (status, refusal) = session_stream(&bob, &url, &session, last_event_id).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{refusal}");
        assert_eq!(refusal["error"]["code"], "not_found");
        assert!(
            refusal["error"]["message"]
                .as_str()
                .unwrap()
                .contains("belongs to another subject"),
            "{refusal}"
        );
    }
    let (status, _, body) = rpc(&bob, &url, Some(&session), call.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let response = bob
        .delete(&url)
        .header("mcp-protocol-version", SESSION_VERSION)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Another token of Alice's (the session is bound to the subject) still works in it.
    let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"});
    let (status, _, body) = rpc(&alice_again, &url, Some(&session), list.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("enqueue_mutation"), "{body}");

    // Alice ends it: then it is gone for her too.
    let response = alice
        .delete(&url)
        .header("mcp-protocol-version", SESSION_VERSION)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let (status, _, body) = rpc(&alice, &url, Some(&session), list).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let refusal: Value = serde_json::from_str(&body).unwrap();
    assert!(
        refusal["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("no MCP session"),
        "{refusal}"
    );
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn mcp_refusals_have_the_apis_json_shape(pool: PgPool) {
    let fleet = TestFleet::api_only(&pool).await;
    let client = client_with(&token(&fleet.config, Role::Viewer));
    let url = format!("{}/mcp", fleet.base);
    // Accept without text/event-stream: rmcp's 406, in the API's shape, naming both.
    let response = client
        .post(&url)
        .header("accept", "application/json")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_ACCEPTABLE);
    let (_, body) = harness::read(response).await;
    assert_eq!(body["error"]["code"], "not_acceptable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("send `Accept: application/json, text/event-stream`"),
        "{body}"
    );
    let response = client
        .get(&url)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_ACCEPTABLE);
    let (_, body) = harness::read(response).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("send `Accept: text/event-stream`"),
        "{body}"
    );
    // A session id no session has: 404 in the same shape.
    let (status, _, body) = rpc(
        &client,
        &url,
        Some("no-such-session"),
        json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn sessions_end_when_the_process_shuts_down(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let admin = token(&fleet.config, Role::Admin);
    let client = client_with(&admin);
    let url = format!("{}/mcp", fleet.base);
    // A session of the initialize handshake, and its standing GET stream.
    let response = client
        .post(&url)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "test", "version": "1"}}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let session = response.headers()["mcp-session-id"].clone();
    let _ = response.bytes().await.unwrap();
    let response = client
        .post(&url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", session.clone())
        .header("mcp-protocol-version", "2025-06-18")
        .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let stream = client
        .get(&url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let drained = tokio::spawn(async move {
        let mut stream = stream;
        while let Ok(Some(_)) = stream.chunk().await {}
    });

    let drain_timeout = fleet.config.shutdown.drain_timeout;
    let started = Instant::now();
    fleet.stop().await;
    // A session left open would have held shutdown until the drain timeout.
    assert!(
        started.elapsed() < drain_timeout,
        "shutdown took {:?}: an MCP session held it",
        started.elapsed()
    );
    tokio::time::timeout(Duration::from_secs(5), drained)
        .await
        .expect("the session's stream did not end at shutdown")
        .unwrap();
}
