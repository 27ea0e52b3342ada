//! Finding a repo by what a checkout knows about itself: its git fingerprint (a
//! list, possibly empty) or its remote URL (one repo, or 404). Remote URLs compare
//! in a normalized form, so every usual spelling of a remote finds the same repo.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;

use super::RepoOut;
use crate::AppState;
use crate::error::ApiError;
use crate::extract::Query;
use crate::openapi::Refusals;

/// The comparable form of a git remote: `host/path`, host lowercased, without scheme,
/// user, port-less `:` of scp syntax, `.git` or trailing slashes.
pub fn remote_key(url: &str) -> Result<String, ApiError> {
    let Some((head, tail)) = url
        .split_once(':')
        .filter(|(head, _)| !head.is_empty() && !head.contains('/'))
    else {
        return Err(ApiError::Unprocessable(format!(
            "remote_url {url:?} is not a git remote: use scheme://host/path or user@host:path"
        )));
    };
    let rest = match tail.strip_prefix("//") {
        // `scheme://[user@]host/path`
        Some(rest) => rest.to_owned(),
        // scp-like `[user@]host:path`
        None => format!("{head}/{tail}"),
    };
    let (authority, path) = rest.split_once('/').unwrap_or((&rest, ""));
    // Only the authority carries `user@`; an `@` in the path is part of the path.
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    Ok(format!("{}/{}", host.to_lowercase(), path))
}

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
    let rows = sqlx::query_as::<_, RepoOut>(concat!(
        "select ",
        repo_columns!(),
        " from repos
         where git_fingerprint = $1 and ($2::text is null or remote_key = $2)
         order by slug limit 500"
    ))
    .bind(&params.hash)
    .bind(remote)
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
    sqlx::query_as::<_, RepoOut>(concat!(
        "select ",
        repo_columns!(),
        " from repos where remote_key = $1
         order by archived_at desc nulls first limit 1"
    ))
    .bind(&key)
    .fetch_optional(&app.pool)
    .await?
    .map(Json)
    .ok_or_else(|| ApiError::NotFound(format!("no repo has the remote {:?}", params.url)))
}

#[cfg(test)]
mod tests {
    use super::remote_key;

    #[test]
    fn remotes_compare_in_every_usual_spelling() {
        let expected = "github.com/acme/billing";
        for url in [
            "https://github.com/acme/billing",
            "https://github.com/acme/billing.git",
            "https://user@GitHub.com/acme/billing/",
            "git@github.com:acme/billing.git",
            "ssh://git@github.com/acme/billing.git",
        ] {
            assert_eq!(remote_key(url).unwrap(), expected, "{url}");
        }
        assert!(remote_key("not a remote").is_err());
        assert_eq!(
            remote_key("https://host/group/@scope/pkg").unwrap(),
            "host/group/@scope/pkg"
        );
    }
}
