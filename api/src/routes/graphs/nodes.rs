//! A graph's nodes: bulk writes at the graph's schema version (refused while a run
//! migrates it) and paged reads.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::super::{KeyPageParams, Page, PageParams};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{Body, Path, Query};
use crate::openapi::{ErrorBody, Refusals};
use crate::{AppState, validate};
use axum::Extension;
use switchyard_bus::OutboxTx;
use switchyard_domain::json::Limits;

/// Most nodes in one write.
const MAX_NODES: usize = 1000;

/// Body of `POST /graphs/{slug}/nodes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodesIn {
    /// 1 to 1000 nodes; an existing id is replaced.
    #[schema(min_items = 1, max_items = 1000)]
    pub nodes: Vec<NodeIn>,
}

/// One node to write.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeIn {
    /// 1 to 200 characters, unique within the graph.
    #[schema(min_length = 1, max_length = 200)]
    pub id: String,
    /// The node's properties, shaped by the plugin's schema; within the document limits
    /// (`documents.max_bytes`, `documents.max_depth`).
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
}

/// What a write did.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodesWritten {
    pub written: usize,
    /// The version the nodes were written at.
    pub schema_version: i32,
}

/// A node as the API returns it.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeOut {
    pub id: String,
    #[schema(value_type = Object)]
    pub data: Value,
    pub schema_version: i32,
    pub updated_at: DateTime<Utc>,
}

/// The nodes' ids and data, in order, each checked: an id of 1 to 200 characters,
/// given once, and data within the document limits; a 422 names the first that is not.
fn checked(nodes: Vec<NodeIn>, limits: &Limits) -> Result<(Vec<String>, Vec<Value>), ApiError> {
    let mut seen = std::collections::HashSet::with_capacity(nodes.len());
    let mut ids = Vec::with_capacity(nodes.len());
    let mut data = Vec::with_capacity(nodes.len());
    for (i, node) in nodes.into_iter().enumerate() {
        if node.id.is_empty() || node.id.chars().count() > 200 {
            return Err(ApiError::Unprocessable(format!(
                "nodes[{i}].id must be 1 to 200 characters"
            )));
        }
        if !seen.insert(node.id.clone()) {
            return Err(ApiError::Unprocessable(format!(
                "nodes[{i}].id {:?} appears twice",
                node.id
            )));
        }
        let node_data = Value::Object(node.data);
        validate::json(&format!("nodes[{i}].data"), &node_data, limits)?;
        ids.push(node.id);
        data.push(node_data);
    }
    Ok((ids, data))
}

/// Write nodes (insert or replace), at the graph's schema version.
#[utoipa::path(
    post,
    path = "/graphs/{slug}/nodes",
    tag = "graphs",
    params(("slug" = String, Path, description = "Graph slug")),
    request_body = NodesIn,
    responses(
        (status = 200, description = "Written", body = NodesWritten),
        (status = 409, description = "The graph is read-only; the message gives the reason", body = ErrorBody),
        Refusals
    ),
    security(("bearer" = ["operator"]))
)]
pub(super) async fn write(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(slug): Path<String>,
    Body(input): Body<NodesIn>,
) -> Result<Json<NodesWritten>, ApiError> {
    if input.nodes.is_empty() || input.nodes.len() > MAX_NODES {
        return Err(ApiError::Unprocessable(format!(
            "nodes must hold 1 to {MAX_NODES} nodes, got {}",
            input.nodes.len()
        )));
    }
    let (ids, data) = checked(input.nodes, &app.documents)?;
    let mut tx = OutboxTx::begin(&app.pool).await?;
    // A shared lock: the migrator's claim (which sets `migrating`) waits for this
    // write to commit, and counts these nodes; or it went first, and this is refused.
    sqlx::query_scalar!("select 1 from graphs where slug = $1 for share", &slug)
        .fetch_optional(&mut *tx)
        .await?;
    let graph = super::find(&mut *tx, &slug).await?;
    if let Some(reason) = &graph.read_only_reason {
        return Err(ApiError::Conflict(format!(
            "graph {slug:?} is read-only ({reason}): node writes are refused until the migration run ends (or is cancelled: POST /api/v1/graphs/{slug}/migrations/{{run_id}}/cancel)"
        )));
    }
    sqlx::query!(
        "insert into graph_nodes (graph_id, id, data, schema_version)
         select $1, u.id, u.data, $2 from unnest($3::text[], $4::jsonb[]) as u(id, data)
         on conflict (graph_id, id) do update
         set data = excluded.data, schema_version = excluded.schema_version, updated_at = now()",
        graph.id,
        graph.schema_version,
        &ids,
        &data,
    )
    .execute(&mut *tx)
    .await?;
    super::changed(&mut tx, &graph, Some(ids.len()), &caller).await?;
    tx.commit(&app.doorbell).await?;
    Ok(Json(NodesWritten {
        written: ids.len(),
        schema_version: graph.schema_version,
    }))
}

/// A graph's nodes by id, a page at a time.
#[utoipa::path(
    get,
    path = "/graphs/{slug}/nodes",
    tag = "graphs",
    params(("slug" = String, Path, description = "Graph slug"), KeyPageParams),
    responses((status = 200, description = "A page of nodes", body = Page<NodeOut>), Refusals),
    security(("bearer" = ["viewer"]))
)]
pub(super) async fn list(
    State(app): State<AppState>,
    Path(slug): Path<String>,
    Query(params): Query<KeyPageParams>,
) -> Result<Json<Page<NodeOut>>, ApiError> {
    let params = PageParams::from(params);
    let limit = params.limit()?;
    let after: Option<String> = params.cursor()?;
    let graph = super::find(&app.pool, &slug).await?;
    let rows = sqlx::query_as!(
        NodeOut,
        "select id, data, schema_version, updated_at from graph_nodes
         where graph_id = $1 and ($2::text is null or id > $2)
         order by id limit $3",
        graph.id,
        after,
        limit + 1,
    )
    .fetch_all(&app.pool)
    .await?;
    Ok(Json(Page::from_rows(rows, limit, |n| n.id.clone())))
}
