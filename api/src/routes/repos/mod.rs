//! Repos: the registry's members, known by slug.
//!
//! `POST /repos`, `GET /repos?domain=`, `GET /repos/{slug}`, `PATCH /repos/{slug}`,
//! `POST /repos/{slug}/archive`, and lookups by git fingerprint and by remote URL.
//! Every change commits with its `audit_log` row and a `repo.{slug}.updated`
//! event. Archived repos are read-only; they keep their inbox and history.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{PgConnection, PgExecutor};
use switchyard_bus::payloads::RepoUpdated;
use switchyard_domain::status::AuditEntity;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Page, PageParams};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{Body, Path, Query};
use crate::openapi::{ErrorBody, Refusals};
use crate::{AppState, audit, validate};
use switchyard_bus::OutboxTx;
use switchyard_bus::{Payload, Source};

const SOURCE: Source = Source::Api;
mod lookup;
mod remote;

/// Path segments under `/repos` that a slug would shadow.
const RESERVED_SLUGS: [&str; 2] = ["by-fingerprint", "by-remote"];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, register))
        .routes(routes!(lookup::by_fingerprint))
        .routes(routes!(lookup::by_remote))
        .routes(routes!(show, edit))
        .routes(routes!(archive))
}

/// Body of `POST /repos`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RepoIn {
    /// Lowercase letters, digits and dashes, 1 to 63 characters; never changes.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    pub slug: String,
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub name: String,
    /// A grouping such as `payments`; `GET /repos?domain=` filters by it.
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    pub domain: Option<String>,
    /// `https://host/owner/repo(.git)` or `git@host:owner/repo.git`, without
    /// credentials: a password, an HTTP user or token, or a query string is a 422.
    #[schema(min_length = 1, max_length = 2000, pattern = "^[^/:]+:")]
    pub remote_url: Option<String>,
    /// A stable hash identifying the repository's history (for example its root commit).
    #[schema(min_length = 1, max_length = 200, pattern = "^\\S+$")]
    pub git_fingerprint: Option<String>,
    #[schema(min_length = 1, max_length = 10000, pattern = "\\S")]
    pub description: Option<String>,
}

/// Body of `PATCH /repos/{slug}`: fields to change; `null` clears an optional one
/// (`name` cannot be cleared: `null` there is a 422).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RepoPatch {
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = String, min_length = 1, max_length = 200, pattern = "\\S")]
    pub name: Option<String>,
    #[serde(default, with = "serde_with::rust::double_option")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 100, pattern = "\\S")]
    pub domain: Option<Option<String>>,
    #[serde(default, with = "serde_with::rust::double_option")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 2000, pattern = "^[^/:]+:")]
    pub remote_url: Option<Option<String>>,
    #[serde(default, with = "serde_with::rust::double_option")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 200, pattern = "^\\S+$")]
    pub git_fingerprint: Option<Option<String>>,
    #[serde(default, with = "serde_with::rust::double_option")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 10000, pattern = "\\S")]
    pub description: Option<Option<String>>,
}

/// A repo as the API returns it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RepoOut {
    pub slug: String,
    pub name: String,
    pub domain: Option<String>,
    pub remote_url: Option<String>,
    pub git_fingerprint: Option<String>,
    pub description: Option<String>,
    /// Set once archived; archived repos are read-only.
    pub archived_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The repo's fields after validation, ready to store.
struct Fields {
    name: String,
    domain: Option<String>,
    remote_url: Option<String>,
    remote_key: Option<String>,
    git_fingerprint: Option<String>,
    description: Option<String>,
}

impl Fields {
    fn check(
        name: &str,
        domain: Option<&str>,
        remote_url: Option<&str>,
        git_fingerprint: Option<&str>,
        description: Option<&str>,
    ) -> Result<Self, ApiError> {
        let remote_url = validate::optional_text("remote_url", remote_url, 2000)?;
        let git_fingerprint = validate::optional_text("git_fingerprint", git_fingerprint, 200)?;
        if let Some(fingerprint) = &git_fingerprint
            && fingerprint.chars().any(char::is_whitespace)
        {
            return Err(ApiError::Unprocessable(
                "git_fingerprint must not contain whitespace".to_owned(),
            ));
        }
        Ok(Self {
            name: validate::text("name", name, 200)?,
            domain: validate::optional_text("domain", domain, 100)?,
            remote_key: remote_url
                .as_deref()
                .map(|url| remote::storable_remote_key("remote_url", url))
                .transpose()?,
            remote_url,
            git_fingerprint,
            description: description
                .map(|d| validate::text("description", d, 10_000))
                .transpose()?,
        })
    }
}

