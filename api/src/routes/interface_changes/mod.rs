//! Interface changes: a repo announces a change to one of its interfaces to the
//! repos it affects.
//!
//! ## Lifecycle
//! `draft` → `published` → `resolved`, each step a conditional update under the row
//! lock, committed with its `audit_log` row and its event
//! (`interface.{id}.draft|published|resolved`). Only drafts are edited. Publishing
//! returns at once: the notifier, consuming `interface.{id}.published`, fills the
//! affected repos' inboxes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{Page, PageParams, repos};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{Body, Path, Query};
use crate::openapi::{ErrorBody, Refusals};
use crate::validate::{AffectedPath, AffectedSlugs};
use crate::{AppState, validate};
use switchyard_bus::OutboxTx;
use switchyard_bus::Source;

const SOURCE: Source = Source::Api;
mod lifecycle;

use lifecycle::{locked, transition};

const MAX_PATHS: usize = 1000;
const MAX_AFFECTED: usize = 500;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, edit))
        .routes(routes!(lifecycle::publish))
        .routes(routes!(lifecycle::resolve))
}

pub use switchyard_domain::status::{ChangeStatus, ChangeType, InterfaceType};

/// Body of `POST /interface-changes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InterfaceChangeIn {
    /// The repo whose interface changes.
    pub repo_slug: String,
    pub interface_type: InterfaceType,
    pub change_type: ChangeType,
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub title: String,
    #[schema(min_length = 1, max_length = 20000, pattern = "\\S")]
    pub description: String,
    /// Endpoints, tools, commands or fields that change, for example `GET /v1/users`.
    #[schema(value_type = Vec<AffectedPath>, max_items = 1000)]
    pub affected_paths: Vec<String>,
    /// Slugs of the repos that must adapt, each once; each gets an inbox message on
    /// publish.
    #[schema(value_type = AffectedSlugs)]
    pub affected_repo_slugs: Vec<String>,
    /// When the change is planned to ship (`YYYY-MM-DD`).
    pub planned_for: Option<NaiveDate>,
    /// Who wrote it; the caller's token subject when left out (`null` is a 422).
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = String, min_length = 1, max_length = 200, pattern = "\\S")]
    pub author: Option<String>,
}

/// Body of `PATCH /interface-changes/{id}` (drafts only): the fields to change;
/// `planned_for: null` clears the date. No other field can be cleared: `null` on
/// one is a 422 naming it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InterfaceChangePatch {
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = InterfaceType)]
    pub interface_type: Option<InterfaceType>,
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = ChangeType)]
    pub change_type: Option<ChangeType>,
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = String, min_length = 1, max_length = 200, pattern = "\\S")]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = String, min_length = 1, max_length = 20000, pattern = "\\S")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = Vec<AffectedPath>, max_items = 1000)]
    pub affected_paths: Option<Vec<String>>,
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = AffectedSlugs)]
    pub affected_repo_slugs: Option<Vec<String>>,
    #[serde(default, with = "serde_with::rust::double_option")]
    #[schema(value_type = Option<NaiveDate>)]
    pub planned_for: Option<Option<NaiveDate>>,
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = String, min_length = 1, max_length = 200, pattern = "\\S")]
    pub author: Option<String>,
}

/// An interface change as the API returns it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct InterfaceChangeOut {
    pub id: Uuid,
    pub repo_slug: String,
    #[schema(value_type = InterfaceType)]
    pub interface_type: InterfaceType,
    #[schema(value_type = ChangeType)]
    pub change_type: ChangeType,
    pub title: String,
    pub description: String,
    pub affected_paths: Vec<String>,
    pub affected_repo_slugs: Vec<String>,
    pub planned_for: Option<NaiveDate>,
    pub author: String,
    #[schema(value_type = ChangeStatus)]
    pub status: ChangeStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// A change's content after validation, ready to store.
struct Content {
    interface_type: InterfaceType,
    change_type: ChangeType,
    title: String,
    description: String,
    affected_paths: Vec<String>,
    affected_repo_slugs: Vec<String>,
    planned_for: Option<NaiveDate>,
    author: String,
}

