//! `POST /mutations/batch`: bulk enqueue. Up to `http.max_batch_mutations` mutations,
//! for any topologies, validated all-or-nothing and committed in one transaction.
//!
//! Each mutation is exactly what `POST /topologies/{id}/mutations` would have made:
//! same checks, same row, same `mutation.enqueued` event, seqs handed out in request
//! order within each topology (see [`super::write`]). A retried request with the same
//! `Idempotency-Key` answers with the mutations the first one created (200); the key
//! belongs to the whole batch, not to its mutations.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use switchyard_bus::{OutboxTx, TraceContext};
use switchyard_domain::json;
use switchyard_domain::metrics::{Outcome, Resource};
use utoipa::ToSchema;
use uuid::Uuid;

use super::body::PatchOp;
use super::enqueue::idempotency_key;
use super::write::{self, NewMutation};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Body;
use crate::openapi::Refusals;
use crate::{AppState, patch};

/// Body of `POST /mutations/batch`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchIn {
    /// The mutations, applied per topology in this order.
    #[schema(min_items = 1)]
    pub mutations: Vec<BatchItemIn>,
}

/// One mutation of a batch: its topology and what `POST /topologies/{id}/mutations`
/// takes as `application/json`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchItemIn {
    pub topology_id: Uuid,
    /// RFC 6902 operations, applied all-or-nothing.
    #[schema(value_type = Vec<PatchOp>, min_items = 1, max_items = 1000)]
    pub ops: Vec<Value>,
    /// Apply only if the topology is at exactly this version when the mutation's turn comes.
    #[schema(minimum = 0)]
    pub if_version: Option<i64>,
}

/// What a batch created, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchOut {
    pub mutations: Vec<BatchItemOut>,
}

/// One created mutation: follow it with `GET /mutations/{id}` or its topology's events.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchItemOut {
    pub id: Uuid,
    pub topology_id: Uuid,
    /// Position in the topology's apply order, from 1.
    pub seq: i64,
}

/// Enqueue many mutations, for any topologies, in one request and one transaction.
#[utoipa::path(
    post,
    path = "/mutations/batch",
    tag = "mutations",
    params(
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$",
         description = "Makes a retried batch return the mutations the first one created"),
    ),
    request_body = BatchIn,
    responses(
        (status = 202, description = "Accepted; each applied later in its topology's seq order", body = BatchOut),
        (status = 200, description = "A retry with the same Idempotency-Key: the original batch", body = BatchOut),
        Refusals
    ),
    security(("bearer" = ["operator"]))
)]
pub(super) async fn enqueue_batch(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Body(input): Body<BatchIn>,
) -> Result<Response, ApiError> {
    validate(&app, &input)?;
    let key = idempotency_key(&headers)?;
    let hash = request_hash(&input);
    if let Some(key) = key
        && let Some(original) = find_batch(&app.pool, key, &hash).await?
    {
        return Ok((StatusCode::OK, Json(original)).into_response());
    }
    let trace = TraceContext::current();
    let mutations: Vec<NewMutation> = input
        .mutations
        .into_iter()
        .map(|item| NewMutation {
            topology_id: item.topology_id,
            ops: item.ops,
            if_version: item.if_version,
            actor: caller.subject.clone(),
            key: None,
            hash: Vec::new(),
            trace: trace.clone(),
        })
        .collect();
    match commit(&app, &mutations, key, &hash, &caller.subject).await {
        Err(ApiError::Conflict(_)) if key.is_some() => {
            // The same key committed concurrently: answer as its retry.
            let key = key.expect("checked");
            let original = find_batch(&app.pool, key, &hash)
                .await?
                .ok_or_else(|| ApiError::from(sqlx::Error::RowNotFound))?;
            Ok((StatusCode::OK, Json(original)).into_response())
        }
        Err(error) => Err(error),
        Ok(created) => Ok((StatusCode::ACCEPTED, Json(created)).into_response()),
    }
}

/// Every check on arrival, all-or-nothing: the first offending item is named by index.
fn validate(app: &AppState, input: &BatchIn) -> Result<(), ApiError> {
    let max = app.config.max_batch_mutations;
    if input.mutations.is_empty() {
        return Err(ApiError::Unprocessable(
            "mutations must hold at least one mutation".to_owned(),
        ));
    }
    if input.mutations.len() > max {
        return Err(ApiError::Unprocessable(format!(
            "mutations holds {} mutations; the limit is {max} (config key http.max_batch_mutations)",
            input.mutations.len()
        )));
    }
    for (index, item) in input.mutations.iter().enumerate() {
        patch::validate(&item.ops, app.config.max_ops_per_mutation, &app.documents)
            .map_err(|e| at(index, e))?;
        if item.if_version.is_some_and(|v| v < 0) {
            return Err(at(
                index,
                ApiError::Unprocessable("if_version must be 0 or greater".to_owned()),
            ));
        }
    }
    Ok(())
}

