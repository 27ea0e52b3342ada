//! Dispatch: what an agent starting work on a repo must know first. `GET
//! /repos/{slug}/dispatch` gathers the published, unresolved interface changes that
//! affect the repo (newest published first), its unread inbox, and the latest
//! progress events recorded on it. The repo's event stream opens with the same.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::inbox::InboxMessageOut;
use super::interface_changes::{ChangeType, InterfaceType};
use super::repos::{self, RepoOut};
use crate::AppState;
use crate::error::ApiError;
use crate::extract::Path;
use crate::openapi::Refusals;

/// Unread messages included in full; the count covers them all.
const UNREAD_SHOWN: i64 = 20;
/// Progress events included.
const PROGRESS_SHOWN: i64 = 10;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(dispatch))
}

/// A change the repo must adapt to.
#[derive(Debug, Serialize, ToSchema)]
pub struct PendingInterfaceChange {
    pub id: Uuid,
    pub title: String,
    #[schema(value_type = ChangeType)]
    pub change_type: ChangeType,
    #[schema(value_type = InterfaceType)]
    pub interface_type: InterfaceType,
    pub origin_repo_slug: String,
    pub affected_paths: Vec<String>,
    pub planned_for: Option<NaiveDate>,
    pub published_at: DateTime<Utc>,
}

/// A progress event recorded on the repo.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProgressEventOut {
    pub id: Uuid,
    /// `milestone`.
    pub kind: String,
    pub summary: String,
    #[schema(value_type = Object)]
    pub detail: Value,
    pub created_at: DateTime<Utc>,
}

/// Everything an agent starting work on the repo must know.
#[derive(Debug, Serialize, ToSchema)]
pub struct DispatchOut {
    pub repo_slug: String,
    pub repo: RepoOut,
    /// Published, unresolved changes affecting this repo, newest published first.
    pub pending_interface_changes: Vec<PendingInterfaceChange>,
    pub unread_inbox_count: i64,
    /// The newest unread messages (at most 20).
    pub unread_inbox: Vec<InboxMessageOut>,
    /// The newest progress events recorded on this repo (at most 10).
    pub recent_progress: Vec<ProgressEventOut>,
    pub generated_at: DateTime<Utc>,
}

/// What an agent starting work on this repo must know.
#[utoipa::path(
    get,
    path = "/repos/{slug}/dispatch",
    tag = "repos",
    params(("slug" = String, Path, description = "Repo slug")),
    responses((status = 200, description = "The repo's dispatch", body = DispatchOut), Refusals),
    security(("bearer" = ["viewer"]))
)]
async fn dispatch(
    State(app): State<AppState>,
    Path(slug): Path<String>,
) -> Result<Json<DispatchOut>, ApiError> {
    dispatch_of(&app.pool, &slug).await.map(Json)
}

/// The dispatch of `slug`, read in one snapshot (404 for an unknown repo).
pub async fn dispatch_of(pool: &PgPool, slug: &str) -> Result<DispatchOut, ApiError> {
    let mut tx = pool.begin().await?;
    // One consistent view: the count and the lists agree.
    sqlx::query!("set transaction isolation level repeatable read, read only")
        .execute(&mut *tx)
        .await?;
    let repo = repos::find(&mut *tx, slug).await?;
    let pending_interface_changes = sqlx::query_as!(
        PendingInterfaceChange,
        r#"select id, title, change_type as "change_type: ChangeType",
                interface_type as "interface_type: InterfaceType",
                repo_slug as origin_repo_slug, affected_paths, planned_for,
                published_at as "published_at!"
         from interface_changes
         where status = 'published' and affected_repo_slugs @> array[$1]
         order by published_at desc, id desc"#,
        slug,
    )
    .fetch_all(&mut *tx)
    .await?;
    let unread_inbox_count: i64 = sqlx::query_scalar!(
        r#"select count(*) as "count!" from inbox_messages where repo_slug = $1 and read_at is null"#,
        slug,
    )
    .fetch_one(&mut *tx)
    .await?;
    let unread_inbox = sqlx::query_as!(
        InboxMessageOut,
        "select id, repo_slug, from_repo_slug, interface_change_id, subject, body, created_at, read_at from inbox_messages where repo_slug = $1 and read_at is null
         order by id desc limit $2",
        slug,
        UNREAD_SHOWN,
    )
    .fetch_all(&mut *tx)
    .await?;
    let recent_progress = sqlx::query_as!(
        ProgressEventOut,
        "select id, kind, summary, detail, created_at from progress_events
         where repo_slug = $1 order by id desc limit $2",
        slug,
        PROGRESS_SHOWN,
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(DispatchOut {
        repo_slug: repo.slug.clone(),
        repo,
        pending_interface_changes,
        unread_inbox_count,
        unread_inbox,
        recent_progress,
        generated_at: Utc::now(),
    })
}
