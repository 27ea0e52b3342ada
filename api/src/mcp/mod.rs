//! The MCP server at `/mcp`: the API as tools for agents, over Streamable HTTP
//! (`rmcp`).
//!
//! ## Credentials
//! Every request to `/mcp` needs the same `Authorization: Bearer <token>` as the API,
//! checked by `guard_requests` before `rmcp` reads the request: without a valid API
//! token it is a 401 with the API's `WWW-Authenticate` challenge and JSON error (a
//! stream token is refused here too, in the header or in `?token=`). The role is not
//! checked here: each tool is one `/api/v1` request with the caller's own header
//! ([`tools`]), and the route's role check answers for it (403 as a tool error).
//!
//! ## Sessions
//! Clients that negotiate a protocol version before 2026-07-28 get a session
//! (`Mcp-Session-Id`) kept in this process; later versions are stateless. Each request
//! is authenticated on its own, and each tool call acts with the token of the request
//! that carried it. A session is also bound to the subject of the token that opened it
//! ([`Guard`]): a session's streams can be taken over by id (a tool's answer resumed
//! with `Last-Event-ID`, the session's own stream opened with `GET`) and the session
//! ended by id (`DELETE`), and only that subject may. A request with another subject's
//! session id, or one no session of this process has, is a 404 naming the problem,
//! before `rmcp` sees it. At most [`MAX_SESSIONS`] are open at once
//! (an `initialize` past it is a 503 with `Retry-After`). Sessions end on `DELETE`,
//! after `rmcp`'s idle timeout (5 minutes), and when the process shuts down
//! ([`AppState::shutdown`]).
//!
//! ## Refusals
//! Every refusal of `/mcp` has the API's JSON shape, `{"error": {"code", "message"}}`:
//! the ones `rmcp` answers in plain text (a 406 for a missing `Accept`, a 415, a 405)
//! are rewritten here (`as_api_error`).
//!
//! ## Hosts and origins
//! `rmcp` accepts only loopback `Host` headers by default, against DNS rebinding: a
//! page on a rebound name could reach a server on localhost that trusts whoever can
//! connect. This server trusts no one without a bearer token, which such a page does
//! not have (a browser sends no `Authorization` header of its own accord, and `/mcp`
//! answers no CORS preflight that would let a page send one), so any `Host` is
//! accepted: a deployment behind a load balancer or under its own name works.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

use crate::auth::{Authenticator, Caller, TokenError};
use crate::error::ApiError;
use crate::loopback::Loopback;
use crate::{AppState, routes};

mod params;
pub mod tools;

pub use tools::Tools;

/// Where the server is mounted.
pub const PATH: &str = "/mcp";

/// Most MCP sessions open at once in one process. Each is a task and a few buffers
/// (and `rmcp` keeps its finished answers for 60 s); an `initialize` past the limit is
/// a 503.
pub const MAX_SESSIONS: usize = 1000;

/// What a 503 for too many sessions asks a client to wait: sessions end on `DELETE`
/// or after 5 idle minutes, so retrying at once is pointless.
const SESSIONS_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The header naming a session.
const SESSION_ID: &str = "mcp-session-id";

/// `/mcp`: the Streamable HTTP endpoint (POST for messages, GET for a session's
/// stream, DELETE to end a session), behind `guard_requests`, whose tools call the API
/// through `loopback`.
pub fn router(state: &AppState, loopback: Loopback) -> Router {
    server(
        state.authenticator.clone(),
        state.shutdown.child_token(),
        state.config.body_limit_bytes,
        MAX_SESSIONS,
        loopback,
    )
}

/// [`router`], from its parts: every session ends when `shutdown` is cancelled, and at
/// most `max_sessions` are open at once.
fn server(
    authenticator: Arc<Authenticator>,
    shutdown: CancellationToken,
    body_limit_bytes: usize,
    max_sessions: usize,
    loopback: Loopback,
) -> Router {
    let config = StreamableHttpServerConfig::default()
        // Every session ends when the process shuts down.
        .with_cancellation_token(shutdown)
        // Any Host: see the module docs (bearer tokens, not the network, are the guard).
        .disable_allowed_hosts()
        .with_max_request_body_bytes(body_limit_bytes);
    let tool_router = Tools::router();
    let sessions = Arc::new(LocalSessionManager::default());
    let service = StreamableHttpService::new(
        move || Ok(Tools::new(loopback.clone(), tool_router.clone())),
        sessions.clone(),
        config,
    );
    let guard = Arc::new(Guard {
        authenticator,
        sessions,
        owners: Mutex::new(HashMap::new()),
        max_sessions,
    });
    Router::new()
        .route_service(PATH, service)
        .layer(axum::middleware::from_fn_with_state(guard, guard_requests))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(routes::request_span)
                .on_response(routes::log_response),
        )
}

