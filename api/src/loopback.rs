//! The API's own `/api/v1` routes, called in process.
//!
//! The dashboard ([`crate::ui`]) and the MCP server ([`crate::mcp`]) never touch the
//! database to change anything: each action is one request through the same router a
//! curl client reaches, with the caller's own bearer token. So authentication, the
//! role table, validation, the transaction, the audit row and the outbox event are
//! exactly those of the HTTP route; there is no second implementation to drift.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;

use crate::auth::{Authenticator, Caller};

/// Lifetime of the token minted for one in-process call on behalf of a signed-in
/// dashboard user (the request timeout bounds the call anyway).
const CALL_TOKEN_TTL: Duration = Duration::from_secs(120);

/// Most bytes of an answer read back (the API's own pages are far smaller).
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// The whole API router, to be called in process (cheap to clone).
#[derive(Clone)]
pub struct Loopback {
    api: Router,
}

impl std::fmt::Debug for Loopback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loopback").finish_non_exhaustive()
    }
}

/// Who an in-process call acts as.
#[derive(Clone, Copy, Debug)]
pub enum Credentials<'a> {
    /// A bearer token exactly as a client sent it (the MCP server forwards its
    /// caller's `Authorization` header value).
    Authorization(&'a HeaderValue),
    /// A signed-in dashboard user: a short-lived API token is minted for the same
    /// subject and role.
    Caller(&'a Authenticator, &'a Caller),
}

/// One answer of the API: its status and JSON body (`Value::Null` when empty).
#[derive(Clone, Debug)]
pub struct Reply {
    /// The HTTP status the route answered.
    pub status: StatusCode,
    /// Its headers (`Location`, `Retry-After`, …).
    pub headers: HeaderMap,
    /// Its body as JSON; a body that is not JSON is kept as a JSON string.
    pub body: Value,
}

/// `text` as one URL path segment or query value: everything but RFC 3986's unreserved
/// characters is percent-encoded, so a `/`, `?`, `&` or `#` in it cannot reach another
/// route or parameter.
pub fn segment(text: &str) -> String {
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

/// An API refusal (any status from 400 up): its status, its `error.code` and
/// `error.message`, as the HTTP client would have read them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct Refusal {
    /// 400 or above.
    pub status: StatusCode,
    /// The API's `error.code` (`not_found`, `conflict`, `invalid_request`, …).
    pub code: String,
    /// The API's `error.message`, or the status's reason when it gave none.
    pub message: String,
}

impl Reply {
    /// The body of a 2xx answer, or the [`Refusal`] the API answered with.
    pub fn into_result(self) -> Result<Value, Refusal> {
        if self.status.is_success() {
            return Ok(self.body);
        }
        let text = |key: &str| {
            self.body["error"][key]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_default()
        };
        Err(Refusal {
            status: self.status,
            code: text("code"),
            message: match text("message") {
                message if message.is_empty() => {
                    self.status.canonical_reason().unwrap_or("error").to_owned()
                }
                message => message,
            },
        })
    }
}

impl Loopback {
    /// Calls `api`, the router [`crate::router`] serves (without the dashboard and MCP).
    pub fn new(api: Router) -> Self {
        Self { api }
    }

    /// Sends `method path` (path under `/api/v1`, with its query string) with `body` as
    /// JSON and `headers` added, as `credentials`. Never fails: a refusal of the API
    /// is a [`Reply`] with its status; a body that is not JSON is kept as a JSON
    /// string; an answer that cannot be read is a 503.
    pub async fn call(
        &self,
        credentials: Credentials<'_>,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&'static str, String)],
    ) -> Reply {
        let authorization = match credentials {
            Credentials::Authorization(value) => value.clone(),
            Credentials::Caller(authenticator, caller) => {
                let token = authenticator.mint(&caller.subject, caller.role, CALL_TOKEN_TTL);
                HeaderValue::from_str(&format!("Bearer {token}"))
                    .expect("a JWT is a valid header value")
            }
        };
        let mut request = Request::builder()
            .method(method)
            .uri(format!("/api/v1{path}"))
            .header(header::AUTHORIZATION, authorization);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        };
        let request = match request {
            Ok(request) => request,
            Err(e) => return refused(StatusCode::BAD_REQUEST, &format!("bad request: {e}")),
        };
        let response = match self.api.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        let bytes = match axum::body::to_bytes(body, MAX_ANSWER_BYTES).await {
            Ok(bytes) => bytes,
            Err(_) => {
                return refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the answer could not be read; retry",
                );
            }
        };
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(body) => body,
                Err(_) => Value::String(String::from_utf8_lossy(&bytes).into_owned()),
            }
        };
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }
}

fn refused(status: StatusCode, message: &str) -> Reply {
    Reply {
        status,
        headers: HeaderMap::new(),
        body: serde_json::json!({"error": {"code": "loopback", "message": message}}),
    }
}
