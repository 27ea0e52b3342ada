//! # switchyard-api
//!
//! The HTTP API. It validates a request, commits the domain row together with its
//! outbox event in one transaction, rings the relay's doorbell and answers. It never
//! publishes to NATS itself and never waits for a worker.
//!
//! ## Layout
//! - [`routes`]: one module per resource (router, In/Out types, handlers).
//! - [`auth`]: bearer JWTs, roles, stream tokens; checked before any handler (but
//!   the one public operation, the Gitea webhook).
//! - [`openapi`]: the generated OpenAPI 3.1 document, which is also the route table.
//! - [`error`]: the single [`ApiError`] and its JSON shape.
//! - [`extract`]: body/query/path extractors that answer with [`ApiError`].
//! - [`listener`]: connections whose HTTP parse errors get the same JSON answer.
//! - [`loopback`]: the `/api/v1` routes called in process, as a caller.
//! - [`mcp`]: the MCP server at `/mcp`, whose tools are `/api/v1` calls.
//! - [`metrics`]: what the API records for `/metrics` (requests, work, streams).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Method, StatusCode, header};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use switchyard_bus::Doorbell;
use switchyard_domain::json::Limits;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::{AuthConfig, AuthState, Authenticator, RoutePolicy};
use crate::openapi::ApiDoc;

pub mod audit;
pub mod auth;
pub mod error;
pub mod extract;
pub mod listener;
pub mod loopback;
pub mod mcp;
pub mod metrics;
pub mod openapi;
pub mod patch;
pub mod routes;
pub mod ui;
pub mod validate;

pub use error::ApiError;

/// Reads `host:port`, where the host is an IP address or a name (resolved now): the
/// form of every listen address in the configuration.
///
/// # Errors
/// A message naming the forms it takes, when the text is none of them.
pub fn listen_address<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<SocketAddr, D::Error> {
    use std::net::ToSocketAddrs;
    let text = String::deserialize(deserializer)?;
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let problem = || {
        serde::de::Error::custom(format!(
            "{text:?} is not host:port (for example 127.0.0.1:8080, 0.0.0.0:8080, [::1]:8080 or localhost:8080)"
        ))
    };
    if text
        .rsplit_once(':')
        .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
    {
        return Err(problem());
    }
    let mut addrs = text.to_socket_addrs().map_err(|_| problem())?;
    // Prefer IPv4 for names like `localhost`, which clients usually try first.
    let all: Vec<SocketAddr> = addrs.by_ref().collect();
    all.iter()
        .find(|a| a.is_ipv4())
        .or_else(|| all.first())
        .copied()
        .ok_or_else(problem)
}

/// HTTP settings (config section `http`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address the API listens on, `host:port`; port 0 picks a free port. The host is
    /// an IP address or a name resolved once at start-up (`localhost:8080` listens on
    /// the first address `localhost` resolves to).
    #[serde(deserialize_with = "listen_address")]
    pub listen: SocketAddr,
    /// Largest accepted request body, in bytes (413 above).
    pub body_limit_bytes: usize,
    /// Most JSON Patch operations in one mutation.
    pub max_ops_per_mutation: usize,
    /// A request still running after this long is answered 408 (event streams excepted).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Event streams open at once in one process (503 past it).
    pub max_event_streams: usize,
    /// Frames buffered per event-stream client before it is disconnected as lagging.
    pub event_buffer: usize,
    /// Longest silence on an event stream before a keepalive comment.
    #[serde(with = "humantime_serde")]
    pub event_keepalive: Duration,
    /// Most mutations in one `POST /mutations/batch`.
    pub max_batch_mutations: usize,
    /// Most enqueue requests committed together in one transaction (group commit).
    pub group_commit_size: usize,
    /// Longest wait for more enqueue requests to join a group, and only while others
    /// are arriving; a request alone never waits.
    #[serde(with = "humantime_serde")]
    pub group_commit_wait: Duration,
    /// Group-commit transactions in flight at once per process.
    pub group_commit_concurrency: usize,
    /// Browser origins (`https://editor.example.com`, or `*`) whose pages may call the
    /// API and open event streams (CORS). Empty: none but the API's own.
    pub cors_origins: Vec<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 1024 * 1024,
            max_ops_per_mutation: 1000,
            request_timeout: Duration::from_secs(30),
            max_event_streams: 1000,
            event_buffer: 256,
            event_keepalive: Duration::from_secs(15),
            max_batch_mutations: 1000,
            group_commit_size: 256,
            group_commit_wait: Duration::ZERO,
            group_commit_concurrency: 2,
            cors_origins: Vec::new(),
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
    /// Commits single enqueues together (group commit).
    pub enqueue: routes::mutations::GroupCommit,
    pub config: ApiConfig,
    /// Signs and verifies tokens.
    pub authenticator: Arc<Authenticator>,
    pub auth: AuthConfig,
    /// What every stored JSON document keeps to (`documents.*`).
    pub documents: Limits,
    /// Event streams (SSE) replayed from JetStream.
    pub live: routes::events::live::Live,
    /// The `forge.webhook_secret` shared with Gitea, which signs each webhook delivery
    /// with it; `None`: webhooks are refused (401).
    pub webhook_secret: Option<String>,
    /// Fires on shutdown: event streams and MCP sessions end.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// What `GET /metrics` renders on the API's listener; `None`: no `/metrics` here
    /// (the process serves it on a listener of its own, or not at all).
    pub metrics: Option<routes::metrics::MetricsEndpoint>,
}

