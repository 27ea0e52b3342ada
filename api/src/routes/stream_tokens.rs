//! `POST /stream-tokens`: a short-lived token that opens one event stream.
//!
//! Browsers cannot set an `Authorization` header on `EventSource`, so event streams
//! accept `?token=`, but only a token minted here: bound to one stream path, valid for
//! `auth.stream_token_ttl` (at most 5 minutes), carrying the minter's role. A token is
//! minted only for a stream the minter's role may open (403 naming the role needed
//! otherwise), read from the same route table that authentication enforces.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::{Caller, RoutePolicy};
use crate::error::ApiError;
use crate::extract::Body;
use crate::openapi::Refusals;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(mint))
}

/// Body of `POST /stream-tokens`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamTokenIn {
    /// The event stream to open, e.g. `/api/v1/topologies/{id}/events`.
    #[schema(
        pattern = "^/api/v1/(events|(topologies|graphs|repos|rfcs)/[a-z0-9][a-z0-9-]{0,99}/events)$"
    )]
    pub path: String,
}

/// A stream token. It is checked when a stream opens, so an open stream outlives it.
/// A browser's `EventSource` retries with the same URL; on error, mint a new token
/// and reopen with `?last_event_id=` set to the last id received, to resume exactly.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamTokenOut {
    /// Pass as `?token=` on `path`, and nowhere else.
    pub token: String,
    pub path: String,
    pub expires_at: DateTime<Utc>,
}

/// Mint a stream token for one event-stream path.
#[utoipa::path(
    post,
    path = "/stream-tokens",
    tag = "auth",
    request_body = StreamTokenIn,
    responses((status = 201, description = "Minted", body = StreamTokenOut), Refusals),
    security(("bearer" = ["viewer"]))
)]
async fn mint(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(policy): Extension<Arc<RoutePolicy>>,
    Body(input): Body<StreamTokenIn>,
) -> Result<(StatusCode, Json<StreamTokenOut>), ApiError> {
    let Some(route) = stream_route(&input.path) else {
        return Err(ApiError::Unprocessable(format!(
            "path {:?} is not an event stream; expected /api/v1/events or /api/v1/{{topologies|graphs|repos|rfcs}}/{{id or slug}}/events",
            input.path
        )));
    };
    // Refused now rather than when the stream opens, so a client learns at once. A
    // stream route missing from the table is refused too (fail closed).
    match policy.required(&Method::GET, route) {
        Some(needed) if caller.role >= needed => {}
        needed => {
            return Err(ApiError::Forbidden(format!(
                "opening {} needs the {} role; your token has {}",
                input.path,
                needed.map_or("undeclared", |role| role.as_str()),
                caller.role.as_str()
            )));
        }
    }
    let ttl = app.auth.stream_token_ttl;
    let (token, expires) = app.authenticator.mint_stream(&caller, &input.path, ttl);
    let expires_at = DateTime::from_timestamp(expires, 0).unwrap_or_else(Utc::now);
    let out = StreamTokenOut {
        token,
        path: input.path,
        expires_at,
    };
    Ok((StatusCode::CREATED, Json(out)))
}

/// The route template of an event-stream path: `/api/v1/events`, or
/// `/api/v1/{topologies|graphs|repos|rfcs}/{id or slug}/events`; `None` for anything
/// else.
pub fn stream_route(path: &str) -> Option<&'static str> {
    if path == "/api/v1/events" {
        return Some("/api/v1/events");
    }
    let rest = path.strip_prefix("/api/v1/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let legal_token = |t: &str| {
        (1..=100).contains(&t.len())
            && t.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && t.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    match parts.as_slice() {
        [kind, id, "events"] if legal_token(id) => match *kind {
            "topologies" => Some("/api/v1/topologies/{id}/events"),
            "graphs" => Some("/api/v1/graphs/{slug}/events"),
            "repos" => Some("/api/v1/repos/{slug}/events"),
            "rfcs" => Some("/api/v1/rfcs/{slug}/events"),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Method;

    use super::stream_route;
    use crate::auth::RoutePolicy;

    #[test]
    fn only_event_stream_paths_qualify() {
        assert_eq!(stream_route("/api/v1/events"), Some("/api/v1/events"));
        assert_eq!(
            stream_route("/api/v1/topologies/01a2014e-c2ba-773e-abec-2844eaa51aa9/events"),
            Some("/api/v1/topologies/{id}/events")
        );
        assert_eq!(
            stream_route("/api/v1/repos/billing-api/events"),
            Some("/api/v1/repos/{slug}/events")
        );
        for bad in [
            "/api/v1/topologies",
            "/api/v1/topologies/x/mutations",
            "/api/v1/users/x/events",
            "/api/v1/repos/../events",
            "/events",
        ] {
            assert_eq!(stream_route(bad), None, "{bad}");
        }
    }

    /// Every stream a token can be minted for is a declared route, so its role is known.
    #[test]
    fn every_stream_route_is_in_the_route_table() {
        let policy = RoutePolicy::from_openapi(&crate::openapi());
        for path in [
            "/api/v1/events",
            "/api/v1/topologies/t/events",
            "/api/v1/graphs/g/events",
            "/api/v1/repos/r/events",
            "/api/v1/rfcs/r/events",
        ] {
            let route = stream_route(path).unwrap();
            assert!(policy.required(&Method::GET, route).is_some(), "{route}");
        }
    }
}
