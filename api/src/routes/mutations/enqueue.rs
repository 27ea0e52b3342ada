//! `POST /topologies/{id}/mutations`: validates the operations, then commits the
//! mutation row and its `enqueued` outbox event in one transaction (see the ordering
//! in the parent module's docs), or finds the original of a retried `Idempotency-Key`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use switchyard_bus::payloads::{MutationEnqueued, TopologyStatus};
use switchyard_bus::{Doorbell, Event, OutboxTx};
use switchyard_domain::json;
use switchyard_domain::status;
use uuid::Uuid;

use super::body::{JsonPatch, MutationIn};
use super::{MutationOut, MutationStatus};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Path;
use crate::openapi::Refusals;
use crate::routes::topologies;
use crate::{AppState, patch};
use switchyard_bus::{Payload, Source};

const SOURCE: Source = Source::Api;
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A stored mutation plus the fingerprint of the request that created it.
struct KeyedMutation {
    mutation: MutationOut,
    request_hash: Option<Vec<u8>>,
}

/// What an enqueue did.
enum Enqueued {
    /// A new mutation, committed and announced.
    Created(MutationOut),
    /// A retried request: the original mutation.
    Replayed(MutationOut),
}

/// Enqueue a mutation. Answers as soon as it is committed; the mutator applies it.
#[utoipa::path(
    post,
    path = "/topologies/{id}/mutations",
    tag = "mutations",
    params(
        ("id" = Uuid, Path, description = "Topology id"),
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$",
         description = "Makes a retried request return the original mutation"),
    ),
    request_body(
        description = "The operations: `{\"ops\": [...], \"if_version\": N}` as `application/json`, or the bare RFC 6902 array as `application/json-patch+json` (then without `if_version`; a `test` operation is its condition). `If-Match` is refused with 400.",
        content(
            (MutationIn = "application/json"),
            (JsonPatch = "application/json-patch+json"),
        )
    ),
    responses(
        (status = 202, description = "Accepted; applied later in seq order", body = MutationOut),
        (status = 200, description = "A retry with the same Idempotency-Key: the original", body = MutationOut),
        Refusals
    ),
    security(("bearer" = ["operator"]))
)]
pub(super) async fn enqueue(
    State(app): State<AppState>,
    Path(topology_id): Path<Uuid>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    input: MutationIn,
) -> Result<Response, ApiError> {
    patch::validate(&input.ops, app.config.max_ops_per_mutation, &app.documents)?;
    if input.if_version.is_some_and(|v| v < 0) {
        return Err(ApiError::Unprocessable(
            "if_version must be 0 or greater".to_owned(),
        ));
    }
    let key = idempotency_key(&headers)?;
    let hash = request_hash(&input);
    let new = NewMutation {
        topology_id,
        input: &input,
        actor: &caller.subject,
        key,
        hash,
    };
    match insert(&app.pool, &app.doorbell, new).await? {
        Enqueued::Created(mutation) => {
            let location = format!("/api/v1/mutations/{}", mutation.id);
            Ok((
                StatusCode::ACCEPTED,
                [(header::LOCATION, location)],
                Json(mutation),
            )
                .into_response())
        }
        Enqueued::Replayed(mutation) => Ok((StatusCode::OK, Json(mutation)).into_response()),
    }
}

/// SHA-256 of the request in canonical form, so a retry that spells a number
/// differently (`2.0` for `2`) is the same request ([`json::canonical`]).
fn request_hash(input: &MutationIn) -> Vec<u8> {
    let canonical = MutationIn {
        ops: input.ops.iter().map(json::canonical).collect(),
        if_version: input.if_version,
    };
    Sha256::digest(serde_json::to_vec(&canonical).expect("serializable")).to_vec()
}

/// The `Idempotency-Key` header, if any: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::BadRequest("Idempotency-Key must be 1 to 255 visible ASCII characters".to_owned())
    };
    let key = value.to_str().map_err(|_| bad())?;
    let visible = key.bytes().all(|b| b.is_ascii_graphic());
    if key.is_empty() || key.len() > 255 || !visible {
        return Err(bad());
    }
    Ok(Some(key))
}

/// A validated request to enqueue, ready to write.
struct NewMutation<'a> {
    topology_id: Uuid,
    input: &'a MutationIn,
    /// The token subject, recorded in the audit trail.
    actor: &'a str,
    key: Option<&'a str>,
    /// SHA-256 of the canonical body; stored only with an idempotency key.
    hash: Vec<u8>,
}

