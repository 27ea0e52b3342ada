//! Topologies: JSON documents edited only through mutations.
//!
//! `POST /topologies`, `GET /topologies`, `GET /topologies/{id}`. Creating a topology
//! commits it with a `topology.{id}.status` event (version 0, idle), so a subscriber
//! learns of it; there is no work for a worker until a mutation is enqueued.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use switchyard_bus::payloads::TopologyStatus;
use switchyard_domain::status;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{Page, PageParams};
use crate::error::ApiError;
use crate::extract::{Body, Path, Query};
use crate::openapi::Refusals;
use crate::{AppState, validate};
use switchyard_bus::OutboxTx;
use switchyard_bus::{Payload, Source};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show))
}

/// Body of `POST /topologies`. Server-owned fields (`id`, `version`, `status`,
/// timestamps) are refused. The document must keep the document limits
/// (`documents.max_bytes`: 413; `documents.max_depth`, numbers within ±1e300:
/// 422).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopologyIn {
    /// Human-readable name, 1 to 200 characters, not only whitespace.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub name: String,
    /// Initial document, any JSON value (`null` too); `{}` when left out.
    #[serde(default = "empty_document")]
    #[schema(value_type = Value)]
    pub document: Value,
}

/// The document of a topology created without one.
fn empty_document() -> Value {
    Value::Object(Default::default())
}

/// A topology as the API returns it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopologyOut {
    pub id: Uuid,
    pub name: String,
    /// Passed through as stored, never parsed into a tree: reading a document cannot
    /// fail however it is nested.
    #[schema(value_type = Value)]
    pub document: Box<RawValue>,
    /// Number of mutations applied so far.
    pub version: i64,
    /// `idle`, or `pending` while mutations wait to apply.
    #[schema(value_type = String)]
    pub status: status::TopologyStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Create a topology.
#[utoipa::path(
    post,
    path = "/topologies",
    tag = "topologies",
    request_body = TopologyIn,
    responses((status = 201, description = "Created", body = TopologyOut), Refusals),
    security(("bearer" = ["operator"]))
)]
async fn create(
    State(app): State<AppState>,
    Body(input): Body<TopologyIn>,
) -> Result<(StatusCode, Json<TopologyOut>), ApiError> {
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::Unprocessable(
            "name must be 1 to 200 characters".to_owned(),
        ));
    }
    let document = input.document;
    validate::json("document", &document, &app.documents)?;
    let mut tx = OutboxTx::begin(&app.pool).await?;
    let topology = sqlx::query_as!(
        TopologyOut,
        r#"insert into topologies (id, name, document) values ($1, $2, $3)
         returning id, name, document as "document: Box<RawValue>", version,
                   status as "status: status::TopologyStatus", created_at, updated_at"#,
        Uuid::now_v7(),
        name,
        &document,
    )
    .fetch_one(&mut *tx)
    .await?;
    let created = TopologyStatus {
        topology_id: topology.id,
        version: topology.version,
        status: topology.status,
        last_seq: None,
    }
    .event(Source::Api);
    tx.stage(std::slice::from_ref(&created));
    tx.commit(&app.doorbell).await?;
    Ok((StatusCode::CREATED, Json(topology)))
}

/// List topologies, oldest first, a page at a time.
#[utoipa::path(
    get,
    path = "/topologies",
    tag = "topologies",
    params(PageParams),
    responses((status = 200, description = "A page of topologies", body = Page<TopologyOut>), Refusals),
    security(("bearer" = ["viewer"]))
)]
async fn list(
    State(app): State<AppState>,
    Query(params): Query<PageParams>,
) -> Result<Json<Page<TopologyOut>>, ApiError> {
    let limit = params.limit()?;
    let after: Option<Uuid> = params.cursor()?;
    // Ids are UUIDv7, so id order is creation order and makes a stable keyset cursor.
    let rows = sqlx::query_as!(
        TopologyOut,
        r#"select id, name, document as "document: Box<RawValue>", version,
                status as "status: status::TopologyStatus", created_at, updated_at
         from topologies
         where $1::uuid is null or id > $1
         order by id
         limit $2"#,
        after,
        limit + 1,
    )
    .fetch_all(&app.pool)
    .await?;
    Ok(Json(Page::from_rows(rows, limit, |t| t.id.to_string())))
}

/// One topology, with its current document.
#[utoipa::path(
    get,
    path = "/topologies/{id}",
    tag = "topologies",
    params(("id" = Uuid, Path, description = "Topology id")),
    responses((status = 200, description = "The topology", body = TopologyOut), Refusals),
    security(("bearer" = ["viewer"]))
)]
async fn show(
    State(app): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<TopologyOut>, ApiError> {
    find(&app.pool, id).await.map(Json)
}

/// The topology, or 404 naming the id.
pub async fn find(pool: &sqlx::PgPool, id: Uuid) -> Result<TopologyOut, ApiError> {
    sqlx::query_as!(
        TopologyOut,
        r#"select id, name, document as "document: Box<RawValue>", version,
                status as "status: status::TopologyStatus", created_at, updated_at
         from topologies where id = $1"#,
        id,
    )
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| not_found(id))
}

/// 404 unless the topology exists; cheaper than [`find`] when the document is not needed.
pub async fn ensure_exists(pool: &sqlx::PgPool, id: Uuid) -> Result<(), ApiError> {
    let exists: bool = sqlx::query_scalar!(
        r#"select exists (select 1 from topologies where id = $1) as "exists!""#,
        id,
    )
    .fetch_one(pool)
    .await?;
    if exists { Ok(()) } else { Err(not_found(id)) }
}

/// The 404 for an unknown topology id.
pub fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("topology {id} does not exist"))
}
