//! Migration runs of a graph: `POST /graphs/{slug}/re-migrate` records a pending run
//! and its `graph.{slug}.migration.requested` event (the migrator does the work),
//! and `GET /graphs/{slug}/migrations` is the history, newest first, paged like
//! every list. Cancelling a run is [`super::cancel`].

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use switchyard_bus::payloads::{MigrationChanged, MigrationPhase};
use switchyard_domain::metrics::{Outcome, Resource};
use switchyard_domain::status::{AuditEntity, GraphStatus, MigrationRunStatus};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{GraphOut, locked};
use crate::AppState;
use crate::audit;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{Path, Query};
use crate::openapi::{ErrorBody, Refusals};
use crate::routes::{Page, PageParams};
use axum::Extension;
use serde_json::json;
use switchyard_bus::OutboxTx;
use switchyard_bus::{Payload, Source};

/// A migration run as the API returns it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MigrationRunOut {
    pub id: Uuid,
    pub graph_id: Uuid,
    pub from_version: i32,
    pub to_version: i32,
    /// `pending`, `running`, `succeeded`, `failed` or `cancelled`.
    #[schema(value_type = String)]
    pub status: MigrationRunStatus,
    /// Why it failed: the version, the step and the node.
    pub error: Option<String>,
    /// The job's id in the fleet: the id of its `migration.requested` event.
    pub workflow_run_id: String,
    /// Nodes migrated so far, of `total`.
    pub processed: i64,
    pub total: i64,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    /// When an operator asked this running run to stop (it ends `cancelled` at its
    /// next batch boundary, unless it ends first).
    pub cancel_requested_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Body of `POST /graphs/{slug}/re-migrate` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReMigrateIn {
    /// The plugin version to migrate to; the plugin's current version by default.
    #[schema(minimum = 1)]
    pub target_version: Option<i32>,
}

/// Migrate a graph to a plugin version (the current one by default).
#[utoipa::path(
    post,
    path = "/graphs/{slug}/re-migrate",
    tag = "graphs",
    params(("slug" = String, Path, description = "Graph slug")),
    request_body(content = Option<ReMigrateIn>, description = "Optional; `{}` or no body migrates to the plugin's current version"),
    responses(
        (status = 202, description = "The pending run", body = MigrationRunOut),
        (status = 409, description = "A run is already pending or running, or the graph is already at the target", body = ErrorBody),
        Refusals
    ),
    security(("bearer" = ["operator"]))
)]
pub(super) async fn re_migrate(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(slug): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<MigrationRunOut>), ApiError> {
    let body = body?;
    let input: ReMigrateIn = if body.iter().all(u8::is_ascii_whitespace) {
        ReMigrateIn::default()
    } else {
        // `null` is as good as no body.
        serde_json::from_slice::<Option<ReMigrateIn>>(&body)
            .map(Option::unwrap_or_default)
            .map_err(|e| {
                if e.is_data() {
                    ApiError::Unprocessable(format!("body: {e}"))
                } else {
                    ApiError::BadRequest(format!("body is not JSON: {e}"))
                }
            })?
    };
    let mut tx = OutboxTx::begin(&app.pool).await?;
    let graph = locked(&mut tx, &slug).await?;
    let current = sqlx::query_scalar!(
        "select current_version from plugins where name = $1",
        &graph.plugin,
    )
    .fetch_one(&mut *tx)
    .await?;
    let target = input.target_version.unwrap_or(current);
    if target < 1 || target > current {
        return Err(ApiError::Unprocessable(format!(
            "target_version {target} is not a version of plugin {:?} (1 to {current})",
            graph.plugin
        )));
    }
    if target < graph.schema_version {
        return Err(ApiError::Unprocessable(format!(
            "graph {slug:?} is at version {}; migrating down to {target} is not supported",
            graph.schema_version
        )));
    }
    let run = request(&mut tx, &graph, target, &caller).await?;
    tx.commit(&app.doorbell).await?;
    crate::metrics::work(Resource::MigrationRun, Outcome::Requested, 1);
    Ok((StatusCode::ACCEPTED, Json(run)))
}

/// 409 when `graph` has a run pending or running, or is already `ready` at `target`.
async fn refuse_if_in_flight_or_there(
    tx: &mut sqlx::PgConnection,
    graph: &GraphOut,
    target: i32,
) -> Result<(), ApiError> {
    let active = sqlx::query!(
        r#"select id, status as "status: MigrationRunStatus" from graph_migration_runs
         where graph_id = $1 and status in ('pending', 'running')"#,
        graph.id,
    )
    .fetch_optional(tx)
    .await?;
    if let Some(run) = active {
        return Err(ApiError::Conflict(format!(
            "graph {:?} already has a migration run in flight: {} ({})",
            graph.slug, run.id, run.status
        )));
    }
    if target == graph.schema_version && graph.status == GraphStatus::Ready {
        return Err(ApiError::Conflict(format!(
            "graph {:?} is already at version {target}",
            graph.slug
        )));
    }
    Ok(())
}