/// Commits the mutation and its `enqueued` event together, or finds the original
/// for a retried idempotency key.
async fn insert(
    pool: &PgPool,
    doorbell: &Doorbell,
    new: NewMutation<'_>,
) -> Result<Enqueued, ApiError> {
    if let Some(key) = new.key
        && let Some(existing) = find_by_key(pool, new.topology_id, key).await?
    {
        return replay(existing, key, &new.hash);
    }
    let mut tx = OutboxTx::begin(pool).await?;
    let allocated = next_seq(&mut tx, new.topology_id).await?;
    let mutation = match (insert_row(&mut tx, &new, allocated.seq).await, new.key) {
        // A concurrent request with the same key committed first: answer with its result.
        (Err(sqlx::Error::Database(e)), Some(key)) if e.is_unique_violation() => {
            tx.rollback().await?;
            let existing = find_by_key(pool, new.topology_id, key).await?;
            return existing.map_or_else(
                || Err(sqlx::Error::RowNotFound.into()),
                |m| replay(m, key, &new.hash),
            );
        }
        (inserted, _) => inserted?,
    };
    let mut events = vec![enqueued_event(&mutation)];
    if allocated.was_idle {
        let status = TopologyStatus {
            topology_id: new.topology_id,
            version: allocated.version,
            status: status::TopologyStatus::Pending,
            last_seq: None,
        };
        events.push(status.event(SOURCE));
    }
    tx.stage(&events).await?;
    tx.commit(doorbell).await?;
    Ok(Enqueued::Created(mutation))
}

/// A seq handed out, and what the topology looked like when it was.
struct Allocated {
    seq: i64,
    version: i64,
    /// The topology was idle, so this enqueue flips it to pending (an announced change).
    was_idle: bool,
}

/// The topology's next seq. The row lock taken here is held until commit, which is
/// what makes seqs commit in order (see the module docs).
async fn next_seq(conn: &mut PgConnection, topology_id: Uuid) -> Result<Allocated, ApiError> {
    // One round trip: the CTE locks the row and, after any wait, sees its latest
    // version, so `status` is what this enqueue changes from.
    let row = sqlx::query!(
        r#"with locked as (
             select id, version, status from topologies where id = $1 for no key update
         )
         update topologies t
         set last_seq = t.last_seq + 1, status = 'pending', updated_at = now()
         from locked where t.id = locked.id
         returning t.last_seq, locked.version, locked.status as "status: status::TopologyStatus""#,
        topology_id,
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| topologies::not_found(topology_id))?;
    Ok(Allocated {
        seq: row.last_seq,
        version: row.version,
        was_idle: row.status == status::TopologyStatus::Idle,
    })
}

async fn insert_row(
    conn: &mut PgConnection,
    new: &NewMutation<'_>,
    seq: i64,
) -> Result<MutationOut, sqlx::Error> {
    sqlx::query_as!(
        MutationOut,
        r#"insert into mutations
           (id, topology_id, seq, ops, if_version, actor, idempotency_key, request_hash)
         values ($1, $2, $3, $4, $5, $6, $7, $8)
         returning id, topology_id, seq, status as "status: MutationStatus", ops, if_version, error, applied_version, actor, idempotency_key, created_at, finished_at"#,
        Uuid::now_v7(),
        new.topology_id,
        seq,
        Value::Array(new.input.ops.clone()),
        new.input.if_version,
        new.actor,
        new.key,
        new.key.map(|_| new.hash.as_slice()),
    )
    .fetch_one(conn)
    .await
}

fn enqueued_event(mutation: &MutationOut) -> Event {
    MutationEnqueued {
        mutation_id: mutation.id,
        topology_id: mutation.topology_id,
        seq: mutation.seq,
        if_version: mutation.if_version,
        ops_count: mutation.ops.as_array().map_or(0, Vec::len),
        reannounced: false,
    }
    .event(SOURCE)
}

async fn find_by_key(
    pool: &PgPool,
    topology_id: Uuid,
    key: &str,
) -> Result<Option<KeyedMutation>, ApiError> {
    let found = sqlx::query!(
        r#"select request_hash, id, topology_id, seq, status as "status: MutationStatus", ops, if_version, error, applied_version, actor, idempotency_key, created_at, finished_at from mutations where topology_id = $1 and idempotency_key = $2"#,
        topology_id,
        key,
    )
    .fetch_optional(pool)
    .await?
    .map(|row| KeyedMutation {
        mutation: MutationOut {
            id: row.id,
            topology_id: row.topology_id,
            seq: row.seq,
            status: row.status,
            ops: row.ops,
            if_version: row.if_version,
            error: row.error,
            applied_version: row.applied_version,
            actor: row.actor,
            idempotency_key: row.idempotency_key,
            created_at: row.created_at,
            finished_at: row.finished_at,
        },
        request_hash: row.request_hash,
    });
    Ok(found)
}

/// The original mutation for a retried request, or 422 if the key was reused for another body.
fn replay(existing: KeyedMutation, key: &str, hash: &[u8]) -> Result<Enqueued, ApiError> {
    if existing.request_hash.as_deref() == Some(hash) {
        Ok(Enqueued::Replayed(existing.mutation))
    } else {
        Err(ApiError::Unprocessable(format!(
            "Idempotency-Key {key:?} was already used for mutation {} with a different body; use a new key for a new request",
            existing.mutation.id
        )))
    }
}
