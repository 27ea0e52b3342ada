//! The lifecycle steps: publish (draft → published) and resolve (published →
//! resolved). Each is a conditional update under the row lock, committed with its
//! `audit_log` row and its `interface.{id}.…` event; a change in any other status
//! is refused with 409 naming that status.

use axum::extract::State;
use axum::{Extension, Json};
use serde_json::json;
use sqlx::PgConnection;
use switchyard_bus::payloads::InterfaceChanged;
use switchyard_domain::metrics::{Outcome, Resource};
use switchyard_domain::status::AuditEntity;
use uuid::Uuid;

use super::{ChangeStatus, ChangeType, InterfaceChangeOut, InterfaceType, SOURCE, not_found};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Path;
use crate::openapi::{ErrorBody, Refusals};
use crate::{AppState, audit};
use switchyard_bus::OutboxTx;
use switchyard_bus::Payload;

/// Writes the audit row and stages the change's event for its new state.
pub(super) async fn transition(
    tx: &mut OutboxTx<'_>,
    change: &InterfaceChangeOut,
    action: &str,
    caller: &Caller,
) -> Result<(), ApiError> {
    let key = change.id.to_string();
    audit::record(
        tx,
        AuditEntity::InterfaceChange,
        &key,
        action,
        &caller.subject,
        json!(change),
    )
    .await?;
    let event = InterfaceChanged {
        interface_change_id: change.id,
        repo_slug: change.repo_slug.clone(),
        title: change.title.clone(),
        interface_type: change.interface_type,
        change_type: change.change_type,
        status: change.status,
        affected_repo_slugs: change.affected_repo_slugs.clone(),
    }
    .event(SOURCE);
    tx.stage(std::slice::from_ref(&event));
    Ok(())
}

/// Publish a draft: the affected repos are notified by the notifier.
#[utoipa::path(
    post,
    path = "/interface-changes/{id}/publish",
    tag = "interface changes",
    params(("id" = Uuid, Path, description = "Interface change id")),
    responses(
        (status = 200, description = "The published change", body = InterfaceChangeOut),
        (status = 409, description = "Not a draft; the message names its status", body = ErrorBody),
        Refusals
    ),
    security(("bearer" = ["operator"]))
)]
pub(super) async fn publish(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> Result<Json<InterfaceChangeOut>, ApiError> {
    advance(&app, &caller, id, Step::Publish).await.map(Json)
}

/// Resolve a published change: every affected repo has adapted.
#[utoipa::path(
    post,
    path = "/interface-changes/{id}/resolve",
    tag = "interface changes",
    params(("id" = Uuid, Path, description = "Interface change id")),
    responses(
        (status = 200, description = "The resolved change", body = InterfaceChangeOut),
        (status = 409, description = "Not published; the message names its status", body = ErrorBody),
        Refusals
    ),
    security(("bearer" = ["operator"]))
)]
pub(super) async fn resolve(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> Result<Json<InterfaceChangeOut>, ApiError> {
    advance(&app, &caller, id, Step::Resolve).await.map(Json)
}

/// A lifecycle step: its verb, where it starts and where it ends.
#[derive(Clone, Copy)]
enum Step {
    Publish,
    Resolve,
}

impl Step {
    fn edges(self) -> (&'static str, ChangeStatus, ChangeStatus) {
        match self {
            Self::Publish => ("publish", ChangeStatus::Draft, ChangeStatus::Published),
            Self::Resolve => ("resolve", ChangeStatus::Published, ChangeStatus::Resolved),
        }
    }
}

async fn advance(
    app: &AppState,
    caller: &Caller,
    id: Uuid,
    step: Step,
) -> Result<InterfaceChangeOut, ApiError> {
    let (verb, from, to) = step.edges();
    let mut tx = OutboxTx::begin(&app.pool).await?;
    let current = locked(&mut tx, id).await?;
    let advanced = sqlx::query_as!(
        InterfaceChangeOut,
        r#"update interface_changes set status = $2, updated_at = now(),
           published_at = case when $2 = 'published' then now() else published_at end,
           announced_at = case when $2 = 'published' then now() else announced_at end,
           resolved_at = case when $2 = 'resolved' then now() else resolved_at end
         where id = $1 and status = $3
         returning id, repo_slug, interface_type as "interface_type: InterfaceType", change_type as "change_type: ChangeType", title, description, affected_paths, affected_repo_slugs, planned_for, author, status as "status: ChangeStatus", created_at, updated_at, published_at, resolved_at"#,
        id,
        to as ChangeStatus,
        from as ChangeStatus,
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| {
        ApiError::Conflict(format!(
            "Cannot {verb} a change with status '{}'. Only {from} changes can be {to}.",
            current.status
        ))
    })?;
    transition(&mut tx, &advanced, to.as_str(), caller).await?;
    tx.commit(&app.doorbell).await?;
    if to == ChangeStatus::Published {
        crate::metrics::work(Resource::InterfaceChange, Outcome::Published, 1);
    }
    Ok(advanced)
}

/// The change, locked for a transition; 404 if unknown.
pub(super) async fn locked(
    tx: &mut PgConnection,
    id: Uuid,
) -> Result<InterfaceChangeOut, ApiError> {
    sqlx::query_as!(
        InterfaceChangeOut,
        r#"select id, repo_slug, interface_type as "interface_type: InterfaceType", change_type as "change_type: ChangeType", title, description, affected_paths, affected_repo_slugs, planned_for, author, status as "status: ChangeStatus", created_at, updated_at, published_at, resolved_at from interface_changes where id = $1 for update"#,
        id,
    )
    .fetch_optional(tx)
    .await?
    .ok_or_else(|| not_found(id))
}