/// What an API process is told: its own sections (`http.*`, `auth.*`), the document
/// rules it shares with the workers (`documents.*`), and the Gitea webhook secret
/// (`forge.webhook_secret`).
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub http: ApiConfig,
    pub auth: AuthConfig,
    pub documents: Limits,
    /// The `forge.webhook_secret` shared with Gitea; `None` (the default): webhooks
    /// are refused.
    pub webhook_secret: Option<String>,
}

impl AppState {
    /// The state of one API process: its pool, its bus connection (readiness and event
    /// streams), the doorbell of its relay, its settings, and the token secret.
    /// Streams end when `shutdown` fires. Starts the group-commit task, so it must be
    /// called on a Tokio runtime.
    pub fn new(
        pool: PgPool,
        bus: &switchyard_bus::Bus,
        doorbell: Doorbell,
        settings: Settings,
        secret: &[u8],
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Self {
        let Settings {
            http,
            auth,
            documents,
            webhook_secret,
        } = settings;
        let enqueue = routes::mutations::GroupCommit::start(
            pool.clone(),
            doorbell.clone(),
            routes::mutations::GroupCommitConfig {
                size: http.group_commit_size,
                wait: http.group_commit_wait,
                concurrency: http.group_commit_concurrency,
            },
        );
        Self {
            pool,
            nats: bus.client.clone(),
            enqueue,
            doorbell,
            live: routes::events::live::Live::new(bus, &http, shutdown.clone()),
            config: http,
            authenticator: Arc::new(Authenticator::new(secret)),
            auth,
            documents,
            webhook_secret,
            shutdown,
            metrics: None,
        }
    }

    /// Serves `GET /metrics` on the API's listener, rendered by `endpoint`.
    pub fn with_metrics(mut self, endpoint: routes::metrics::MetricsEndpoint) -> Self {
        self.metrics = Some(endpoint);
        self
    }
}

/// The OpenAPI document of the whole API, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    with_base(v1_routes().split_for_parts().1)
}

fn v1_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(routes::topologies::router())
        .merge(routes::mutations::router())
        .merge(routes::stream_tokens::router())
        .merge(routes::repos::router())
        .merge(routes::interface_changes::router())
        .merge(routes::inbox::router())
        .merge(routes::dispatch::router())
        .merge(routes::plugins::router())
        .merge(routes::graphs::router())
        .merge(routes::events::router())
        .merge(routes::audit::router())
        .merge(routes::rfcs::router())
        .merge(routes::forge::router())
        .merge(routes::webhooks::router())
}

/// The base document with the `/api/v1` operations nested in.
fn with_base(v1: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    ApiDoc::openapi().nest("/api/v1", v1)
}

/// The whole HTTP surface: `/healthz`, `/readyz`, `/metrics` (when the process gave
/// [`AppState::with_metrics`]), `/openapi.json`, `/docs`; behind authentication,
/// everything under `/api/v1` (but the public `POST /api/v1/webhooks/gitea`, which
/// checks Gitea's signature instead); the dashboard under `/ui/` (session cookies) and
/// the MCP server at `/mcp` (bearer tokens), both of which act only through the
/// `/api/v1` routes ([`loopback`]). Every request from the wire is counted
/// ([`metrics::track`]).
pub fn router(state: AppState) -> Router {
    let api = api_router(state.clone());
    let loopback = loopback::Loopback::new(api.clone());
    let app = Router::new()
        .merge(mcp::router(&state, loopback.clone()))
        .merge(ui::router(state, loopback))
        .route_layer(axum::middleware::from_fn(metrics::note_route))
        .fallback_service(api);
    // Around everything, once per request; the routers inside note the template.
    Router::new().fallback_service(
        tower::ServiceBuilder::new()
            .layer(axum::middleware::from_fn(metrics::track))
            .service(app),
    )
}

/// `/healthz`, `/readyz`, `/metrics`, `/openapi.json`, `/docs` and `/api/v1`.
fn api_router(state: AppState) -> Router {
    let (v1, v1_spec) = v1_routes().split_for_parts();
    let spec = with_base(v1_spec);
    let auth = AuthState {
        authenticator: state.authenticator.clone(),
        policy: Arc::new(RoutePolicy::from_openapi(&spec)),
    };
    let v1 = v1
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            auth,
            auth::authenticate,
        ));
    let app = Router::new()
        .merge(routes::health::router())
        .merge(routes::metrics::routes(&state))
        .nest("/api/v1", v1)
        .merge(SwaggerUi::new("/docs").url("/openapi.json", spec))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.body_limit_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.config.request_timeout,
        ))
        // Outside the timeout, so it sees (and explains) the 408 the timeout produces.
        .layer(axum::middleware::map_response(routes::explain_timeout))
        .layer(CatchPanicLayer::custom(routes::panic_response))
        // On each route, where the matched template is known.
        .layer(axum::middleware::from_fn(metrics::note_route));
    // Outside authentication: a browser's preflight carries no credentials.
    let app = match cors(&state.config.cors_origins) {
        Some(cors) => app.layer(cors),
        None => app,
    };
    let app = app
        .layer(axum::middleware::map_response(routes::with_traceparent))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(routes::request_span)
                .on_response(routes::log_response),
        )
        .with_state(state);
    // Around the whole router rather than each route (as `Router::layer` does): see
    // `routes::name_allowed_methods`.
    Router::new().fallback_service(
        tower::ServiceBuilder::new()
            .layer(axum::middleware::from_fn(routes::name_allowed_methods))
            .service(app),
    )
}

/// Cross-origin access for the configured browser origins, if any.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allowed = if origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else {
        // Validated at start-up (config key http.cors_origins).
        AllowOrigin::list(origins.iter().filter_map(|origin| origin.parse().ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allowed)
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("last-event-id"),
            ])
            .max_age(Duration::from_secs(600)),
    )
}
