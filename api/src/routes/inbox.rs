//! A repo's inbox: the messages the notifier wrote for it, one per interface change
//! that affects it. `GET /repos/{slug}/inbox?unread=true` lists them newest first;
//! `POST /repos/{slug}/inbox/{message_id}/read` marks one read, with its audit row and
//! a `repo.{slug}.inbox.read` event.

use axum::extract::State;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use switchyard_bus::payloads::InboxMessageRead;
use switchyard_domain::status::AuditEntity;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{Page, PageParams, repos};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{Path, Query};
use crate::openapi::Refusals;
use crate::{AppState, audit};
use switchyard_bus::OutboxTx;
use switchyard_bus::{Payload, Source};

const SOURCE: Source = Source::Api;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(mark_read))
}

/// An inbox message as the API returns it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct InboxMessageOut {
    pub id: Uuid,
    /// The recipient.
    pub repo_slug: String,
    /// The repo that announced the change.
    pub from_repo_slug: String,
    pub interface_change_id: Uuid,
    /// `[BREAKING] <title>`, with the change type in upper case.
    pub subject: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    /// When it was first marked read; null while unread.
    pub read_at: Option<DateTime<Utc>>,
}

/// `?unread=` plus paging.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InboxParams {
    /// Only unread messages (default false: all).
    pub unread: Option<bool>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(format = Uuid)]
    pub cursor: Option<String>,
}

/// A repo's inbox, newest first.
#[utoipa::path(
    get,
    path = "/repos/{slug}/inbox",
    tag = "repos",
    params(("slug" = String, Path, description = "Repo slug"), InboxParams),
    responses((status = 200, description = "A page of messages", body = Page<InboxMessageOut>), Refusals),
    security(("bearer" = ["viewer"]))
)]
async fn list(
    State(app): State<AppState>,
    Path(slug): Path<String>,
    Query(params): Query<InboxParams>,
) -> Result<Json<Page<InboxMessageOut>>, ApiError> {
    let page = PageParams {
        limit: params.limit,
        cursor: params.cursor,
    };
    let limit = page.limit()?;
    let before: Option<Uuid> = page.cursor()?;
    repos::find(&app.pool, &slug).await?;
    // Ids are UUIDv7: id order is arrival order.
    let rows = sqlx::query_as!(
        InboxMessageOut,
        "select id, repo_slug, from_repo_slug, interface_change_id, subject, body, created_at, read_at from inbox_messages
         where repo_slug = $1 and (not $2 or read_at is null)
           and ($3::uuid is null or id < $3)
         order by id desc
         limit $4",
        &slug,
        params.unread.unwrap_or(false),
        before,
        limit + 1,
    )
    .fetch_all(&app.pool)
    .await?;
    Ok(Json(Page::from_rows(rows, limit, |m| m.id.to_string())))
}

/// Mark a message read. Marking it again changes nothing and answers the same.
#[utoipa::path(
    post,
    path = "/repos/{slug}/inbox/{message_id}/read",
    tag = "repos",
    params(
        ("slug" = String, Path, description = "Repo slug"),
        ("message_id" = Uuid, Path, description = "Inbox message id")
    ),
    responses((status = 200, description = "The message, read", body = InboxMessageOut), Refusals),
    security(("bearer" = ["operator"]))
)]
async fn mark_read(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((slug, message_id)): Path<(String, Uuid)>,
) -> Result<Json<InboxMessageOut>, ApiError> {
    let mut tx = OutboxTx::begin(&app.pool).await?;
    let marked = sqlx::query_as!(
        InboxMessageOut,
        "update inbox_messages set read_at = now()
         where id = $1 and repo_slug = $2 and read_at is null
         returning id, repo_slug, from_repo_slug, interface_change_id, subject, body, created_at, read_at",
        message_id,
        &slug,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(message) = marked else {
        // Already read (answer as is), or not this repo's message (404).
        tx.rollback().await?;
        return find(&app.pool, &slug, message_id).await.map(Json);
    };
    audit::record(
        &mut tx,
        AuditEntity::InboxMessage,
        &message_id.to_string(),
        "read",
        &caller.subject,
        json!({ "repo_slug": slug }),
    )
    .await?;
    let event = InboxMessageRead {
        message_id,
        repo_slug: slug,
    }
    .event(SOURCE);
    tx.stage(std::slice::from_ref(&event));
    tx.commit(&app.doorbell).await?;
    Ok(Json(message))
}

async fn find(pool: &sqlx::PgPool, slug: &str, id: Uuid) -> Result<InboxMessageOut, ApiError> {
    repos::find(pool, slug).await?;
    sqlx::query_as!(
        InboxMessageOut,
        "select id, repo_slug, from_repo_slug, interface_change_id, subject, body, created_at, read_at from inbox_messages where id = $1 and repo_slug = $2",
        id,
        slug,
    )
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("repo {slug:?} has no inbox message {id}")))
}