/// What `guard_requests` keeps: who may use `/mcp`, and whose each session is.
pub struct Guard {
    authenticator: Arc<Authenticator>,
    /// `rmcp`'s sessions, to count them and to close one refused past the limit.
    sessions: Arc<LocalSessionManager>,
    /// The subject that opened each session, by session id: a subset of `sessions`'
    /// ids (an id is forgotten on `DELETE`, and ids whose session `rmcp` has ended are
    /// dropped whenever a session opens), so at most `max_sessions` entries.
    owners: Mutex<HashMap<String, String>>,
    max_sessions: usize,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("max_sessions", &self.max_sessions)
            .finish_non_exhaustive()
    }
}

impl Guard {
    /// The caller of `request`: a valid API token in its `Authorization` header (a
    /// stream token opens no `/mcp`, in the header or in `?token=`).
    fn caller(&self, request: &Request) -> Result<Caller, TokenError> {
        let headers = request.headers();
        let caller = self.authenticator.caller(
            request.method(),
            request.uri().path(),
            headers,
            request.uri().query(),
        )?;
        // `caller` accepts a stream token in `?token=` on the path it was minted for.
        if headers.contains_key(header::AUTHORIZATION) {
            Ok(caller)
        } else {
            Err(TokenError::StreamTokenMisused)
        }
    }

    /// Whether `subject` may use session `id`: a 404 naming the problem when no
    /// session of this process has that id, or another subject opened it.
    fn check(&self, id: &str, subject: &str) -> Result<(), ApiError> {
        let owners = self
            .owners
            .lock()
            .expect("the owners lock is never poisoned");
        match owners.get(id) {
            Some(owner) if owner == subject => Ok(()),
            Some(_) => Err(ApiError::NotFound(format!(
                "MCP session {id:?} belongs to another subject: a session is bound to the \
subject of the token that opened it; open your own (initialize without Mcp-Session-Id)"
            ))),
            None => Err(ApiError::NotFound(format!(
                "no MCP session {id:?} is open in this process: it ended (DELETE, 5 idle \
minutes, a restart) or never existed; open a new one (initialize without Mcp-Session-Id)"
            ))),
        }
    }

    /// Records that `subject` opened session `id` (just created by `rmcp`), or, past
    /// `max_sessions`, closes it again and answers 503.
    async fn opened(&self, id: &str, subject: &str) -> Result<(), ApiError> {
        let open: HashSet<String> = self
            .sessions
            .sessions
            .read()
            .await
            .keys()
            .map(|id| id.to_string())
            .collect();
        let over = open.len() > self.max_sessions;
        {
            let mut owners = self
                .owners
                .lock()
                .expect("the owners lock is never poisoned");
            owners.retain(|id, _| open.contains(id));
            if !over {
                owners.insert(id.to_owned(), subject.to_owned());
            }
        }
        if over {
            if let Err(e) = self.sessions.close_session(&id.into()).await {
                tracing::warn!(error = %e, "closing an MCP session past the limit");
            }
            return Err(ApiError::Unavailable(format!(
                "too many open MCP sessions (at most {} in one process); retry later, and end \
the sessions you no longer use (DELETE /mcp with their Mcp-Session-Id)",
                self.max_sessions
            )));
        }
        Ok(())
    }

    /// Forgets session `id` (ended by `DELETE`).
    fn closed(&self, id: &str) {
        self.owners
            .lock()
            .expect("the owners lock is never poisoned")
            .remove(id);
    }
}

/// In front of `rmcp`: lets a request through only with a valid API token in its
/// `Authorization` header (else the API's 401, with its challenge), and with a session
/// id only of a session its subject opened (else 404); binds a session `rmcp` opens to
/// the subject that opened it, past [`MAX_SESSIONS`] closing it again (503); forgets
/// a session ended by `DELETE`; and gives `rmcp`'s plain-text refusals the API's JSON
/// shape (`as_api_error`).
async fn guard_requests(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let caller = match guard.caller(&request) {
        Ok(caller) => caller,
        Err(refusal) => return ApiError::Unauthorized(refusal).into_response(),
    };
    let session = request
        .headers()
        .get(SESSION_ID)
        .map(|id| String::from_utf8_lossy(id.as_bytes()).into_owned());
    if let Some(id) = &session
        && let Err(refusal) = guard.check(id, &caller.subject)
    {
        return refusal.into_response();
    }
    let method = request.method().clone();
    let response = next.run(request).await;
    match &session {
        None => {
            let opened = response
                .headers()
                .get(SESSION_ID)
                .and_then(|id| id.to_str().ok())
                .map(str::to_owned);
            if let Some(id) = opened
                && let Err(refusal) = guard.opened(&id, &caller.subject).await
            {
                let mut refused = refusal.into_response();
                refused.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(SESSIONS_RETRY_AFTER.as_secs()),
                );
                return refused;
            }
        }
        Some(id) if method == Method::DELETE && response.status().is_success() => {
            guard.closed(id);
        }
        Some(_) => {}
    }
    as_api_error(&method, response).await
}

