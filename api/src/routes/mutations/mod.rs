//! Mutations: RFC 6902 JSON Patch edits of a topology, applied by the mutator.
//!
//! `POST /topologies/{id}/mutations` (`enqueue.rs`) commits the mutation row and its
//! `topology.{id}.mutation.enqueued` outbox event in one transaction and answers 202
//! without waiting for a worker; its body arrives in either media type (`body.rs`).
//! Requests that arrive together share that transaction (`group.rs`, group commit).
//! `POST /mutations/batch` (`batch.rs`) enqueues many at once, all or nothing. Both
//! write through `write.rs`.
//! Reads (`list.rs`): `GET /topologies/{id}/mutations` (seq order), `GET /mutations`
//! (every topology's, newest first: failed work, for example), and here
//! `GET /mutations/{id}`.
//!
//! ## Ordering
//! The enqueue transaction locks each topology row it writes to and hands out the
//! next seqs under that lock, held until commit, so seqs are gapless and commit in
//! seq order: the mutator, reading pending mutations under the same lock, never sees
//! seq n+1 without seq n (`write.rs`).

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
pub use switchyard_domain::status::MutationStatus;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Path;
use crate::openapi::Refusals;

mod batch;
mod body;
mod enqueue;
mod group;
mod list;
mod write;

pub use group::{GroupCommit, GroupCommitConfig};

/// The routes of mutations, with their OpenAPI operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list::list, enqueue::enqueue))
        .routes(routes!(show))
        .routes(routes!(list::list_all))
        .routes(routes!(batch::enqueue_batch))
}

/// A mutation as the API returns it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct MutationOut {
    pub id: Uuid,
    pub topology_id: Uuid,
    /// Position in the topology's apply order, from 1.
    pub seq: i64,
    /// `pending`, `applied` or `failed`.
    #[schema(value_type = String)]
    pub status: MutationStatus,
    #[schema(value_type = Vec<Object>)]
    pub ops: Value,
    pub if_version: Option<i64>,
    /// Why a failed mutation could not apply.
    pub error: Option<String>,
    /// The topology version this mutation produced.
    pub applied_version: Option<i64>,
    pub actor: String,
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A topology's pending mutations in seq order (at most 1,000), for snapshots.
pub async fn pending_of(pool: &PgPool, topology_id: Uuid) -> Result<Vec<MutationOut>, ApiError> {
    let pending = sqlx::query_as!(
        MutationOut,
        r#"select id, topology_id, seq, status as "status: MutationStatus", ops, if_version, error, applied_version, actor, idempotency_key, created_at, finished_at from mutations where topology_id = $1 and status = 'pending' order by seq limit 1000"#,
        topology_id,
    )
    .fetch_all(pool)
    .await?;
    Ok(pending)
}

/// One mutation: its status, error and the version it produced.
#[utoipa::path(
    get,
    path = "/mutations/{id}",
    tag = "mutations",
    params(("id" = Uuid, Path, description = "Mutation id")),
    responses((status = 200, description = "The mutation", body = MutationOut), Refusals),
    security(("bearer" = ["viewer"]))
)]
async fn show(
    State(app): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<MutationOut>, ApiError> {
    sqlx::query_as!(
        MutationOut,
        r#"select id, topology_id, seq, status as "status: MutationStatus", ops, if_version, error, applied_version, actor, idempotency_key, created_at, finished_at from mutations where id = $1"#,
        id,
    )
    .fetch_optional(&app.pool)
    .await?
    .map(Json)
    .ok_or_else(|| ApiError::NotFound(format!("mutation {id} does not exist")))
}
