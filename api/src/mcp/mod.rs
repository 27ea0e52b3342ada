//! The MCP server at `/mcp`: the API as tools for agents, over Streamable HTTP
//! (`rmcp`).
//!
//! ## Credentials
//! Every request to `/mcp` needs the same `Authorization: Bearer <token>` as the API,
//! checked by [`authenticate`] before `rmcp` reads the request: without a valid API
//! token it is a 401 with the API's `WWW-Authenticate` challenge and JSON error (a
//! stream token is refused here too, in the header or in `?token=`). The role is not
//! checked here: each tool is one `/api/v1` request with the caller's own header
//! ([`tools`]), and the route's role check answers for it (403 as a tool error).
//!
//! ## Sessions
//! Clients that negotiate a protocol version before 2026-07-28 get a session
//! (`Mcp-Session-Id`) kept in this process; later versions are stateless. Each request
//! is authenticated on its own, and each tool call acts with the token of the request
//! that carried it, so a session id alone grants nothing. Sessions end when the process
//! shuts down ([`AppState::shutdown`]).
//!
//! ## Hosts and origins
//! `rmcp` accepts only loopback `Host` headers by default, against DNS rebinding: a
//! page on a rebound name could reach a server on localhost that trusts whoever can
//! connect. This server trusts no one without a bearer token, which such a page does
//! not have (a browser sends no `Authorization` header of its own accord, and `/mcp`
//! answers no CORS preflight that would let a page send one), so any `Host` is
//! accepted: a deployment behind a load balancer or under its own name works.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tower_http::trace::TraceLayer;

use crate::auth::{Authenticator, TokenError};
use crate::error::ApiError;
use crate::loopback::Loopback;
use crate::{AppState, routes};

mod params;
pub mod tools;

pub use tools::Tools;

/// Where the server is mounted.
pub const PATH: &str = "/mcp";

/// `/mcp`: the Streamable HTTP endpoint (POST for messages, GET for a session's
/// stream, DELETE to end a session), behind bearer authentication, whose tools call
/// the API through `loopback`.
pub fn router(state: &AppState, loopback: Loopback) -> Router {
    let config = StreamableHttpServerConfig::default()
        // Every session ends when the process shuts down.
        .with_cancellation_token(state.shutdown.child_token())
        // Any Host: see the module docs (bearer tokens, not the network, are the guard).
        .disable_allowed_hosts()
        .with_max_request_body_bytes(state.config.body_limit_bytes);
    let tool_router = Tools::router();
    let service = StreamableHttpService::new(
        move || Ok(Tools::new(loopback.clone(), tool_router.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    Router::new()
        .route_service(PATH, service)
        .layer(axum::middleware::from_fn_with_state(
            state.authenticator.clone(),
            authenticate,
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(routes::request_span)
                .on_response(routes::log_response),
        )
}

/// Lets a request through only with a valid API token in its `Authorization` header;
/// anything else is the API's 401 (challenge and JSON body), before `rmcp` sees it.
pub async fn authenticate(
    State(authenticator): State<Arc<Authenticator>>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let checked = authenticator
        .caller(
            request.method(),
            request.uri().path(),
            headers,
            request.uri().query(),
        )
        .and_then(|_caller| {
            // `caller` accepts a stream token in `?token=` on the path it was minted
            // for; no stream token opens /mcp.
            if headers.contains_key(header::AUTHORIZATION) {
                Ok(())
            } else {
                Err(TokenError::StreamTokenMisused)
            }
        });
    match checked {
        Ok(()) => next.run(request).await,
        Err(refusal) => ApiError::Unauthorized(refusal).into_response(),
    }
}
