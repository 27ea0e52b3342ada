//! Finding a repo by what a checkout knows about itself: its git fingerprint (a
//! list, possibly empty) or its remote URL (one repo, or 404). Remote URLs compare
//! in a normalized form ([`super::remote`]), so every usual spelling of a remote finds
//! the same repo.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;

use super::RepoOut;
use super::remote::remote_key;
use crate::AppState;
use crate::error::ApiError;
use crate::extract::Query;
use crate::openapi::Refusals;

/// `?hash=&remote_url=` of the fingerprint lookup.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FingerprintParams {
    /// The git fingerprint to look for.
    pub hash: String,
    /// Narrow to repos with this remote (compared normalized).
    #[param(pattern = "^[^/:]+:")]
    pub remote_url: Option<String>,
}

/// Repos with this git fingerprint (possibly none), by slug.
#[utoipa::path(
    get,
    path = "/repos/by-fingerprint",
    tag = "repos",
    params(FingerprintParams),
    responses((status = 200, description = "Matching repos, possibly none", body = Vec<RepoOut>), Refusals),
    security(("bearer" = ["viewer"]))
)]
pub(super) async fn by_fingerprint(
    State(app): State<AppState>,
    Query(params): Query<FingerprintParams>,
) -> Result<Json<Vec<RepoOut>>, ApiError> {
    let remote = params.remote_url.as_deref().map(remote_key).transpose()?;
    let rows = sqlx::query_as!(
        RepoOut,
        "select slug, name, domain, remote_url, git_fingerprint, description, archived_at, created_at, updated_at from repos
         where git_fingerprint = $1 and ($2::text is null or remote_key = $2)
         order by slug limit 500",
        &params.hash,
        remote,
    )
    .fetch_all(&app.pool)
    .await?;
    Ok(Json(rows))
}

/// `?url=` of the remote lookup.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RemoteParams {
    /// A git remote URL, in any of its usual spellings.
    #[param(pattern = "^[^/:]+:")]
    pub url: String,
}

/// The repo with this remote: the active one, else the last archived.
#[utoipa::path(
    get,
    path = "/repos/by-remote",
    tag = "repos",
    params(RemoteParams),
    responses((status = 200, description = "The repo", body = RepoOut), Refusals),
    security(("bearer" = ["viewer"]))
)]
pub(super) async fn by_remote(
    State(app): State<AppState>,
    Query(params): Query<RemoteParams>,
) -> Result<Json<RepoOut>, ApiError> {
    let key = remote_key(&params.url)?;
    sqlx::query_as!(
        RepoOut,
        "select slug, name, domain, remote_url, git_fingerprint, description, archived_at, created_at, updated_at from repos where remote_key = $1
         order by archived_at desc nulls first limit 1",
        &key,
    )
    .fetch_optional(&app.pool)
    .await?
    .map(Json)
    // The key, not the URL as given: a URL may carry credentials, never repeated.
    .ok_or_else(|| ApiError::NotFound(format!("no repo has the remote {key:?}")))
}
