//! `POST /topologies/{id}/mutations`: validates the operations, then hands the
//! mutation to the group commit ([`super::group`]), which commits it with its
//! `enqueued` outbox event, together with whatever other requests arrived meanwhile,
//! or finds the original of a retried `Idempotency-Key`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use sha2::{Digest, Sha256};
use switchyard_bus::TraceContext;
use switchyard_domain::json;
use uuid::Uuid;

use super::MutationOut;
use super::body::{JsonPatch, MutationIn};
use super::group::Enqueued;
use super::write::NewMutation;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Path;
use crate::openapi::Refusals;
use crate::{AppState, patch};

const IDEMPOTENCY_KEY: &str = "idempotency-key";

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
    let arriving = app.enqueue.arriving();
    patch::validate(&input.ops, app.config.max_ops_per_mutation, &app.documents)?;
    if input.if_version.is_some_and(|v| v < 0) {
        return Err(ApiError::Unprocessable(
            "if_version must be 0 or greater".to_owned(),
        ));
    }
    let key = idempotency_key(&headers)?.map(str::to_owned);
    let hash = request_hash(&input);
    let new = NewMutation {
        topology_id,
        ops: input.ops,
        if_version: input.if_version,
        actor: caller.subject,
        key,
        hash,
        // Taken here: the group commit runs in a task of its own, outside this span.
        trace: TraceContext::current(),
    };
    match app.enqueue.submit(new, arriving).await? {
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
pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
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
