//! `POST /plugins/{name}/versions`: a plugin's next version, its steps validated as
//! they are registered. With `?migrate_graphs=true` the same transaction also requests
//! a migration run to it for every graph of the plugin (graphs with a run in flight
//! are skipped: they migrate again when it ends).

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use switchyard_domain::json::Limits;
use switchyard_domain::metrics::{Outcome, Resource};
use switchyard_domain::steps;
use utoipa::{IntoParams, ToSchema};

use super::{PluginOut, PluginVersionIn, find, not_found, versioned};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{Body, Path, Query};
use crate::openapi::{ErrorBody, Refusals};
use crate::routes::graphs::{self, migrations::MigrationRunOut};
use crate::{AppState, validate};
use switchyard_bus::OutboxTx;

/// What registering a version did.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionAdded {
    pub plugin: PluginOut,
    /// Runs requested by `?migrate_graphs=true` (graphs with a run already in flight
    /// are skipped).
    pub migration_runs: Vec<MigrationRunOut>,
}

/// 422 unless `version` is `expected` and its steps are valid; a value a step writes
/// must fit a node's data (the document limits, one level down): 413 or 422.
pub(super) fn check_version(
    version: &PluginVersionIn,
    expected: i32,
    limits: &Limits,
) -> Result<(), ApiError> {
    if version.version != expected {
        return Err(ApiError::Unprocessable(format!(
            "versions must be 1, 2, 3, … in order: expected version {expected}, got {}",
            version.version
        )));
    }
    if expected == 1 && !version.steps.is_empty() {
        return Err(ApiError::Unprocessable(
            "version 1 is where graphs start: its steps must be empty".to_owned(),
        ));
    }
    steps::validate(&version.steps)
        .map_err(|problem| ApiError::Unprocessable(format!("version {expected}: {problem}")))?;
    // A step's value becomes a top-level property: checked as the smallest node data
    // holding it, `{"property": value}`.
    for (i, step) in version.steps.iter().enumerate() {
        for (property, value) in step.values() {
            let field = format!(
                "version {expected} step {}: a node holding its value as {property:?}",
                i + 1
            );
            let node = serde_json::json!({ property: value });
            validate::json(&field, &node, limits)?;
        }
    }
    Ok(())
}

/// Stores one version of `plugin`.
pub(super) async fn insert_version(
    tx: &mut PgConnection,
    plugin: &str,
    version: &PluginVersionIn,
) -> Result<(), ApiError> {
    sqlx::query!(
        "insert into plugin_versions (plugin, version, steps) values ($1, $2, $3)",
        plugin,
        version.version,
        serde_json::to_value(&version.steps).expect("steps serialize"),
    )
    .execute(tx)
    .await?;
    Ok(())
}

/// `?migrate_graphs=` of a new version.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AddVersionParams {
    /// Also request a migration run to the new version for every graph of the plugin.
    pub migrate_graphs: Option<bool>,
}

/// Register the plugin's next version.
#[utoipa::path(
    post,
    path = "/plugins/{name}/versions",
    tag = "graphs",
    params(("name" = String, Path, description = "Plugin name"), AddVersionParams),
    request_body = PluginVersionIn,
    responses(
        (status = 201, description = "Registered", body = VersionAdded),
        (status = 409, description = "Not the next version", body = ErrorBody),
        Refusals
    ),
    security(("bearer" = ["admin"]))
)]
pub(super) async fn add_version(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(params): Query<AddVersionParams>,
    Body(version): Body<PluginVersionIn>,
) -> Result<(StatusCode, Json<VersionAdded>), ApiError> {
    let mut tx = OutboxTx::begin(&app.pool).await?;
    let current: i32 = sqlx::query_scalar!(
        "select current_version from plugins where name = $1 for update",
        &name,
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| not_found(&name))?;
    if version.version != current + 1 {
        return Err(ApiError::Conflict(format!(
            "plugin {name:?} is at version {current}: the next version must be {}, got {}",
            current + 1,
            version.version
        )));
    }
    check_version(&version, current + 1, &app.documents)?;
    insert_version(&mut tx, &name, &version).await?;
    sqlx::query!(
        "update plugins set current_version = $2, updated_at = now() where name = $1",
        &name,
        version.version,
    )
    .execute(&mut *tx)
    .await?;
    let mut migration_runs = Vec::new();
    if params.migrate_graphs.unwrap_or(false) {
        let slugs: Vec<String> = sqlx::query_scalar!(
            "select slug from graphs where plugin = $1 order by slug",
            &name,
        )
        .fetch_all(&mut *tx)
        .await?;
        for slug in slugs {
            let graph = graphs::locked(&mut tx, &slug).await?;
            match graphs::migrations::request(&mut tx, &graph, version.version, &caller).await {
                Ok(run) => migration_runs.push(run),
                // A run already in flight: that graph is migrated again when it ends.
                Err(ApiError::Conflict(_)) => {}
                Err(other) => return Err(other),
            }
        }
    }
    let plugin = find(&mut tx, &name).await?;
    versioned(&mut tx, &plugin, "version_added", &caller).await?;
    tx.commit(&app.doorbell).await?;
    crate::metrics::work(
        Resource::MigrationRun,
        Outcome::Requested,
        migration_runs.len(),
    );
    Ok((
        StatusCode::CREATED,
        Json(VersionAdded {
            plugin,
            migration_runs,
        }),
    ))
}
