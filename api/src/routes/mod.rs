//! One module per resource. Shared here: pagination and the fallback answers.

use std::any::Any;

use axum::Json;
use axum::extract::{OriginalUri, Request};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use switchyard_bus::TraceContext;
use switchyard_bus::trace;
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;

pub mod audit;
pub mod dispatch;
pub mod events;
pub mod forge;
pub mod graphs;
pub mod health;
pub mod inbox;
pub mod interface_changes;
pub mod metrics;
pub mod mutations;
pub mod plugins;
pub mod repos;
pub mod rfcs;
pub mod stream_tokens;
pub mod topologies;
pub mod webhooks;

/// Smallest and largest `limit` a list endpoint accepts.
pub const PAGE_LIMITS: std::ops::RangeInclusive<i64> = 1..=500;
/// `limit` when the client gives none.
pub const DEFAULT_PAGE_LIMIT: i64 = 50;

/// `?limit=&cursor=` of a list endpoint.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(format = Uuid)]
    pub cursor: Option<String>,
}

impl PageParams {
    /// The validated limit (422 outside [`PAGE_LIMITS`]).
    pub fn limit(&self) -> Result<i64, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE_LIMIT);
        if PAGE_LIMITS.contains(&limit) {
            Ok(limit)
        } else {
            Err(ApiError::Unprocessable(format!(
                "limit must be between {} and {}, got {limit}",
                PAGE_LIMITS.start(),
                PAGE_LIMITS.end()
            )))
        }
    }

    /// The cursor parsed as `T`; a cursor this API did not issue is 422.
    pub fn cursor<T: std::str::FromStr>(&self) -> Result<Option<T>, ApiError> {
        self.cursor
            .as_deref()
            .map(|raw| {
                raw.parse().map_err(|_| {
                    ApiError::Unprocessable(format!(
                        "cursor {raw:?} is not one this endpoint issued; pass `next_cursor` from the previous page"
                    ))
                })
            })
            .transpose()
    }
}

/// `?limit=&cursor=` of a list ordered by a text key (a slug, a node id).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KeyPageParams {
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl From<KeyPageParams> for PageParams {
    fn from(params: KeyPageParams) -> Self {
        Self {
            limit: params.limit,
            cursor: params.cursor,
        }
    }
}

/// One page of a list; `next_cursor` is null on the last page.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page from up to `limit + 1` fetched rows: the extra row only proves there is more.
    pub fn from_rows(mut rows: Vec<T>, limit: i64, cursor_of: impl Fn(&T) -> String) -> Self {
        let has_more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next_cursor = if has_more {
            rows.last().map(cursor_of)
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }
}

/// Answer for a path no route matches. The path is the one the client sent: inside the
/// nested `/api/v1` router the request's own URI has lost its prefix.
pub async fn not_found(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::NotFound(format!("no route for {method} {}", uri.path()))
}

/// Answer for a path that exists, with a method it does not have. Its message gains
/// the allowed methods in [`name_allowed_methods`], once axum has added `Allow`.
pub async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{} does not accept {method}", uri.path()))
}

/// Names the allowed methods in a 405's message. axum adds `Allow` to a 405 only
/// after the method-not-allowed handler has answered, so this runs around the whole
/// router, where the header is there to read. Only the body is replaced: the headers
/// the layers set (`Allow`, CORS) stay, so a browser page may read the message.
pub async fn name_allowed_methods(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let Some(allow) = response.headers().get(header::ALLOW) else {
        return response;
    };
    let allowed = allow.to_str().unwrap_or_default().replace(',', ", ");
    let (mut parts, _) = response.into_parts();
    let (answer, body) = ApiError::MethodNotAllowed(format!(
        "{path} does not accept {method}; it accepts {allowed}"
    ))
    .into_response()
    .into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    // Replaces the body's own headers (`content-type`), keeps every other.
    parts.headers.extend(answer.headers);
    Response::from_parts(parts, body)
}

/// Gives the timeout layer's bare 408 the usual JSON error body.
pub async fn explain_timeout(response: Response) -> Response {
    if response.status() == StatusCode::REQUEST_TIMEOUT {
        return ApiError::Timeout(
            "the request took longer than the limit (config key http.request_timeout)".to_owned(),
        )
        .into_response();
    }
    response
}

/// The request span: method and path only. The query string is left out on purpose:
/// it may carry a stream token, and tokens never reach the logs.
///
/// A request with a valid W3C `traceparent` (and `tracestate`) header continues that
/// trace: the span is its child. Without one, the span starts a new trace (or, for a
/// request made in process through [`crate::loopback`], continues the caller's).
pub fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let span =
        tracing::info_span!("request", method = %request.method(), path = %request.uri().path());
    let header = |name| request.headers().get(name).and_then(|v| v.to_str().ok());
    if let Some(parent) = header(trace::TRACEPARENT)
        .and_then(|traceparent| TraceContext::parse(traceparent, header(trace::TRACESTATE)))
    {
        parent.adopt(&span);
    }
    span
}

/// Answers with the request span's `traceparent` (inside [`request_span`]), so a
/// client can find its request's trace: the trace id it sent, or the one started for it.
pub async fn with_traceparent(mut response: Response) -> Response {
    if let Some(trace) = TraceContext::current()
        && let Ok(value) = header::HeaderValue::from_str(trace.traceparent())
    {
        response.headers_mut().insert(trace::TRACEPARENT, value);
    }
    response
}

/// The request log: one `info` line per request as its response starts, with the
/// span's method and path, the status and the latency (an event stream's lasts only
/// until its headers are sent).
pub fn log_response<B>(
    response: &axum::http::Response<B>,
    latency: std::time::Duration,
    _span: &tracing::Span,
) {
    let latency_ms = (latency.as_secs_f64() * 100_000.0).round() / 100.0;
    tracing::info!(status = response.status().as_u16(), latency_ms, "response");
}

/// A panicking handler becomes a plain 500; the panic is logged, not returned.
pub fn panic_response(_panic: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    let body = serde_json::json!({
        "error": { "code": "internal", "message": crate::error::INTERNAL_MESSAGE }
    });
    (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
}