/// Register a repo.
#[utoipa::path(
    post,
    path = "/repos",
    tag = "repos",
    request_body = RepoIn,
    responses(
        (status = 201, description = "Registered", body = RepoOut),
        (status = 409, description = "The slug, or the remote, is taken", body = ErrorBody),
        Refusals
    ),
    security(("bearer" = ["admin"]))
)]
async fn register(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Body(input): Body<RepoIn>,
) -> Result<(StatusCode, Json<RepoOut>), ApiError> {
    validate::slug("slug", &input.slug)?;
    if RESERVED_SLUGS.contains(&input.slug.as_str()) {
        return Err(ApiError::Unprocessable(format!(
            "slug {:?} is reserved (it is a path under /repos)",
            input.slug
        )));
    }
    let fields = Fields::check(
        &input.name,
        input.domain.as_deref(),
        input.remote_url.as_deref(),
        input.git_fingerprint.as_deref(),
        input.description.as_deref(),
    )?;
    let mut tx = OutboxTx::begin(&app.pool).await?;
    let repo = sqlx::query_as!(
        RepoOut,
        "insert into repos (slug, name, domain, remote_url, remote_key, git_fingerprint, description)
         values ($1, $2, $3, $4, $5, $6, $7)
         returning slug, name, domain, remote_url, git_fingerprint, description, archived_at, created_at, updated_at",
        &input.slug,
        &fields.name,
        fields.domain.as_deref(),
        fields.remote_url.as_deref(),
        fields.remote_key.as_deref(),
        fields.git_fingerprint.as_deref(),
        fields.description.as_deref(),
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| conflict(e, &input.slug))?;
    changed(&mut tx, &repo, "registered", &caller).await?;
    tx.commit(&app.doorbell).await?;
    Ok((StatusCode::CREATED, Json(repo)))
}

/// Stages the `repo.{slug}.updated` event and writes the audit row.
async fn changed(
    tx: &mut OutboxTx<'_>,
    repo: &RepoOut,
    action: &str,
    caller: &Caller,
) -> Result<(), ApiError> {
    audit::record(
        tx,
        AuditEntity::Repo,
        &repo.slug,
        action,
        &caller.subject,
        json!(repo),
    )
    .await?;
    let event = RepoUpdated {
        repo_slug: repo.slug.clone(),
        action: action.to_owned(),
    }
    .event(SOURCE);
    tx.stage(std::slice::from_ref(&event));
    Ok(())
}

/// 409 for a taken slug or remote; other errors pass through.
fn conflict(error: sqlx::Error, slug: &str) -> ApiError {
    let constraint = error
        .as_database_error()
        .and_then(|e| e.constraint())
        .map(str::to_owned);
    match constraint.as_deref() {
        Some("repos_pkey") => ApiError::Conflict(format!("repo {slug:?} already exists")),
        Some("repos_remote_key") => ApiError::Conflict(
            "remote_url is already registered to another active repo (GET /repos/by-remote?url=)"
                .to_owned(),
        ),
        _ => error.into(),
    }
}

/// `?domain=` plus paging.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only repos of this domain.
    pub domain: Option<String>,
    /// Include archived repos (default false).
    pub include_archived: Option<bool>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// List repos by slug, a page at a time.
#[utoipa::path(
    get,
    path = "/repos",
    tag = "repos",
    params(ListParams),
    responses((status = 200, description = "A page of repos", body = Page<RepoOut>), Refusals),
    security(("bearer" = ["viewer"]))
)]
async fn list(
    State(app): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Json<Page<RepoOut>>, ApiError> {
    let page = PageParams {
        limit: params.limit,
        cursor: params.cursor,
    };
    let limit = page.limit()?;
    let after: Option<String> = page.cursor()?;
    let rows = sqlx::query_as!(
        RepoOut,
        "select slug, name, domain, remote_url, git_fingerprint, description, archived_at, created_at, updated_at from repos
         where ($1::text is null or domain = $1)
           and ($2 or archived_at is null)
           and ($3::text is null or slug > $3)
         order by slug
         limit $4",
        params.domain.as_deref(),
        params.include_archived.unwrap_or(false),
        after,
        limit + 1,
    )
    .fetch_all(&app.pool)
    .await?;
    Ok(Json(Page::from_rows(rows, limit, |r| r.slug.clone())))
}

/// One repo.
#[utoipa::path(
    get,
    path = "/repos/{slug}",
    tag = "repos",
    params(("slug" = String, Path, description = "Repo slug")),
    responses((status = 200, description = "The repo", body = RepoOut), Refusals),
    security(("bearer" = ["viewer"]))
)]
async fn show(
    State(app): State<AppState>,
    Path(slug): Path<String>,
) -> Result<Json<RepoOut>, ApiError> {
    find(&app.pool, &slug).await.map(Json)
}

