//! Plugins: versioned node schemas for graphs. Each version after the first carries
//! declarative steps ([`switchyard_workers::migrator::steps`]) that turn node data of
//! the previous version into its own, validated here when registered.
//!
//! `POST /plugins`, `POST /plugins/{name}/versions` (the next version only; with
//! `?migrate_graphs=true` it also requests a migration run for every graph of the
//! plugin), `GET /plugins/{name}`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgConnection;
use switchyard_domain::json::Limits;
use switchyard_workers::migrator::steps::{self, Step};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::graphs::{self, migrations::MigrationRunOut};
use crate::audit;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{Body, Path, Query};
use crate::openapi::{ErrorBody, Refusals};
use crate::{AppState, validate};
use axum::Extension;
use serde_json::json;
use switchyard_bus::payloads::PluginVersioned;
use switchyard_bus::{Event, outbox};

/// Most versions registered at once.
const MAX_VERSIONS: usize = 100;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(show))
        .routes(routes!(add_version))
}

/// Body of `POST /plugins`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginIn {
    /// Lowercase letters, digits and dashes, 1 to 63 characters.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    pub name: String,
    /// Versions 1, 2, … in order. Version 1 is where graphs start: its steps are empty.
    #[schema(min_items = 1, max_items = 100)]
    pub versions: Vec<PluginVersionIn>,
}

/// One version and the steps that migrate node data to it from the version before.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginVersionIn {
    #[schema(minimum = 1)]
    pub version: i32,
    #[schema(max_items = 100)]
    pub steps: Vec<Step>,
}

/// A plugin as the API returns it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginOut {
    pub name: String,
    pub current_version: i32,
    pub versions: Vec<PluginVersionOut>,
    pub created_at: DateTime<Utc>,
}

