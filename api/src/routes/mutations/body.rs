//! The body of `POST /topologies/{id}/mutations`: [`MutationIn`], the types that
//! document it, and reading it in either media type.
//!
//! ## Media types
//! - `application/json` (or another `+json` type): `{"ops": [...], "if_version": N}`.
//! - `application/json-patch+json` (RFC 6902 §6, [`JSON_PATCH`]): the bare array of
//!   operations. It has no place for `if_version`, so such a mutation has none; a
//!   `test` operation is the RFC's own way to make it conditional. `If-Match` is
//!   refused rather than ignored, for either type, so nobody believes a mutation
//!   conditional that is not.
//!
//! The operations are only read here; [`crate::patch::validate`] checks them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::patch::JSON_PATCH;

/// Body of `POST /topologies/{id}/mutations` as `application/json`. As
/// `application/json-patch+json` the body is the bare `ops` array, and there is no
/// `if_version`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MutationIn {
    /// RFC 6902 operations, applied all-or-nothing.
    #[schema(value_type = Vec<PatchOp>, min_items = 1, max_items = 1000)]
    pub ops: Vec<Value>,
    /// Apply only if the topology is at exactly this version when the mutation's turn comes.
    #[schema(minimum = 0)]
    pub if_version: Option<i64>,
}

/// An RFC 6902 JSON Patch document: the operations, applied all-or-nothing (the body
/// as `application/json-patch+json`).
#[derive(ToSchema)]
#[schema(value_type = Vec<PatchOp>, min_items = 1, max_items = 1000)]
#[allow(dead_code)]
pub struct JsonPatch(Vec<Value>);

/// One RFC 6902 operation, as documented; requests are validated by
/// [`crate::patch::validate`].
#[derive(ToSchema)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
#[allow(dead_code)]
pub enum PatchOp {
    Add { path: Pointer, value: AnyValue },
    Remove { path: Pointer },
    Replace { path: Pointer, value: AnyValue },
    Move { from: Pointer, path: Pointer },
    Copy { from: Pointer, path: Pointer },
    Test { path: Pointer, value: AnyValue },
}

/// An RFC 6901 JSON Pointer, for example `/nodes/r7` or `/links/-`.
#[derive(ToSchema)]
#[schema(value_type = String, pattern = "^(/([^/~]|~[01])*)*$")]
#[allow(dead_code)]
pub struct Pointer(String);

/// Any JSON value.
#[derive(ToSchema)]
#[schema(value_type = Value)]
#[allow(dead_code)]
pub struct AnyValue(Value);

/// The two shapes a mutation request arrives in.
enum Shape {
    /// `{"ops": [...], "if_version": N}`, as `application/json`.
    Object,
    /// The bare array, as `application/json-patch+json`.
    Array,
}

/// Which shape the `Content-Type` announces: 415 for anything but JSON.
fn shape(headers: &HeaderMap) -> Result<Shape, ApiError> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|essence| essence.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if essence == JSON_PATCH {
        Ok(Shape::Array)
    } else if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(Shape::Object)
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "expected `Content-Type: application/json` with {{\"ops\": [...]}}, or `Content-Type: {JSON_PATCH}` with the bare RFC 6902 array"
        )))
    }
}

/// Reads a mutation request in either shape (see the module docs). A body in the other
/// shape than its `Content-Type` says is a 422 saying which to send.
impl<S: Send + Sync> FromRequest<S> for MutationIn {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if request.headers().contains_key(header::IF_MATCH) {
            return Err(ApiError::BadRequest(
                "If-Match is not supported here: make a mutation conditional with `if_version` in {\"ops\": [...], \"if_version\": N}, or with a `test` operation".to_owned(),
            ));
        }
        let shape = shape(request.headers())?;
        let body = Bytes::from_request(request, state).await?;
        let opens_with = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
        match (shape, opens_with) {
            (Shape::Object, Some(b'[')) => Err(ApiError::Unprocessable(format!(
                "the body is a bare array of operations: send {{\"ops\": [...]}} as application/json, or the array as {JSON_PATCH}"
            ))),
            (Shape::Array, Some(b'{')) => Err(ApiError::Unprocessable(format!(
                "with Content-Type: {JSON_PATCH} the body is the bare RFC 6902 array of operations; send {{\"ops\": [...]}} as application/json"
            ))),
            (Shape::Object, _) => Ok(Json::<MutationIn>::from_bytes(&body)?.0),
            (Shape::Array, _) => Ok(MutationIn {
                ops: Json::<Vec<Value>>::from_bytes(&body)?.0,
                if_version: None,
            }),
        }
    }
}