/// Records a pending run of `graph` (locked by the caller) to `target`, with its
/// `migration.requested` event: 409 if a run is in flight or the graph is there.
pub async fn request(
    tx: &mut OutboxTx<'_>,
    graph: &GraphOut,
    target: i32,
    caller: &Caller,
) -> Result<MigrationRunOut, ApiError> {
    refuse_if_in_flight_or_there(tx, graph, target).await?;
    let run_id = Uuid::now_v7();
    let event = MigrationChanged {
        run_id,
        graph_slug: graph.slug.clone(),
        phase: MigrationPhase::Requested,
        from_version: graph.schema_version,
        to_version: target,
        processed: 0,
        total: 0,
        error: None,
    }
    .event(Source::Api);
    let run = sqlx::query_as!(
        MigrationRunOut,
        r#"insert into graph_migration_runs (id, graph_id, from_version, to_version, workflow_run_id)
         values ($1, $2, $3, $4, $5)
         returning id, graph_id, from_version, to_version, status as "status: MigrationRunStatus", error, workflow_run_id, processed, total, created_at, started_at, cancel_requested_at, finished_at"#,
        run_id,
        graph.id,
        graph.schema_version,
        target,
        event.id.to_string(),
    )
    .fetch_one(&mut **tx)
    .await?;
    audit::record(
        tx,
        AuditEntity::Graph,
        &graph.slug,
        "migration_requested",
        &caller.subject,
        json!({ "run_id": run.id, "from_version": run.from_version, "to_version": target }),
    )
    .await?;
    tx.stage(std::slice::from_ref(&event));
    Ok(run)
}

/// A graph's migration runs, newest first (`created_at`, then `id`, descending), a
/// page at a time.
#[utoipa::path(
    get,
    path = "/graphs/{slug}/migrations",
    tag = "graphs",
    params(("slug" = String, Path, description = "Graph slug"), PageParams),
    responses((status = 200, description = "A page of runs, newest first; no items if never migrated", body = Page<MigrationRunOut>), Refusals),
    security(("bearer" = ["viewer"]))
)]
pub(super) async fn history(
    State(app): State<AppState>,
    Path(slug): Path<String>,
    Query(params): Query<PageParams>,
) -> Result<Json<Page<MigrationRunOut>>, ApiError> {
    let limit = params.limit()?;
    let cursor: Option<Uuid> = params.cursor()?;
    let graph = super::find(&app.pool, &slug).await?;
    // The cursor is the last run of the previous page; the page continues after its
    // (created_at, id), the order the history index keeps.
    let after: Option<(DateTime<Utc>, Uuid)> = match cursor {
        None => None,
        Some(id) => Some(
            sqlx::query!(
                "select created_at, id from graph_migration_runs where graph_id = $1 and id = $2",
                graph.id,
                id,
            )
            .fetch_optional(&app.pool)
            .await?
            .map(|row| (row.created_at, row.id))
            .ok_or_else(|| {
                ApiError::Unprocessable(format!(
                    "cursor {id} is not a migration run of graph {slug:?}; pass `next_cursor` from the previous page"
                ))
            })?,
        ),
    };
    let runs = sqlx::query_as!(
        MigrationRunOut,
        r#"select id, graph_id, from_version, to_version, status as "status: MigrationRunStatus", error, workflow_run_id, processed, total, created_at, started_at, cancel_requested_at, finished_at from graph_migration_runs
          where graph_id = $1 and ($2::timestamptz is null or (created_at, id) < ($2, $3))
          order by created_at desc, id desc limit $4"#,
        graph.id,
        after.map(|(at, _)| at),
        after.map(|(_, id)| id),
        limit + 1,
    )
    .fetch_all(&app.pool)
    .await?;
    Ok(Json(Page::from_rows(runs, limit, |run| run.id.to_string())))
}

/// The graph's run in flight, if any (for its event stream's snapshot).
pub async fn active(
    pool: &sqlx::PgPool,
    graph_id: Uuid,
) -> Result<Option<MigrationRunOut>, ApiError> {
    Ok(sqlx::query_as!(
        MigrationRunOut,
        r#"select id, graph_id, from_version, to_version, status as "status: MigrationRunStatus", error, workflow_run_id, processed, total, created_at, started_at, cancel_requested_at, finished_at from graph_migration_runs where graph_id = $1 and status in ('pending', 'running')"#,
        graph_id,
    )
    .fetch_optional(pool)
    .await?)
}