/// `error`, its message prefixed with the item it is about (`mutations[3]: …`).
fn at(index: usize, error: ApiError) -> ApiError {
    let named = |message: String| format!("mutations[{index}]: {message}");
    match error {
        ApiError::Unprocessable(m) => ApiError::Unprocessable(named(m)),
        ApiError::PayloadTooLarge(m) => ApiError::PayloadTooLarge(named(m)),
        ApiError::BadRequest(m) => ApiError::BadRequest(named(m)),
        other => other,
    }
}

/// SHA-256 of the whole request in canonical form.
fn request_hash(input: &BatchIn) -> Vec<u8> {
    let canonical: Vec<Value> = input
        .mutations
        .iter()
        .map(|item| {
            serde_json::json!([
                item.topology_id,
                item.ops.iter().map(json::canonical).collect::<Vec<_>>(),
                item.if_version
            ])
        })
        .collect();
    Sha256::digest(serde_json::to_vec(&canonical).expect("serializable")).to_vec()
}

/// One transaction: every topology locked, every mutation written, the batch's key
/// recorded. A missing topology refuses the whole batch (422 naming the item).
async fn commit(
    app: &AppState,
    mutations: &[NewMutation],
    key: Option<&str>,
    hash: &[u8],
    actor: &str,
) -> Result<BatchOut, ApiError> {
    let mut tx = OutboxTx::begin(&app.pool).await?;
    let ids: Vec<Uuid> = mutations.iter().map(|m| m.topology_id).collect();
    let mut locked = write::lock_topologies(&mut tx, &ids).await?;
    if let Some(index) = ids.iter().position(|id| !locked.contains_key(id)) {
        return Err(ApiError::Unprocessable(format!(
            "mutations[{index}]: topology {} does not exist; nothing was enqueued",
            ids[index]
        )));
    }
    let all: Vec<&NewMutation> = mutations.iter().collect();
    let stored = write::insert(&mut tx, &mut locked, &all).await?;
    let created = BatchOut {
        mutations: stored
            .into_iter()
            .map(|m| BatchItemOut {
                id: m.id,
                topology_id: m.topology_id,
                seq: m.seq,
            })
            .collect(),
    };
    if let Some(key) = key {
        record_batch(&mut tx, key, hash, &created, actor).await?;
    }
    tx.commit(&app.doorbell).await?;
    crate::metrics::work(
        Resource::Mutation,
        Outcome::Enqueued,
        created.mutations.len(),
    );
    Ok(created)
}

/// Records the batch under its key; a concurrent batch with the same key is a 409
/// (the caller answers with that one).
async fn record_batch(
    conn: &mut sqlx::PgConnection,
    key: &str,
    hash: &[u8],
    created: &BatchOut,
    actor: &str,
) -> Result<(), ApiError> {
    let ids: Vec<Uuid> = created.mutations.iter().map(|m| m.id).collect();
    let recorded = sqlx::query!(
        "insert into mutation_batches (idempotency_key, request_hash, mutation_ids, actor)
         values ($1, $2, $3, $4)",
        key,
        hash,
        &ids,
        actor,
    )
    .execute(conn)
    .await;
    match recorded {
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(ApiError::Conflict(
            format!("a batch with Idempotency-Key {key:?} was committed meanwhile"),
        )),
        other => other.map(|_| ()).map_err(ApiError::from),
    }
}

/// The batch a key already made: its mutations in request order, or 422 if the key
/// was used for another body.
async fn find_batch(pool: &PgPool, key: &str, hash: &[u8]) -> Result<Option<BatchOut>, ApiError> {
    let Some(batch) = sqlx::query!(
        "select request_hash, mutation_ids from mutation_batches where idempotency_key = $1",
        key,
    )
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    if batch.request_hash != hash {
        return Err(ApiError::Unprocessable(format!(
            "Idempotency-Key {key:?} was already used for a batch with a different body; use a new key for a new request"
        )));
    }
    let mutations = sqlx::query_as!(
        BatchItemOut,
        "select m.id, m.topology_id, m.seq
         from unnest($1::uuid[]) with ordinality as b(id, ord)
         join mutations m on m.id = b.id
         order by b.ord",
        &batch.mutation_ids,
    )
    .fetch_all(pool)
    .await?;
    Ok(Some(BatchOut { mutations }))
}
