//! Sweeps of the forge cache: `GET /forge/sweeps` (newest first, with what each
//! found), and `POST /forge/reconcile` and `POST /forge/rebuild` (admin), which ask for
//! one now. The API only records the request (a `forge_sweeps` row, its audit row and a
//! `forge.sweep.requested` event, in one transaction) and answers 202; a forge process
//! takes it, runs it, and announces `forge.sweep.progress` after each repo and
//! `forge.sweep.finished` at the end. A rebuild empties the cache first.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use switchyard_bus::payloads::{ForgeSweep, SweepPhase};
use switchyard_bus::{OutboxTx, Payload, Source, subjects};
use switchyard_domain::status::{AuditEntity, SweepTrigger};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::super::{Page, PageParams};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Query;
use crate::openapi::Refusals;
use crate::{AppState, audit};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_sweeps))
        .routes(routes!(reconcile))
        .routes(routes!(rebuild))
}

/// A repo a sweep could not read, even after retries.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnreachableRepo {
    /// `owner/name`.
    pub repo: String,
    /// The last error.
    pub error: String,
}

/// One sweep (scheduled, requested, or a rebuild) and what it found.
#[derive(Debug, Serialize, ToSchema)]
pub struct SweepOut {
    pub id: Uuid,
    pub trigger: SweepTrigger,
    /// The token's subject that asked for it, or `switchyard/forge` (scheduled).
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    /// Null while it waits for a forge process.
    pub started_at: Option<DateTime<Utc>>,
    /// Null while it runs.
    pub finished_at: Option<DateTime<Utc>>,
    /// Repos it refreshed.
    pub repos: i32,
    /// Cache rows it changed.
    pub changes: i32,
    /// Requests it made to Gitea.
    pub gitea_calls: i32,
    /// The repos that stayed unreachable.
    #[schema(value_type = Vec<UnreachableRepo>)]
    pub unreachable: Value,
}

/// The reconciler's sweeps, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/forge/sweeps",
    tag = "forge",
    params(PageParams),
    responses((status = 200, description = "A page of sweeps, newest first", body = Page<SweepOut>), Refusals),
    security(("bearer" = ["viewer"]))
)]
async fn list_sweeps(
    State(app): State<AppState>,
    Query(params): Query<PageParams>,
) -> Result<Json<Page<SweepOut>>, ApiError> {
    let limit = params.limit()?;
    let before: Option<Uuid> = params.cursor()?;
    // Ids are UUIDv7: descending id order is newest first, and a stable keyset cursor.
    let rows = sqlx::query_as!(
        SweepOut,
        r#"select id, trigger as "trigger: SweepTrigger", requested_by, requested_at, started_at, finished_at, repos, changes, gitea_calls, unreachable
         from forge_sweeps
         where ($1::uuid is null or id < $1)
         order by id desc
         limit $2"#,
        before,
        limit + 1,
    )
    .fetch_all(&app.pool)
    .await?;
    Ok(Json(Page::from_rows(rows, limit, |s| s.id.to_string())))
}

/// `202` answer to a sweep request.
#[derive(Debug, Serialize, ToSchema)]
pub struct SweepRequested {
    pub sweep_id: Uuid,
    pub trigger: SweepTrigger,
    /// Where its progress is announced: `forge.sweep.progress`, then `.finished`.
    pub subject: String,
}

/// Ask for a sweep now: the meta repo, then every active RFC repo, read from Gitea.
#[utoipa::path(
    post,
    path = "/forge/reconcile",
    tag = "forge",
    responses((status = 202, description = "Requested; a forge process runs it", body = SweepRequested), Refusals),
    security(("bearer" = ["admin"]))
)]
async fn reconcile(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<impl IntoResponse, ApiError> {
    request(&app, &caller, SweepTrigger::Request).await
}

/// Empty the cache (RFCs, branches, pull requests, parse errors; not the actions log)
/// and rebuild it from Gitea.
#[utoipa::path(
    post,
    path = "/forge/rebuild",
    tag = "forge",
    responses((status = 202, description = "Requested; a forge process runs it", body = SweepRequested), Refusals),
    security(("bearer" = ["admin"]))
)]
async fn rebuild(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<impl IntoResponse, ApiError> {
    request(&app, &caller, SweepTrigger::Rebuild).await
}

/// Records a sweep request with its audit row and `forge.sweep.requested`.
async fn request(
    app: &AppState,
    caller: &Caller,
    trigger: SweepTrigger,
) -> Result<(StatusCode, Json<SweepRequested>), ApiError> {
    let id = Uuid::now_v7();
    let mut tx = OutboxTx::begin(&app.pool).await?;
    sqlx::query!(
        "insert into forge_sweeps (id, trigger, requested_by) values ($1, $2, $3)",
        id,
        trigger as _,
        caller.subject,
    )
    .execute(&mut *tx)
    .await?;
    let action = match trigger {
        SweepTrigger::Rebuild => "rebuild_requested",
        _ => "sweep_requested",
    };
    let detail = json!({ "sweep_id": id, "trigger": trigger });
    audit::record(
        &mut tx,
        AuditEntity::ForgeCache,
        &id.to_string(),
        action,
        &caller.subject,
        detail,
    )
    .await?;
    let requested = ForgeSweep {
        sweep_id: id,
        trigger,
        phase: SweepPhase::Requested,
        repos_done: 0,
        repos_total: 0,
        changes: 0,
        unreachable: 0,
    };
    tx.stage(&[requested.event(Source::Api)]);
    tx.commit(&app.doorbell).await?;
    let answer = SweepRequested {
        sweep_id: id,
        trigger,
        subject: subjects::forge_sweep("progress"),
    };
    Ok((StatusCode::ACCEPTED, Json(answer)))
}