/// Change a repo's fields (not its slug).
#[utoipa::path(
    patch,
    path = "/repos/{slug}",
    tag = "repos",
    params(("slug" = String, Path, description = "Repo slug")),
    request_body = RepoPatch,
    responses(
        (status = 200, description = "The edited repo", body = RepoOut),
        (status = 409, description = "The repo is archived, or the remote is taken", body = ErrorBody),
        Refusals
    ),
    security(("bearer" = ["admin"]))
)]
async fn edit(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(slug): Path<String>,
    Body(patch): Body<RepoPatch>,
) -> Result<Json<RepoOut>, ApiError> {
    let mut tx = OutboxTx::begin(&app.pool).await?;
    let current = locked(&mut tx, &slug).await?;
    let pick = |new: Option<Option<String>>, old: Option<String>| new.unwrap_or(old);
    let fields = Fields::check(
        patch.name.as_deref().unwrap_or(&current.name),
        pick(patch.domain, current.domain).as_deref(),
        pick(patch.remote_url, current.remote_url).as_deref(),
        pick(patch.git_fingerprint, current.git_fingerprint).as_deref(),
        pick(patch.description, current.description).as_deref(),
    )?;
    let repo = sqlx::query_as!(
        RepoOut,
        "update repos set name = $2, domain = $3, remote_url = $4, remote_key = $5,
                git_fingerprint = $6, description = $7, updated_at = now()
         where slug = $1
         returning slug, name, domain, remote_url, git_fingerprint, description, archived_at, created_at, updated_at",
        &slug,
        &fields.name,
        fields.domain.as_deref(),
        fields.remote_url.as_deref(),
        fields.remote_key.as_deref(),
        fields.git_fingerprint.as_deref(),
        fields.description.as_deref(),
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| conflict(e, &slug))?;
    changed(&mut tx, &repo, "edited", &caller).await?;
    tx.commit(&app.doorbell).await?;
    Ok(Json(repo))
}

/// Archive a repo: it stays readable, keeps its inbox, and accepts no more changes.
#[utoipa::path(
    post,
    path = "/repos/{slug}/archive",
    tag = "repos",
    params(("slug" = String, Path, description = "Repo slug")),
    responses(
        (status = 200, description = "The archived repo", body = RepoOut),
        (status = 409, description = "Already archived", body = ErrorBody),
        Refusals
    ),
    security(("bearer" = ["admin"]))
)]
async fn archive(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(slug): Path<String>,
) -> Result<Json<RepoOut>, ApiError> {
    let mut tx = OutboxTx::begin(&app.pool).await?;
    locked(&mut tx, &slug).await?;
    let repo = sqlx::query_as!(
        RepoOut,
        "update repos set archived_at = now(), updated_at = now()
         where slug = $1 and archived_at is null
         returning slug, name, domain, remote_url, git_fingerprint, description, archived_at, created_at, updated_at",
        &slug,
    )
    .fetch_one(&mut *tx)
    .await?;
    changed(&mut tx, &repo, "archived", &caller).await?;
    tx.commit(&app.doorbell).await?;
    Ok(Json(repo))
}

/// The repo, locked for a change: 404 if unknown, 409 if archived.
async fn locked(tx: &mut PgConnection, slug: &str) -> Result<RepoOut, ApiError> {
    let repo = sqlx::query_as!(
        RepoOut,
        "select slug, name, domain, remote_url, git_fingerprint, description, archived_at, created_at, updated_at from repos where slug = $1 for update",
        slug,
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| not_found(slug))?;
    if let Some(at) = repo.archived_at {
        return Err(ApiError::Conflict(format!(
            "repo {slug:?} was archived at {at}; archived repos are read-only"
        )));
    }
    Ok(repo)
}

/// The repo, locked against changes (archiving) until the transaction ends; 404 if unknown.
pub async fn find_for_share(tx: &mut PgConnection, slug: &str) -> Result<RepoOut, ApiError> {
    sqlx::query_as!(
        RepoOut,
        "select slug, name, domain, remote_url, git_fingerprint, description, archived_at, created_at, updated_at from repos where slug = $1 for share",
        slug,
    )
    .fetch_optional(tx)
    .await?
    .ok_or_else(|| not_found(slug))
}

/// The repo, or 404 naming the slug.
pub async fn find(db: impl PgExecutor<'_>, slug: &str) -> Result<RepoOut, ApiError> {
    sqlx::query_as!(
        RepoOut,
        "select slug, name, domain, remote_url, git_fingerprint, description, archived_at, created_at, updated_at from repos where slug = $1",
        slug,
    )
    .fetch_optional(db)
    .await?
    .ok_or_else(|| not_found(slug))
}

/// The 404 for an unknown repo slug.
pub fn not_found(slug: &str) -> ApiError {
    ApiError::NotFound(format!("repo {slug:?} does not exist"))
}
