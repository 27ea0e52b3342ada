//! `GET /rfcs/{slug}/branches?state=`: the cached branches of an RFC's own repo, by
//! repo and name. A branch Gitea no longer has stays listed as `deleted`.

use std::str::FromStr;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use switchyard_domain::status::BranchState;
use utoipa::{IntoParams, ToSchema};

use super::ensure_cached;
use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Path, Query};
use crate::openapi::Refusals;
use crate::routes::{Page, PageParams};

/// A cached branch.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BranchOut {
    /// The RFC's repo, `owner/name`, lower case.
    pub repo: String,
    pub name: String,
    /// Its head commit (the last one seen, once deleted).
    pub head_sha: String,
    /// When the head commit was made.
    pub committed_at: Option<DateTime<Utc>>,
    pub state: BranchState,
    pub updated_at: DateTime<Utc>,
}

/// `?state=` plus paging.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BranchListParams {
    /// Only branches in this state.
    #[param(inline)]
    pub state: Option<BranchState>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[^:]+:.+$")]
    pub cursor: Option<String>,
}

/// Where a page of branches continues: after `owner/name:branch`. Neither a repo nor
/// a Git branch name can hold `:`.
struct After {
    repo: String,
    name: String,
}

impl FromStr for After {
    type Err = ();

    fn from_str(raw: &str) -> Result<Self, ()> {
        match raw.split_once(':') {
            Some((repo, name)) if !repo.is_empty() && !name.is_empty() => Ok(Self {
                repo: repo.to_owned(),
                name: name.to_owned(),
            }),
            _ => Err(()),
        }
    }
}

/// An RFC's branches by repo and name, a page at a time.
#[utoipa::path(
    get,
    path = "/rfcs/{slug}/branches",
    tag = "rfcs",
    params(("slug" = String, Path, description = "RFC slug", pattern = "^[a-z0-9][a-z0-9-]{0,62}$"), BranchListParams),
    responses((status = 200, description = "A page of branches", body = Page<BranchOut>), Refusals),
    security(("bearer" = ["viewer"]))
)]
pub(super) async fn list(
    State(app): State<AppState>,
    Path(slug): Path<String>,
    Query(params): Query<BranchListParams>,
) -> Result<Json<Page<BranchOut>>, ApiError> {
    let page = PageParams {
        limit: params.limit,
        cursor: params.cursor,
    };
    let limit = page.limit()?;
    let after: Option<After> = page.cursor()?;
    ensure_cached(&app.pool, &slug).await?;
    let (after_repo, after_name) = after.map(|a| (a.repo, a.name)).unzip();
    let rows = sqlx::query_as!(
        BranchOut,
        r#"select repo, name, head_sha, committed_at, state as "state: BranchState", updated_at
         from rfc_branches
         where rfc_slug = $1
           and ($2::text is null or state = $2)
           and ($3::text is null or (repo, name) > ($3, $4::text))
         order by repo, name
         limit $5"#,
        &slug,
        params.state.map(BranchState::as_str),
        after_repo,
        after_name,
        limit + 1,
    )
    .fetch_all(&app.pool)
    .await?;
    Ok(Json(Page::from_rows(rows, limit, |b| {
        format!("{}:{}", b.repo, b.name)
    })))
}
