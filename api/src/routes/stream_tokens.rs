//! `POST /stream-tokens`: a short-lived token that opens one event stream.
//!
//! Browsers cannot set an `Authorization` header on `EventSource`, so event streams
//! accept `?token=`, but only a token minted here: bound to one stream path, valid for
//! `auth.stream_token_ttl` (at most 5 minutes), carrying the minter's role.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
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
        pattern = "^/api/v1/(events|(topologies|graphs|repos)/[a-z0-9][a-z0-9-]{0,99}/events)$"
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
    Body(input): Body<StreamTokenIn>,
) -> Result<(StatusCode, Json<StreamTokenOut>), ApiError> {
    if !is_stream_path(&input.path) {
        return Err(ApiError::Unprocessable(format!(
            "path {:?} is not an event stream; expected /api/v1/events or /api/v1/{{topologies|graphs|repos}}/{{id or slug}}/events",
            input.path
        )));
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

/// `/api/v1/events`, or `/api/v1/{topologies|graphs|repos}/{id or slug}/events`.
pub fn is_stream_path(path: &str) -> bool {
    if path == "/api/v1/events" {
        return true;
    }
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let legal_token = |t: &str| {
        (1..=100).contains(&t.len())
            && t.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && t.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    matches!(parts.as_slice(), [kind, id, "events"]
        if ["topologies", "graphs", "repos"].contains(kind) && legal_token(id))
}

#[cfg(test)]
mod tests {
    use super::is_stream_path;

    #[test]
    fn only_event_stream_paths_qualify() {
        assert!(is_stream_path("/api/v1/events"));
        assert!(is_stream_path(
            "/api/v1/topologies/01a2014e-c2ba-773e-abec-2844eaa51aa9/events"
        ));
        assert!(is_stream_path("/api/v1/repos/billing-api/events"));
        for bad in [
            "/api/v1/topologies",
            "/api/v1/topologies/x/mutations",
            "/api/v1/users/x/events",
            "/api/v1/repos/../events",
            "/events",
        ] {
            assert!(!is_stream_path(bad), "{bad}");
        }
    }
}