/// A registered version.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct PluginVersionOut {
    pub version: i32,
    #[schema(value_type = Vec<Step>)]
    pub steps: Value,
    pub created_at: DateTime<Utc>,
}

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
fn check_version(
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

/// Writes the audit row and stages `plugin.{name}.version` for the plugin's current version.
async fn versioned(
    tx: &mut PgConnection,
    plugin: &PluginOut,
    action: &str,
    caller: &Caller,
) -> Result<Vec<Event>, ApiError> {
    let detail = json!({ "current_version": plugin.current_version });
    audit::record(tx, "plugin", &plugin.name, action, &caller.subject, detail).await?;
    let event = PluginVersioned {
        plugin: plugin.name.clone(),
        version: plugin.current_version,
    }
    .event("switchyard/api");
    outbox::stage(tx, std::slice::from_ref(&event)).await?;
    Ok(vec![event])
}

async fn insert_version(
    tx: &mut PgConnection,
    plugin: &str,
    version: &PluginVersionIn,
) -> Result<(), ApiError> {
    sqlx::query("insert into plugin_versions (plugin, version, steps) values ($1, $2, $3)")
        .bind(plugin)
        .bind(version.version)
        .bind(serde_json::to_value(&version.steps).expect("steps serialize"))
        .execute(tx)
        .await?;
    Ok(())
}

/// Register a plugin with its versions.
#[utoipa::path(
    post,
    path = "/plugins",
    tag = "graphs",
    request_body = PluginIn,
    responses(
        (status = 201, description = "Registered", body = PluginOut),
        (status = 409, description = "The name is taken", body = ErrorBody),
        Refusals
    ),
    security(("bearer" = ["operator"]))
)]
async fn register(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Body(input): Body<PluginIn>,
) -> Result<(StatusCode, Json<PluginOut>), ApiError> {
    validate::slug("name", &input.name)?;
    if input.versions.is_empty() || input.versions.len() > MAX_VERSIONS {
        return Err(ApiError::Unprocessable(format!(
            "versions must hold 1 to {MAX_VERSIONS} versions"
        )));
    }
    for (i, version) in input.versions.iter().enumerate() {
        check_version(version, i as i32 + 1, &app.config.document_limits())?;
    }
    let mut tx = app.pool.begin().await?;
    let inserted = sqlx::query(
        "insert into plugins (name, current_version) values ($1, $2) on conflict (name) do nothing",
    )
    .bind(&input.name)
    .bind(input.versions.len() as i32)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(ApiError::Conflict(format!(
            "plugin {:?} already exists; add versions with POST /api/v1/plugins/{}/versions",
            input.name, input.name
        )));
    }
    for version in &input.versions {
        insert_version(&mut tx, &input.name, version).await?;
    }
    let plugin = find(&mut tx, &input.name).await?;
    let events = versioned(&mut tx, &plugin, "registered", &caller).await?;
    tx.commit().await?;
    app.doorbell.ring(events);
    Ok((StatusCode::CREATED, Json(plugin)))
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
    security(("bearer" = ["operator"]))
)]
async fn add_version(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(params): Query<AddVersionParams>,
    Body(version): Body<PluginVersionIn>,
) -> Result<(StatusCode, Json<VersionAdded>), ApiError> {
    let mut tx = app.pool.begin().await?;
    let current: i32 =
        sqlx::query_scalar("select current_version from plugins where name = $1 for update")
            .bind(&name)
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
    check_version(&version, current + 1, &app.config.document_limits())?;
    insert_version(&mut tx, &name, &version).await?;
    sqlx::query("update plugins set current_version = $2, updated_at = now() where name = $1")
        .bind(&name)
        .bind(version.version)
        .execute(&mut *tx)
        .await?;
    let mut migration_runs = Vec::new();
    let mut events = Vec::new();
    if params.migrate_graphs.unwrap_or(false) {
        let slugs: Vec<String> =
            sqlx::query_scalar("select slug from graphs where plugin = $1 order by slug")
                .bind(&name)
                .fetch_all(&mut *tx)
                .await?;
        for slug in slugs {
            let graph = graphs::locked(&mut tx, &slug).await?;
            match graphs::migrations::request(&mut tx, &graph, version.version, &caller).await {
                Ok((run, staged)) => {
                    migration_runs.push(run);
                    events.extend(staged);
                }
                // A run already in flight: that graph is migrated again when it ends.
                Err(ApiError::Conflict(_)) => {}
                Err(other) => return Err(other),
            }
        }
    }
    let plugin = find(&mut tx, &name).await?;
    events.extend(versioned(&mut tx, &plugin, "version_added", &caller).await?);
    tx.commit().await?;
    app.doorbell.ring(events);
    Ok((
        StatusCode::CREATED,
        Json(VersionAdded {
            plugin,
            migration_runs,
        }),
    ))
}

/// One plugin with all its versions.
#[utoipa::path(
    get,
    path = "/plugins/{name}",
    tag = "graphs",
    params(("name" = String, Path, description = "Plugin name")),
    responses((status = 200, description = "The plugin", body = PluginOut), Refusals),
    security(("bearer" = ["viewer"]))
)]
async fn show(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PluginOut>, ApiError> {
    let mut conn = app.pool.acquire().await?;
    find(&mut conn, &name).await.map(Json)
}

async fn find(conn: &mut PgConnection, name: &str) -> Result<PluginOut, ApiError> {
    let plugin: (String, i32, DateTime<Utc>) =
        sqlx::query_as("select name, current_version, created_at from plugins where name = $1")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| not_found(name))?;
    let versions = sqlx::query_as::<_, PluginVersionOut>(
        "select version, steps, created_at from plugin_versions where plugin = $1 order by version",
    )
    .bind(name)
    .fetch_all(&mut *conn)
    .await?;
    Ok(PluginOut {
        name: plugin.0,
        current_version: plugin.1,
        versions,
        created_at: plugin.2,
    })
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("plugin {name:?} does not exist"))
}
