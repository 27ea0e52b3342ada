//! The cached RFCs, for readers: `GET /rfcs?state=&tag=&missing=` (by slug, paged),
//! `GET /rfcs/{slug}` (with its body, its `RFC.md` and counts), its branches
//! ([`branches`]) and its pull requests ([`pulls`], which also lists every RFC's, as
//! `GET /forge/pulls?kind=idea&state=open`: the pending ideas). Their event stream is
//! `GET /rfcs/{slug}/events` ([`super::events`]).
//!
//! Gitea is the truth: the forge worker role keeps `rfcs`, `rfc_branches` and
//! `rfc_pulls` from it, and this module only reads them, never Gitea. A slug that is
//! not cached is a 404, whether or not Gitea has it.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgExecutor;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Page, PageParams};
use crate::error::ApiError;
use crate::extract::{Path, Query};
use crate::openapi::Refusals;
use crate::{AppState, validate};

pub mod branches;
pub mod pulls;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
        .routes(routes!(branches::list))
        .routes(routes!(pulls::list))
        .routes(routes!(pulls::list_all))
}

/// A cached RFC without its body, as lists return it: its meta-repo entry's front
/// matter and where the entry was read.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RfcSummary {
    pub slug: String,
    pub title: String,
    /// The front matter's `state`, as written (for example `idea`, `active`).
    pub state: String,
    /// The front matter's `id`, as written.
    pub rfc_id: Option<String>,
    /// The RFC's own repo, `owner/name`, lower case; null until it graduates.
    pub repo: Option<String>,
    pub proposed_by: Option<String>,
    pub proposed_at: Option<DateTime<Utc>>,
    pub graduated_at: Option<DateTime<Utc>>,
    pub graduated_by: Option<String>,
    pub owners: Vec<String>,
    pub arbiters: Vec<String>,
    pub tags: Vec<String>,
    /// The entry's path in the meta repo, `rfcs/<file>.md`.
    pub path: String,
    /// The entry's blob sha on the meta repo's main branch.
    pub blob_sha: String,
    /// The entry is gone from `rfcs/`; the RFC is kept, flagged.
    pub missing_upstream: bool,
    /// When the cached RFC last changed.
    pub updated_at: DateTime<Utc>,
}

/// `RFC.md` on the main branch of the RFC's own repo.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RfcDocument {
    /// Its blob sha.
    pub sha: String,
    pub body: String,
}

/// How much is going on in an RFC.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RfcCounts {
    /// Branches of its repo that Gitea still has.
    pub branches_active: i64,
    /// Its open pull requests, in the meta repo and in its own repo.
    pub pulls_open: i64,
}

/// A cached RFC, whole.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RfcOut {
    #[serde(flatten)]
    pub summary: RfcSummary,
    /// The entry's Markdown after the front matter.
    pub body: String,
    /// Its repo's `RFC.md`; null until read (or before it graduates).
    pub document: Option<RfcDocument>,
    pub counts: RfcCounts,
}

/// `?state=&tag=&missing=` plus paging.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RfcListParams {
    /// Only RFCs in this state, as their front matter writes it.
    pub state: Option<String>,
    /// Only RFCs with this tag.
    pub tag: Option<String>,
    /// Only RFCs gone from `rfcs/` (true) or still there (false).
    pub missing: Option<bool>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The cached RFCs by slug, a page at a time.
#[utoipa::path(
    get,
    path = "/rfcs",
    tag = "rfcs",
    params(RfcListParams),
    responses((status = 200, description = "A page of RFCs, without bodies", body = Page<RfcSummary>), Refusals),
    security(("bearer" = ["viewer"]))
)]
async fn list(
    State(app): State<AppState>,
    Query(params): Query<RfcListParams>,
) -> Result<Json<Page<RfcSummary>>, ApiError> {
    let page = PageParams {
        limit: params.limit,
        cursor: params.cursor,
    };
    let limit = page.limit()?;
    let after: Option<String> = page.cursor()?;
    let rows = sqlx::query_as!(
        RfcSummary,
        "select slug, title, state, rfc_id, repo, proposed_by, proposed_at, graduated_at, graduated_by,
                owners, arbiters, tags, path, blob_sha, missing_upstream, updated_at
         from rfcs
         where ($1::text is null or state = $1)
           and ($2::text is null or $2 = any(tags))
           and ($3::boolean is null or missing_upstream = $3)
           and ($4::text is null or slug > $4)
         order by slug
         limit $5",
        params.state.as_deref(),
        params.tag.as_deref(),
        params.missing,
        after,
        limit + 1,
    )
    .fetch_all(&app.pool)
    .await?;
    Ok(Json(Page::from_rows(rows, limit, |r| r.slug.clone())))
}

