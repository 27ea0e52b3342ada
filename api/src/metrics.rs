//! What the API records through the `metrics` facade: every HTTP request (its route
//! template, method, status and latency: [`track`]), the work it commits ([`work`]),
//! and its open event streams ([`OpenStream`]). Names, kinds and help texts are in
//! `switchyard_domain::metrics`.
//!
//! The process installs the recorder and renders it (`cli`); this crate only serves
//! the rendering at `/metrics` ([`crate::routes::metrics`]). Without a recorder every
//! call here records nothing, at the cost of a branch.
//!
//! ## Route templates, never paths
//! The `route` label is the template that served a request
//! (`/api/v1/topologies/{id}/mutations`), so the number of series stays bounded
//! whatever clients ask for: a path no route serves is [`UNMATCHED`], and a method
//! outside the standard ones is `other`. The template is only known once the router
//! has matched, deep inside it, so [`track`] (around everything) leaves a
//! [`RouteSlot`] in the request for [`note_route`] (on each router's routes) to fill.
//! Requests the dashboard and the MCP server make through [`crate::loopback`] carry
//! no slot and are not counted: only requests from the wire are.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use switchyard_domain::metrics::{self as catalogue, Outcome, Resource};

/// The `route` label of a request that no route served.
pub const UNMATCHED: &str = "unmatched";

/// Where [`note_route`] leaves the template of the route that served a request.
#[derive(Clone, Default)]
pub struct RouteSlot(Arc<Mutex<Option<MatchedPath>>>);

impl RouteSlot {
    fn route(&self) -> Option<MatchedPath> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Counts and times every request (`switchyard_http_requests_total`,
/// `switchyard_http_request_duration_seconds`): the outermost layer of a listener.
/// The latency runs until the response's headers, so an event stream's is its opening.
pub async fn track(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let slot = RouteSlot::default();
    request.extensions_mut().insert(slot.clone());
    let response = next.run(request).await;
    let route = slot
        .route()
        .map_or_else(|| UNMATCHED.to_owned(), |m| m.as_str().to_owned());
    let labels = [
        ("route", route),
        ("method", method.to_owned()),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!(catalogue::HTTP_REQUESTS.name, &labels).increment(1);
    metrics::histogram!(catalogue::HTTP_DURATION.name, &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Notes the template of the route serving this request for [`track`]. Layered with
/// `Router::layer`, which wraps each route, so the matched path is known here; the
/// innermost router's note is the one kept.
pub async fn note_route(request: Request, next: Next) -> Response {
    if let (Some(slot), Some(matched)) = (
        request.extensions().get::<RouteSlot>(),
        request.extensions().get::<MatchedPath>(),
    ) {
        *slot.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(matched.clone());
    }
    next.run(request).await
}

/// The `method` label: the standard methods by name, anything else `other` (a client
/// could otherwise mint a series per made-up method).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts `count` units of work committed (`switchyard_work_total`). Call only after
/// the transaction that wrote them has committed.
pub fn work(resource: Resource, outcome: Outcome, count: usize) {
    if count == 0 {
        return;
    }
    metrics::counter!(
        catalogue::WORK.name,
        "resource" => resource.as_str(),
        "outcome" => outcome.as_str(),
    )
    .increment(count as u64);
}

/// One open event stream (`switchyard_event_streams_open`): counted while it lives.
#[derive(Debug)]
pub struct OpenStream(());

impl OpenStream {
    /// Counts a stream as open until the value is dropped.
    pub fn open() -> Self {
        metrics::gauge!(catalogue::EVENT_STREAMS.name).increment(1.0);
        Self(())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        metrics::gauge!(catalogue::EVENT_STREAMS.name).decrement(1.0);
    }
}