impl Content {
    fn check(self) -> Result<Self, ApiError> {
        if self.affected_paths.len() > MAX_PATHS {
            return Err(ApiError::Unprocessable(format!(
                "affected_paths has {} entries; at most {MAX_PATHS} are accepted",
                self.affected_paths.len()
            )));
        }
        let affected_paths = self
            .affected_paths
            .iter()
            .map(|path| validate::text("each affected path", path, 500))
            .collect::<Result<_, _>>()?;
        if self.affected_repo_slugs.len() > MAX_AFFECTED {
            return Err(ApiError::Unprocessable(format!(
                "affected_repo_slugs has {} entries; at most {MAX_AFFECTED} are accepted",
                self.affected_repo_slugs.len()
            )));
        }
        for (i, slug) in self.affected_repo_slugs.iter().enumerate() {
            validate::slug("affected repo slug", slug)?;
            if self.affected_repo_slugs[..i].contains(slug) {
                return Err(ApiError::Unprocessable(format!(
                    "affected_repo_slugs lists {slug:?} twice"
                )));
            }
        }
        Ok(Self {
            title: validate::text("title", &self.title, 200)?,
            description: validate::text("description", &self.description, 20_000)?,
            author: validate::text("author", &self.author, 200)?,
            affected_paths,
            ..self
        })
    }
}

/// Draft an interface change.
#[utoipa::path(
    post,
    path = "/interface-changes",
    tag = "interface changes",
    request_body = InterfaceChangeIn,
    responses(
        (status = 201, description = "Drafted", body = InterfaceChangeOut),
        (status = 409, description = "The repo is archived", body = ErrorBody),
        Refusals
    ),
    security(("bearer" = ["operator"]))
)]
async fn create(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Body(input): Body<InterfaceChangeIn>,
) -> Result<(StatusCode, Json<InterfaceChangeOut>), ApiError> {
    let content = Content {
        interface_type: input.interface_type,
        change_type: input.change_type,
        title: input.title,
        description: input.description,
        affected_paths: input.affected_paths,
        affected_repo_slugs: input.affected_repo_slugs,
        planned_for: input.planned_for,
        author: input.author.unwrap_or_else(|| caller.subject.clone()),
    }
    .check()?;
    let mut tx = OutboxTx::begin(&app.pool).await?;
    // Shared lock: an archive cannot commit between this check and the insert.
    let origin = repos::find_for_share(&mut tx, &input.repo_slug).await?;
    if origin.archived_at.is_some() {
        return Err(ApiError::Conflict(format!(
            "repo {:?} is archived; archived repos announce no changes",
            origin.slug
        )));
    }
    let change = store(&mut tx, Uuid::now_v7(), &origin.slug, &content).await?;
    transition(&mut tx, &change, "drafted", &caller).await?;
    tx.commit(&app.doorbell).await?;
    Ok((StatusCode::CREATED, Json(change)))
}

/// Inserts a new draft, or rewrites the content of an existing one.
async fn store(
    tx: &mut PgConnection,
    id: Uuid,
    repo_slug: &str,
    content: &Content,
) -> Result<InterfaceChangeOut, ApiError> {
    let change = sqlx::query_as!(
        InterfaceChangeOut,
        r#"insert into interface_changes
           (id, repo_slug, interface_type, change_type, title, description,
            affected_paths, affected_repo_slugs, planned_for, author)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         on conflict (id) do update set
           interface_type = excluded.interface_type, change_type = excluded.change_type,
           title = excluded.title, description = excluded.description,
           affected_paths = excluded.affected_paths,
           affected_repo_slugs = excluded.affected_repo_slugs,
           planned_for = excluded.planned_for, author = excluded.author, updated_at = now()
         where interface_changes.status = 'draft'
         returning id, repo_slug, interface_type as "interface_type: InterfaceType", change_type as "change_type: ChangeType", title, description, affected_paths, affected_repo_slugs, planned_for, author, status as "status: ChangeStatus", created_at, updated_at, published_at, resolved_at"#,
        id,
        repo_slug,
        content.interface_type as InterfaceType,
        content.change_type as ChangeType,
        &content.title,
        &content.description,
        &content.affected_paths,
        &content.affected_repo_slugs,
        content.planned_for,
        &content.author,
    )
    .fetch_one(tx)
    .await?;
    Ok(change)
}

/// Filters of the list, plus paging.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Changes announced by this repo.
    pub repo_slug: Option<String>,
    pub status: Option<ChangeStatus>,
    pub change_type: Option<ChangeType>,
    /// Changes that list this repo among the affected.
    pub affected_repo: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(format = Uuid)]
    pub cursor: Option<String>,
}

