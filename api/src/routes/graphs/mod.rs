//! Graphs: node data shaped by a plugin's schema, at a `schema_version`.
//!
//! `POST /graphs`, `GET /graphs`, `GET /graphs/{slug}`, node writes and reads, and the
//! migration runs ([`migrations`]). While a run migrates a graph (`status: migrating`)
//! node writes are refused with 409 and the reason; after a failed run
//! (`migration_failed`) they are allowed, so the data can be repaired.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{PgConnection, PgExecutor};
use switchyard_bus::payloads::{GraphAction, GraphChanged};
use switchyard_domain::status::{AuditEntity, GraphStatus, ReadOnlyReason};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{KeyPageParams, Page, PageParams};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{Body, Path, Query};
use crate::openapi::{ErrorBody, Refusals};
use crate::{AppState, audit, validate};
use switchyard_bus::OutboxTx;
use switchyard_bus::{Payload, Source};

mod cancel;
pub mod migrations;
mod nodes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show))
        .routes(routes!(nodes::list, nodes::write))
        .routes(routes!(migrations::re_migrate))
        .routes(routes!(migrations::history))
        .routes(routes!(cancel::cancel))
}

/// Body of `POST /graphs`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GraphIn {
    /// Lowercase letters, digits and dashes, 1 to 63 characters; never changes.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    pub slug: String,
    /// The plugin whose schema shapes the nodes; the graph starts at its current version.
    pub plugin: String,
}

/// A graph as the API returns it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct GraphOut {
    pub id: Uuid,
    pub slug: String,
    pub plugin: String,
    /// The plugin version node writes are made at, and every node is at once a run
    /// succeeds (after a failed or cancelled run, nodes it migrated are ahead of it:
    /// each node's own `schema_version` says).
    pub schema_version: i32,
    /// `ready`; `migrating` while a run works the graph; or `migration_failed` after a
    /// run failed, until a later run succeeds or the failed run is cancelled (node
    /// writes are allowed, so the data the run failed on can be repaired).
    #[schema(value_type = String)]
    pub status: GraphStatus,
    /// Why node writes are refused: `migrating`, or null.
    #[schema(value_type = Option<String>)]
    pub read_only_reason: Option<ReadOnlyReason>,
    pub node_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Create a graph at its plugin's current version.
#[utoipa::path(
    post,
    path = "/graphs",
    tag = "graphs",
    request_body = GraphIn,
    responses(
        (status = 201, description = "Created", body = GraphOut),
        (status = 409, description = "The slug is taken", body = ErrorBody),
        Refusals
    ),
    security(("bearer" = ["operator"]))
)]
async fn create(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Body(input): Body<GraphIn>,
) -> Result<(StatusCode, Json<GraphOut>), ApiError> {
    validate::slug("slug", &input.slug)?;
    let mut tx = OutboxTx::begin(&app.pool).await?;
    let version: i32 = sqlx::query_scalar!(
        "select current_version from plugins where name = $1 for share",
        &input.plugin,
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("plugin {:?} does not exist", input.plugin)))?;
    let inserted = sqlx::query!(
        "insert into graphs (id, slug, plugin, schema_version) values ($1, $2, $3, $4)
         on conflict (slug) do nothing",
        Uuid::now_v7(),
        &input.slug,
        &input.plugin,
        version,
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(ApiError::Conflict(format!(
            "graph {:?} already exists",
            input.slug
        )));
    }
    let graph = find(&mut *tx, &input.slug).await?;
    changed(&mut tx, &graph, None, &caller).await?;
    tx.commit(&app.doorbell).await?;
    Ok((StatusCode::CREATED, Json(graph)))
}

/// List graphs by slug, a page at a time.
#[utoipa::path(
    get,
    path = "/graphs",
    tag = "graphs",
    params(KeyPageParams),
    responses((status = 200, description = "A page of graphs", body = Page<GraphOut>), Refusals),
    security(("bearer" = ["viewer"]))
)]
async fn list(
    State(app): State<AppState>,
    Query(params): Query<KeyPageParams>,
) -> Result<Json<Page<GraphOut>>, ApiError> {
    let params = PageParams::from(params);
    let limit = params.limit()?;
    let after: Option<String> = params.cursor()?;
    let rows = sqlx::query_as!(
        GraphOut,
        r#"select g.id, g.slug, g.plugin, g.schema_version, g.status as "status: GraphStatus", case when g.status = 'migrating' then 'migrating' end as "read_only_reason: ReadOnlyReason", g.created_at, g.updated_at, (select count(*) from graph_nodes n where n.graph_id = g.id) as "node_count!" from graphs g where $1::text is null or g.slug > $1 order by g.slug limit $2"#,
        after,
        limit + 1,
    )
    .fetch_all(&app.pool)
    .await?;
    Ok(Json(Page::from_rows(rows, limit, |g| g.slug.clone())))
}

/// One graph, with its node count.
#[utoipa::path(
    get,
    path = "/graphs/{slug}",
    tag = "graphs",
    params(("slug" = String, Path, description = "Graph slug")),
    responses((status = 200, description = "The graph", body = GraphOut), Refusals),
    security(("bearer" = ["viewer"]))
)]
async fn show(
    State(app): State<AppState>,
    Path(slug): Path<String>,
) -> Result<Json<GraphOut>, ApiError> {
    find(&app.pool, &slug).await.map(Json)
}

/// Writes the audit row and stages the event of a graph's creation (`nodes` is
/// `None`) or of a node write.
pub(crate) async fn changed(
    tx: &mut OutboxTx<'_>,
    graph: &GraphOut,
    nodes: Option<usize>,
    caller: &Caller,
) -> Result<(), ApiError> {
    let action = if nodes.is_some() {
        GraphAction::NodesWritten
    } else {
        GraphAction::Created
    };
    let change = GraphChanged {
        graph_slug: graph.slug.clone(),
        action,
        schema_version: graph.schema_version,
        nodes,
    };
    audit::record(
        tx,
        AuditEntity::Graph,
        &graph.slug,
        action.as_str(),
        &caller.subject,
        json!(change),
    )
    .await?;
    let event = change.event(Source::Api);
    tx.stage(std::slice::from_ref(&event));
    Ok(())
}

/// The graph, or 404 naming the slug.
pub async fn find(db: impl PgExecutor<'_>, slug: &str) -> Result<GraphOut, ApiError> {
    sqlx::query_as!(
        GraphOut,
        r#"select g.id, g.slug, g.plugin, g.schema_version, g.status as "status: GraphStatus", case when g.status = 'migrating' then 'migrating' end as "read_only_reason: ReadOnlyReason", g.created_at, g.updated_at, (select count(*) from graph_nodes n where n.graph_id = g.id) as "node_count!" from graphs g where g.slug = $1"#,
        slug,
    )
    .fetch_optional(db)
    .await?
    .ok_or_else(|| not_found(slug))
}

/// The graph, its row locked until the transaction ends; 404 if unknown.
pub async fn locked(tx: &mut PgConnection, slug: &str) -> Result<GraphOut, ApiError> {
    sqlx::query_scalar!("select 1 from graphs where slug = $1 for update", slug)
        .fetch_optional(&mut *tx)
        .await?;
    find(&mut *tx, slug).await
}

/// The 404 for an unknown graph slug.
pub fn not_found(slug: &str) -> ApiError {
    ApiError::NotFound(format!("graph {slug:?} does not exist"))
}
