//! Cancelling a migration run: `POST /graphs/{slug}/migrations/{run_id}/cancel`, the
//! way back to a `ready` graph from a pending, running or failed run.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::json;
use sqlx::PgConnection;
use switchyard_bus::Event;
use switchyard_bus::payloads::{MigrationChanged, MigrationPhase};
use switchyard_domain::status::{AuditEntity, GraphStatus, MigrationRunStatus};
use uuid::Uuid;

use super::migrations::MigrationRunOut;
use super::{GraphOut, locked};
use crate::AppState;
use crate::audit;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Path;
use crate::openapi::{ErrorBody, Refusals};
use switchyard_bus::OutboxTx;
use switchyard_bus::{Payload, Source};

/// Cancel a migration run: the way back to a `ready` graph at its current version.
///
/// Whatever the run, once cancelled the graph is `ready` at its `schema_version`:
/// - A **pending** run is cancelled at once (200).
/// - A **failed** run that left the graph `migration_failed` (its latest run) is
///   cancelled at once (200). Nodes the run had migrated keep their version.
/// - A **running** run is asked to stop (202, `cancel_requested_at` set; asking again
///   changes nothing): its migrator ends it `cancelled` at the next batch boundary, the
///   nodes migrated so far at the target version. If the run ends first, it keeps that
///   ending. Follow `graph.{slug}.migration.cancelled` on the graph's events.
/// - Anything else is a 409 naming why.
///
/// Each is audited (`migration_cancelled`, `migration_cancel_requested`) and announced
/// (`graph.{slug}.migration.cancelled`, `…cancel_requested`) in its transaction.
#[utoipa::path(
    post,
    path = "/graphs/{slug}/migrations/{run_id}/cancel",
    tag = "graphs",
    params(
        ("slug" = String, Path, description = "Graph slug"),
        ("run_id" = Uuid, Path, description = "Migration run id"),
    ),
    responses(
        (status = 200, description = "Cancelled (it was pending or failed)", body = MigrationRunOut),
        (status = 202, description = "Running: it stops at its next batch boundary", body = MigrationRunOut),
        (status = 409, description = "The run already ended, or a later run superseded its failure", body = ErrorBody),
        Refusals
    ),
    security(("bearer" = ["operator"]))
)]
pub(super) async fn cancel(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((slug, run_id)): Path<(String, Uuid)>,
) -> Result<(StatusCode, Json<MigrationRunOut>), ApiError> {
    let mut tx = OutboxTx::begin(&app.pool).await?;
    let graph = locked(&mut tx, &slug).await?;
    let run = sqlx::query_as!(
        MigrationRunOut,
        r#"select id, graph_id, from_version, to_version, status as "status: MigrationRunStatus", error, workflow_run_id, processed, total, created_at, started_at, cancel_requested_at, finished_at from graph_migration_runs where id = $1 and graph_id = $2 for update"#,
        run_id,
        graph.id,
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("graph {slug:?} has no migration run {run_id}")))?;
    let (status, phase) = match run.status {
        MigrationRunStatus::Pending => (StatusCode::OK, MigrationPhase::Cancelled),
        MigrationRunStatus::Failed => {
            unresolved_failure(&mut tx, &graph, &run).await?;
            (StatusCode::OK, MigrationPhase::Cancelled)
        }
        // Asked already: the same answer, nothing written twice.
        MigrationRunStatus::Running if run.cancel_requested_at.is_some() => {
            return Ok((StatusCode::ACCEPTED, Json(run)));
        }
        MigrationRunStatus::Running => (StatusCode::ACCEPTED, MigrationPhase::CancelRequested),
        other @ (MigrationRunStatus::Succeeded | MigrationRunStatus::Cancelled) => {
            return Err(ApiError::Conflict(format!(
                "migration run {run_id} already ended ({other}); only pending, running or failed runs can be cancelled"
            )));
        }
    };
    let run = record_cancel(&mut tx, &graph, run, phase, &caller).await?;
    let events = cancel_events(&graph, &run, phase);
    tx.stage(&events);
    tx.commit(&app.doorbell).await?;
    Ok((status, Json(run)))
}

