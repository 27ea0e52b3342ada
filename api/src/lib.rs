//! # switchyard-api
//!
//! The HTTP API. It validates a request, commits the domain row together with its
//! outbox event in one transaction, rings the relay's doorbell and answers. It never
//! publishes to NATS itself and never waits for a worker.
//!
//! ## Layout
//! - [`routes`]: one module per resource (router, In/Out types, handlers).
//! - [`error`]: the single [`ApiError`] and its JSON shape.
//! - [`extract`]: body/query/path extractors that answer with [`ApiError`].

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use serde::Deserialize;
use sqlx::PgPool;
use switchyard_bus::Doorbell;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub mod error;
pub mod extract;
pub mod patch;
pub mod routes;

pub use error::ApiError;

/// HTTP settings (config section `http`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address the API listens on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Largest accepted request body, in bytes (413 above).
    pub body_limit_bytes: usize,
    /// Largest topology document, in bytes, at creation and after any mutation.
    pub max_document_bytes: usize,
    /// Most JSON Patch operations in one mutation.
    pub max_ops_per_mutation: usize,
    /// A request still running after this long is answered 408.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 1024 * 1024,
            max_document_bytes: 512 * 1024,
            max_ops_per_mutation: 1000,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// What every handler may use.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Where every request's rows and outbox events are committed.
    pub pool: PgPool,
    /// Only for `/readyz`; handlers publish through the outbox, never directly.
    pub nats: async_nats::Client,
    /// Rung after each commit so the relay publishes the staged events at once.
    pub doorbell: Doorbell,
    pub config: ApiConfig,
}

/// The whole HTTP surface: `/healthz`, `/readyz` and everything under `/api/v1`.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .merge(routes::topologies::router())
        .merge(routes::mutations::router());
    Router::new()
        .merge(routes::health::router())
        .nest("/api/v1", v1)
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.body_limit_bytes))
        .layer(axum::middleware::map_response(routes::explain_timeout))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.config.request_timeout,
        ))
        .layer(CatchPanicLayer::custom(routes::panic_response))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