/// `response` unchanged, unless it is one of `rmcp`'s plain-text refusals (a 4xx
/// without a JSON body): then the API's `{"error": {"code", "message"}}`, with `rmcp`'s
/// text, or, for a 406, a message naming the `Accept` values `method` needs.
async fn as_api_error(method: &Method, response: Response) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !response.status().is_client_error() || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, 4096).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let code = match parts.status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::NOT_ACCEPTABLE => "not_acceptable",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
        _ => "refused",
    };
    let message = match parts.status {
        StatusCode::NOT_ACCEPTABLE if method == Method::GET => {
            "send `Accept: text/event-stream`: GET /mcp opens a session's event stream".to_owned()
        }
        StatusCode::NOT_ACCEPTABLE => "send `Accept: application/json, text/event-stream`: \
a POST to /mcp is answered with JSON or with an event stream, and the client must take both"
            .to_owned(),
        _ if text.is_empty() => parts
            .status
            .canonical_reason()
            .unwrap_or("refused")
            .to_owned(),
        _ => text,
    };
    let body = json!({ "error": { "code": code, "message": message } }).to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;
    use serde_json::Value;
    use tower::ServiceExt;

    const VERSION: &str = "2025-06-18";

    fn request(method: Method, token: &str, session: Option<&str>, body: Option<Value>) -> Request {
        let mut request = Request::builder()
            .method(method)
            .uri(PATH)
            .header(header::HOST, "localhost")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::ACCEPT, "application/json, text/event-stream")
            .header("mcp-protocol-version", VERSION);
        if let Some(session) = session {
            request = request.header(SESSION_ID, session);
        }
        match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap()
    }

    fn initialize(token: &str) -> Request {
        request(
            Method::POST,
            token,
            None,
            Some(json!({
                "jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": VERSION, "capabilities": {},
                           "clientInfo": {"name": "test", "version": "1"}}
            })),
        )
    }

    #[tokio::test]
    async fn sessions_past_the_limit_are_refused_and_closed() {
        let authenticator = Arc::new(Authenticator::new(b"a-secret-of-at-least-32-characters"));
        let token = authenticator.mint("alice", Role::Viewer, Duration::from_secs(60));
        let shutdown = CancellationToken::new();
        let app = server(
            authenticator,
            shutdown.clone(),
            1 << 20,
            2,
            Loopback::new(Router::new()),
        );
        let mut opened = Vec::new();
        for _ in 0..2 {
            let response = app.clone().oneshot(initialize(&token)).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            opened.push(response.headers()[SESSION_ID].to_str().unwrap().to_owned());
        }
        let refused = app.clone().oneshot(initialize(&token)).await.unwrap();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "30");
        // The refused session's id is not handed out.
        assert!(refused.headers().get(SESSION_ID).is_none());
        let body = axum::body::to_bytes(refused.into_body(), 4096)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "unavailable");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("too many open MCP sessions (at most 2 in one process)"),
            "{body}"
        );
        // The refused session was closed: after one DELETE there is room for exactly one
        // more.
        let response = app
            .clone()
            .oneshot(request(Method::DELETE, &token, Some(&opened[0]), None))
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let response = app.clone().oneshot(initialize(&token)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let response = app.clone().oneshot(initialize(&token)).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn plain_text_refusals_of_rmcp_have_the_apis_shape() {
        let authenticator = Arc::new(Authenticator::new(b"a-secret-of-at-least-32-characters"));
        let token = authenticator.mint("alice", Role::Viewer, Duration::from_secs(60));
        let app = server(
            authenticator,
            CancellationToken::new(),
            1 << 20,
            2,
            Loopback::new(Router::new()),
        );
        let mut post = initialize(&token);
        post.headers_mut()
            .insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let response = app.clone().oneshot(post).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_ACCEPTABLE);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "not_acceptable");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("send `Accept: application/json, text/event-stream`"),
            "{body}"
        );
        let mut post = initialize(&token);
        post.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let response = app.clone().oneshot(post).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "unsupported_media_type");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("application/json"),
            "{body}"
        );
    }
}