/// 409 unless `run` is the failure the graph is still in: the graph is
/// `migration_failed`, and no run since superseded it (a cancelled one would have made
/// the graph ready).
async fn unresolved_failure(
    tx: &mut PgConnection,
    graph: &GraphOut,
    run: &MigrationRunOut,
) -> Result<(), ApiError> {
    if graph.status != GraphStatus::MigrationFailed {
        return Err(ApiError::Conflict(format!(
            "migration run {} failed, but graph {:?} has left that failure (it is {}): nothing to cancel",
            run.id, graph.slug, graph.status
        )));
    }
    let latest = sqlx::query_scalar!(
        "select id from graph_migration_runs where graph_id = $1
         order by created_at desc, id desc limit 1",
        graph.id,
    )
    .fetch_one(&mut *tx)
    .await?;
    if latest != run.id {
        return Err(ApiError::Conflict(format!(
            "migration run {} failed, but a later run ({latest}) superseded it: cancel that one",
            run.id
        )));
    }
    Ok(())
}

/// Cancels `run` (or, for a running one, asks its migrator to), puts the graph of a
/// pending or failed one back to `ready`, and writes the audit row. Each update is
/// fenced on the status the caller read (the row is locked, so it holds).
async fn record_cancel(
    tx: &mut PgConnection,
    graph: &GraphOut,
    run: MigrationRunOut,
    phase: MigrationPhase,
    caller: &Caller,
) -> Result<MigrationRunOut, ApiError> {
    let (cancelled, action) = match phase {
        MigrationPhase::CancelRequested => (
            sqlx::query_as!(
                MigrationRunOut,
                r#"update graph_migration_runs
                 set cancel_requested_at = now()
                 where id = $1 and status = $2 and cancel_requested_at is null returning id, graph_id, from_version, to_version, status as "status: MigrationRunStatus", error, workflow_run_id, processed, total, created_at, started_at, cancel_requested_at, finished_at"#,
                run.id,
                run.status as MigrationRunStatus,
            )
            .fetch_optional(&mut *tx)
            .await?,
            "migration_cancel_requested",
        ),
        _ => (
            sqlx::query_as!(
                MigrationRunOut,
                r#"update graph_migration_runs set status = 'cancelled', finished_at = now(),
                        claimed_by = null, claim_expires_at = null
                 where id = $1 and status = $2 returning id, graph_id, from_version, to_version, status as "status: MigrationRunStatus", error, workflow_run_id, processed, total, created_at, started_at, cancel_requested_at, finished_at"#,
                run.id,
                run.status as MigrationRunStatus,
            )
            .fetch_optional(&mut *tx)
            .await?,
            "migration_cancelled",
        ),
    };
    let cancelled = cancelled.ok_or_else(|| {
        ApiError::Conflict(format!("migration run {} changed meanwhile; retry", run.id))
    })?;
    if phase == MigrationPhase::Cancelled {
        sqlx::query!(
            "update graphs set status = 'ready', updated_at = now() where id = $1",
            graph.id,
        )
        .execute(&mut *tx)
        .await?;
    }
    audit::record(
        tx,
        AuditEntity::Graph,
        &graph.slug,
        action,
        &caller.subject,
        json!({ "run_id": run.id, "was": run.status, "from_version": run.from_version, "to_version": run.to_version }),
    )
    .await?;
    Ok(cancelled)
}

/// `graph.{slug}.migration.cancelled` or `.cancel_requested` for `run`.
fn cancel_events(graph: &GraphOut, run: &MigrationRunOut, phase: MigrationPhase) -> Vec<Event> {
    vec![
        MigrationChanged {
            run_id: run.id,
            graph_slug: graph.slug.clone(),
            phase,
            from_version: run.from_version,
            to_version: run.to_version,
            processed: run.processed,
            total: run.total,
            error: None,
        }
        .event(Source::Api),
    ]
}
