//! `GET /metrics`: the process's metrics in the Prometheus text format. Unversioned,
//! outside `/api/v1` and without credentials, like `/healthz` and `/readyz`: no route
//! policy applies to it, and it is not in the OpenAPI document.
//!
//! What it renders is the process's ([`MetricsEndpoint`]): the binary installs the
//! recorder and reads the scrape-time gauges (outbox, consumers, pool). It is served
//! on the API's listener when the process gives the API an endpoint
//! ([`crate::AppState::with_metrics`]), or alone on a listener of its own
//! ([`router`], config key `metrics.listen`).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;

use crate::AppState;
use crate::metrics::{note_route, track};

/// The Prometheus text exposition format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

type Render = dyn Fn() -> BoxFuture<'static, String> + Send + Sync;

/// Renders the process's metrics as Prometheus text; cheap to clone. The rendering
/// must not fail: what it cannot read it leaves out (and says so in its own gauges).
#[derive(Clone)]
pub struct MetricsEndpoint(Arc<Render>);

impl MetricsEndpoint {
    /// An endpoint answering each scrape with what `render` returns.
    pub fn new(render: impl Fn() -> BoxFuture<'static, String> + Send + Sync + 'static) -> Self {
        Self(Arc::new(render))
    }

    async fn answer(&self) -> Response {
        let text = (self.0)().await;
        ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
    }
}

impl std::fmt::Debug for MetricsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsEndpoint")
    }
}

/// `/metrics` for the API's router; nothing when the process gave it no endpoint.
pub(crate) fn routes(state: &AppState) -> Router<AppState> {
    match state.metrics.clone() {
        Some(endpoint) => Router::new().route(
            "/metrics",
            get(move || async move { endpoint.answer().await }),
        ),
        None => Router::new(),
    }
}

/// `/metrics` alone, for a listener of its own (`metrics.listen`); its requests are
/// counted like the API's, and any other path is a 404.
pub fn router(endpoint: MetricsEndpoint) -> Router {
    let app = Router::new()
        .route("/metrics", get(on_own))
        .fallback(super::not_found)
        .with_state(endpoint)
        .layer(axum::middleware::from_fn(note_route));
    Router::new().fallback_service(
        tower::ServiceBuilder::new()
            .layer(axum::middleware::from_fn(track))
            .service(app),
    )
}

/// 200 with the rendering, always: a source that is down shows in the text.
async fn on_own(State(endpoint): State<MetricsEndpoint>) -> Response {
    endpoint.answer().await
}
