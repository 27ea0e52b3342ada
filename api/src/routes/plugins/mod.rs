//! Plugins: versioned node schemas for graphs. Each version after the first carries
//! declarative steps ([`switchyard_domain::steps`]) that turn node data of
//! the previous version into its own, validated here when registered.
//!
//! `POST /plugins`, `GET /plugins` (by name, paged), `GET /plugins/{name}`, and
//! `POST /plugins/{name}/versions` ([`versions`]: the next version only). Registering
//! a plugin or a version commits with its `audit_log` row and a
//! `plugin.{name}.version` event.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::PgConnection;
use switchyard_bus::payloads::PluginVersioned;
use switchyard_domain::status::AuditEntity;
use switchyard_domain::steps::Step;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{KeyPageParams, Page, PageParams};
use crate::audit;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{Body, Path, Query};
use crate::openapi::{ErrorBody, Refusals};
use crate::{AppState, validate};
use switchyard_bus::OutboxTx;
use switchyard_bus::{Payload, Source};
use versions::{check_version, insert_version};

mod versions;

/// Most versions registered at once.
const MAX_VERSIONS: usize = 100;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, register))
        .routes(routes!(show))
        .routes(routes!(versions::add_version))
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

/// A plugin in a list: its versions and their steps are at `GET /plugins/{name}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginSummaryOut {
    pub name: String,
    /// The version new graphs start at, and graphs are migrated to.
    pub current_version: i32,
    pub created_at: DateTime<Utc>,
    /// When the last version was added.
    pub updated_at: DateTime<Utc>,
}

/// A registered version.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginVersionOut {
    pub version: i32,
    #[schema(value_type = Vec<Step>)]
    pub steps: Value,
    pub created_at: DateTime<Utc>,
}

/// Writes the audit row and stages `plugin.{name}.version` for the plugin's current version.
async fn versioned(
    tx: &mut OutboxTx<'_>,
    plugin: &PluginOut,
    action: &str,
    caller: &Caller,
) -> Result<(), ApiError> {
    let detail = json!({ "current_version": plugin.current_version });
    audit::record(
        tx,
        AuditEntity::Plugin,
        &plugin.name,
        action,
        &caller.subject,
        detail,
    )
    .await?;
    let event = PluginVersioned {
        plugin: plugin.name.clone(),
        version: plugin.current_version,
    }
    .event(Source::Api);
    tx.stage(std::slice::from_ref(&event));
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
    security(("bearer" = ["admin"]))
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
        check_version(version, i as i32 + 1, &app.documents)?;
    }
    let mut tx = OutboxTx::begin(&app.pool).await?;
    let inserted = sqlx::query!(
        "insert into plugins (name, current_version) values ($1, $2) on conflict (name) do nothing",
        &input.name,
        input.versions.len() as i32,
    )
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
    versioned(&mut tx, &plugin, "registered", &caller).await?;
    tx.commit(&app.doorbell).await?;
    Ok((StatusCode::CREATED, Json(plugin)))
}

/// List plugins by name, a page at a time.
#[utoipa::path(
    get,
    path = "/plugins",
    tag = "graphs",
    params(KeyPageParams),
    responses((status = 200, description = "A page of plugins", body = Page<PluginSummaryOut>), Refusals),
    security(("bearer" = ["viewer"]))
)]
async fn list(
    State(app): State<AppState>,
    Query(params): Query<KeyPageParams>,
) -> Result<Json<Page<PluginSummaryOut>>, ApiError> {
    let params = PageParams::from(params);
    let limit = params.limit()?;
    let after: Option<String> = params.cursor()?;
    let rows = sqlx::query_as!(
        PluginSummaryOut,
        "select name, current_version, created_at, updated_at from plugins
         where $1::text is null or name > $1
         order by name
         limit $2",
        after,
        limit + 1,
    )
    .fetch_all(&app.pool)
    .await?;
    Ok(Json(Page::from_rows(rows, limit, |p| p.name.clone())))
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
    let plugin = sqlx::query!(
        "select name, current_version, created_at from plugins where name = $1",
        name,
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| not_found(name))?;
    let versions = sqlx::query_as!(
        PluginVersionOut,
        "select version, steps, created_at from plugin_versions where plugin = $1 order by version",
        name,
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(PluginOut {
        name: plugin.name,
        current_version: plugin.current_version,
        versions,
        created_at: plugin.created_at,
    })
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("plugin {name:?} does not exist"))
}