/// One cached RFC, with its body, its repo's `RFC.md` and counts.
#[utoipa::path(
    get,
    path = "/rfcs/{slug}",
    tag = "rfcs",
    params(("slug" = String, Path, description = "RFC slug", pattern = "^[a-z0-9][a-z0-9-]{0,62}$")),
    responses((status = 200, description = "The RFC", body = RfcOut), Refusals),
    security(("bearer" = ["viewer"]))
)]
async fn show(
    State(app): State<AppState>,
    Path(slug): Path<String>,
) -> Result<Json<RfcOut>, ApiError> {
    rfc_of(&app.pool, &slug).await.map(Json)
}

/// The cached RFC `slug`, whole: 422 for a string that is not a slug, 404 when it is
/// not cached.
pub async fn rfc_of(db: impl PgExecutor<'_>, slug: &str) -> Result<RfcOut, ApiError> {
    validate::slug("slug", slug)?;
    // One statement, so the counts are of the same moment as the RFC.
    let row = sqlx::query!(
        r#"select slug, title, state, rfc_id, repo, proposed_by, proposed_at, graduated_at, graduated_by,
                owners, arbiters, tags, path, blob_sha, missing_upstream, updated_at, body,
                document_sha, document_body,
                (select count(*) from rfc_branches b
                  where b.rfc_slug = r.slug and b.state = 'active') as "branches_active!",
                (select count(*) from rfc_pulls p
                  where p.rfc_slug = r.slug and p.state = 'open') as "pulls_open!"
         from rfcs r where slug = $1"#,
        slug,
    )
    .fetch_optional(db)
    .await?
    .ok_or_else(|| not_cached(slug))?;
    let document = match (row.document_sha, row.document_body) {
        (Some(sha), Some(body)) => Some(RfcDocument { sha, body }),
        _ => None,
    };
    Ok(RfcOut {
        summary: RfcSummary {
            slug: row.slug,
            title: row.title,
            state: row.state,
            rfc_id: row.rfc_id,
            repo: row.repo,
            proposed_by: row.proposed_by,
            proposed_at: row.proposed_at,
            graduated_at: row.graduated_at,
            graduated_by: row.graduated_by,
            owners: row.owners,
            arbiters: row.arbiters,
            tags: row.tags,
            path: row.path,
            blob_sha: row.blob_sha,
            missing_upstream: row.missing_upstream,
            updated_at: row.updated_at,
        },
        body: row.body,
        document,
        counts: RfcCounts {
            branches_active: row.branches_active,
            pulls_open: row.pulls_open,
        },
    })
}

/// 422 for a string that is not a slug, 404 when RFC `slug` is not cached.
pub async fn ensure_cached(db: impl PgExecutor<'_>, slug: &str) -> Result<(), ApiError> {
    validate::slug("slug", slug)?;
    let cached = sqlx::query_scalar!(
        r#"select exists (select from rfcs where slug = $1) as "cached!""#,
        slug
    )
    .fetch_one(db)
    .await?;
    if cached {
        Ok(())
    } else {
        Err(not_cached(slug))
    }
}

/// The 404 for an RFC the cache does not hold.
pub fn not_cached(slug: &str) -> ApiError {
    ApiError::NotFound(format!(
        "no RFC {slug:?} is cached: the meta repo's rfcs/ has no entry with this slug (or the forge has not read it yet)"
    ))
}
