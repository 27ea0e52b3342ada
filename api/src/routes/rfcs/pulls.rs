//! The cached pull requests about RFCs, by repo and number: one RFC's (`GET
//! /rfcs/{slug}/pulls?state=&kind=`), and every RFC's (`GET /forge/pulls?kind=&state=`;
//! `?kind=idea&state=open` is the pending ideas).

use std::str::FromStr;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgExecutor;
use switchyard_domain::status::{OpenedBySource, PullKind, PullState};
use utoipa::{IntoParams, ToSchema};

use super::ensure_cached;
use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Path, Query};
use crate::openapi::Refusals;
use crate::routes::{Page, PageParams};

/// A cached pull request.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PullOut {
    /// `owner/name`, lower case: the meta repo, or the RFC's own repo.
    pub repo: String,
    pub number: i64,
    /// The RFC it is about.
    pub rfc_slug: String,
    pub kind: PullKind,
    pub state: PullState,
    pub title: String,
    pub head_branch: String,
    pub head_sha: Option<String>,
    /// The Gitea account that opened it.
    pub opener: String,
    /// The person behind it: the opener, unless that is the bot account.
    pub opened_by: String,
    /// How `opened_by` was decided.
    pub opened_by_source: OpenedBySource,
    pub created_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub merged_at: Option<DateTime<Utc>>,
}

/// `?state=&kind=` plus paging.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PullListParams {
    /// Only pull requests in this state.
    #[param(inline)]
    pub state: Option<PullState>,
    /// Only pull requests of this kind.
    #[param(inline)]
    pub kind: Option<PullKind>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[^#]+#[0-9]{1,18}$")]
    pub cursor: Option<String>,
}

/// Where a page of pull requests continues: after `owner/name#number`.
struct After {
    repo: String,
    number: i64,
}

impl FromStr for After {
    type Err = ();

    fn from_str(raw: &str) -> Result<Self, ()> {
        let (repo, number) = raw.rsplit_once('#').ok_or(())?;
        let number = number.parse().map_err(|_| ())?;
        if repo.is_empty() {
            return Err(());
        }
        Ok(Self {
            repo: repo.to_owned(),
            number,
        })
    }
}

/// An RFC's pull requests, in the meta repo and in its own repo, by repo and number,
/// a page at a time.
#[utoipa::path(
    get,
    path = "/rfcs/{slug}/pulls",
    tag = "rfcs",
    params(("slug" = String, Path, description = "RFC slug", pattern = "^[a-z0-9][a-z0-9-]{0,62}$"), PullListParams),
    responses((status = 200, description = "A page of pull requests", body = Page<PullOut>), Refusals),
    security(("bearer" = ["viewer"]))
)]
pub(super) async fn list(
    State(app): State<AppState>,
    Path(slug): Path<String>,
    Query(params): Query<PullListParams>,
) -> Result<Json<Page<PullOut>>, ApiError> {
    ensure_cached(&app.pool, &slug).await?;
    answer(&app.pool, Some(&slug), params).await
}

/// Every RFC's pull requests by repo and number, a page at a time;
/// `?kind=idea&state=open` is the pending ideas.
#[utoipa::path(
    get,
    path = "/forge/pulls",
    tag = "rfcs",
    params(PullListParams),
    responses((status = 200, description = "A page of pull requests", body = Page<PullOut>), Refusals),
    security(("bearer" = ["viewer"]))
)]
pub(super) async fn list_all(
    State(app): State<AppState>,
    Query(params): Query<PullListParams>,
) -> Result<Json<Page<PullOut>>, ApiError> {
    answer(&app.pool, None, params).await
}

async fn answer(
    db: impl PgExecutor<'_>,
    slug: Option<&str>,
    params: PullListParams,
) -> Result<Json<Page<PullOut>>, ApiError> {
    let page = PageParams {
        limit: params.limit,
        cursor: params.cursor,
    };
    let limit = page.limit()?;
    let after: Option<After> = page.cursor()?;
    let rows = page_of(db, slug, params.state, params.kind, after, limit + 1).await?;
    Ok(Json(Page::from_rows(rows, limit, |p| {
        format!("{}#{}", p.repo, p.number)
    })))
}

/// Up to `limit` pull requests after `after` by (repo, number), of RFC `slug` when
/// given, in `state` and of `kind` when given.
async fn page_of(
    db: impl PgExecutor<'_>,
    slug: Option<&str>,
    state: Option<PullState>,
    kind: Option<PullKind>,
    after: Option<After>,
    limit: i64,
) -> Result<Vec<PullOut>, sqlx::Error> {
    let (after_repo, after_number) = after.map(|a| (a.repo, a.number)).unzip();
    sqlx::query_as!(
        PullOut,
        r#"select repo, number, rfc_slug, kind as "kind: PullKind", state as "state: PullState",
                title, head_branch, head_sha, opener, opened_by,
                opened_by_source as "opened_by_source: OpenedBySource",
                created_at, closed_at, merged_at
         from rfc_pulls
         where ($1::text is null or rfc_slug = $1)
           and ($2::text is null or state = $2)
           and ($3::text is null or kind = $3)
           and ($4::text is null or (repo, number) > ($4, $5::bigint))
         order by repo, number
         limit $6"#,
        slug,
        state.map(PullState::as_str),
        kind.map(PullKind::as_str),
        after_repo,
        after_number,
        limit,
    )
    .fetch_all(db)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_repo_hash_number() {
        let after: After = "acme/meta#12".parse().unwrap();
        assert_eq!((after.repo.as_str(), after.number), ("acme/meta", 12));
        for bad in ["acme/meta", "#12", "acme/meta#", "acme/meta#x", ""] {
            assert!(bad.parse::<After>().is_err(), "{bad}");
        }
    }
}