/// List interface changes, newest first.
#[utoipa::path(
    get,
    path = "/interface-changes",
    tag = "interface changes",
    params(ListParams),
    responses((status = 200, description = "A page of changes", body = Page<InterfaceChangeOut>), Refusals),
    security(("bearer" = ["viewer"]))
)]
async fn list(
    State(app): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Json<Page<InterfaceChangeOut>>, ApiError> {
    let page = PageParams {
        limit: params.limit,
        cursor: params.cursor,
    };
    let limit = page.limit()?;
    let before: Option<Uuid> = page.cursor()?;
    // Ids are UUIDv7: id order is creation order, and a stable keyset cursor.
    let rows = sqlx::query_as!(
        InterfaceChangeOut,
        r#"select id, repo_slug, interface_type as "interface_type: InterfaceType", change_type as "change_type: ChangeType", title, description, affected_paths, affected_repo_slugs, planned_for, author, status as "status: ChangeStatus", created_at, updated_at, published_at, resolved_at from interface_changes
         where ($1::text is null or repo_slug = $1)
           and ($2::text is null or status = $2)
           and ($3::text is null or change_type = $3)
           and ($4::text is null or affected_repo_slugs @> array[$4])
           and ($5::uuid is null or id < $5)
         order by id desc
         limit $6"#,
        params.repo_slug,
        params.status as Option<ChangeStatus>,
        params.change_type as Option<ChangeType>,
        params.affected_repo,
        before,
        limit + 1,
    )
    .fetch_all(&app.pool)
    .await?;
    Ok(Json(Page::from_rows(rows, limit, |c| c.id.to_string())))
}

/// One interface change.
#[utoipa::path(
    get,
    path = "/interface-changes/{id}",
    tag = "interface changes",
    params(("id" = Uuid, Path, description = "Interface change id")),
    responses((status = 200, description = "The change", body = InterfaceChangeOut), Refusals),
    security(("bearer" = ["viewer"]))
)]
async fn show(
    State(app): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<InterfaceChangeOut>, ApiError> {
    find(&app.pool, id).await.map(Json)
}

/// Edit a draft.
#[utoipa::path(
    patch,
    path = "/interface-changes/{id}",
    tag = "interface changes",
    params(("id" = Uuid, Path, description = "Interface change id")),
    request_body = InterfaceChangePatch,
    responses(
        (status = 200, description = "The edited draft", body = InterfaceChangeOut),
        (status = 409, description = "Not a draft: only drafts are edited", body = ErrorBody),
        Refusals
    ),
    security(("bearer" = ["operator"]))
)]
async fn edit(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Body(patch): Body<InterfaceChangePatch>,
) -> Result<Json<InterfaceChangeOut>, ApiError> {
    let mut tx = OutboxTx::begin(&app.pool).await?;
    let current = locked(&mut tx, id).await?;
    if current.status != ChangeStatus::Draft {
        return Err(ApiError::Conflict(format!(
            "Cannot edit a change with status '{}'. Only draft records are mutable.",
            current.status
        )));
    }
    let content = Content {
        interface_type: patch.interface_type.unwrap_or(current.interface_type),
        change_type: patch.change_type.unwrap_or(current.change_type),
        title: patch.title.unwrap_or(current.title),
        description: patch.description.unwrap_or(current.description),
        affected_paths: patch.affected_paths.unwrap_or(current.affected_paths),
        affected_repo_slugs: patch
            .affected_repo_slugs
            .unwrap_or(current.affected_repo_slugs),
        planned_for: patch.planned_for.unwrap_or(current.planned_for),
        author: patch.author.unwrap_or(current.author),
    }
    .check()?;
    let change = store(&mut tx, id, &current.repo_slug, &content).await?;
    transition(&mut tx, &change, "edited", &caller).await?;
    tx.commit(&app.doorbell).await?;
    Ok(Json(change))
}

/// The change, or 404 naming the id.
pub async fn find(pool: &PgPool, id: Uuid) -> Result<InterfaceChangeOut, ApiError> {
    sqlx::query_as!(
        InterfaceChangeOut,
        r#"select id, repo_slug, interface_type as "interface_type: InterfaceType", change_type as "change_type: ChangeType", title, description, affected_paths, affected_repo_slugs, planned_for, author, status as "status: ChangeStatus", created_at, updated_at, published_at, resolved_at from interface_changes where id = $1"#,
        id,
    )
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| not_found(id))
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("interface change {id} does not exist"))
}
