//! RFC 6902 JSON Patch at the door: reading a mutation request in either media type,
//! and validating its operations.
//!
//! ## Media types
//! - `application/json` (or another `+json` type): `{"ops": [...], "if_version": N}`.
//! - `application/json-patch+json` (RFC 6902 §6): the bare array of operations. It
//!   has no place for `if_version`, so such a mutation has none; a `test` operation is
//!   the RFC's own way to make it conditional. `If-Match` is refused rather than
//!   ignored, for either type, so nobody believes a mutation conditional that is not.
//!
//! ## Validation
//! A mutation's operations are checked here, before anything is written, so a typo
//! in an operation is a 422 naming the operation rather than a failed mutation later.
//! Whether the operations *apply* depends on the document at apply time and is the
//! mutator's call.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use serde_json::Value;
use switchyard_domain::json::Limits;
use switchyard_domain::patch::{self, PatchOperation};

use crate::error::ApiError;
use crate::routes::mutations::MutationIn;

/// RFC 6902's media type: the body is the bare array of operations.
pub const JSON_PATCH: &str = "application/json-patch+json";

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

/// Members each operation must have, besides `op`.
fn required_members(op: &str) -> Option<&'static [&'static str]> {
    match op {
        "add" | "replace" | "test" => Some(&["path", "value"]),
        "remove" => Some(&["path"]),
        "move" | "copy" => Some(&["from", "path"]),
        _ => None,
    }
}

/// Checks every operation: a known `op`, exactly its members, valid JSON Pointers, and
/// nothing the document's `limits` can never hold ([`patch::check_operation`]).
pub fn validate(ops: &[Value], max_ops: usize, limits: &Limits) -> Result<(), ApiError> {
    if ops.is_empty() {
        return Err(invalid(
            "ops must contain at least one operation".to_owned(),
        ));
    }
    if ops.len() > max_ops {
        return Err(invalid(format!(
            "ops has {} operations; the limit is {max_ops} (config key http.max_ops_per_mutation)",
            ops.len()
        )));
    }
    ops.iter().enumerate().try_for_each(|(i, op)| {
        validate_one(op, limits).map_err(|why| invalid(format!("ops[{i}]: {why}")))
    })
}

fn validate_one(op: &Value, limits: &Limits) -> Result<(), String> {
    let members = op
        .as_object()
        .ok_or_else(|| "an operation must be a JSON object".to_owned())?;
    let name = members
        .get("op")
        .and_then(Value::as_str)
        .ok_or_else(|| "missing string member `op`".to_owned())?;
    let required = required_members(name).ok_or_else(|| {
        format!("unknown op {name:?}; expected one of add, remove, replace, move, copy, test")
    })?;
    if let Some(missing) = required.iter().find(|m| !members.contains_key(**m)) {
        return Err(format!("op {name:?} requires member `{missing}`"));
    }
    if let Some(extra) = members
        .keys()
        .find(|k| k.as_str() != "op" && !required.contains(&k.as_str()))
    {
        return Err(format!("unknown member `{extra}` for op {name:?}"));
    }
    let op = serde_json::from_value::<PatchOperation>(op.clone()).map_err(|e| e.to_string())?;
    patch::check_operation(&op, limits)
}

fn invalid(message: String) -> ApiError {
    ApiError::Unprocessable(message)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const LIMITS: Limits = Limits {
        max_bytes: 1024,
        max_depth: 8,
    };

    fn message(ops: Value) -> String {
        validate(ops.as_array().unwrap(), 10, &LIMITS)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn accepts_every_rfc6902_operation() {
        let ops = json!([
            {"op": "add", "path": "/a", "value": 1},
            {"op": "remove", "path": "/a"},
            {"op": "replace", "path": "/b", "value": {"x": 1}},
            {"op": "move", "from": "/b", "path": "/c"},
            {"op": "copy", "from": "/c", "path": "/d"},
            {"op": "test", "path": "/d", "value": null}
        ]);
        validate(ops.as_array().unwrap(), 10, &LIMITS).unwrap();
    }

    #[test]
    fn names_the_bad_operation() {
        assert_eq!(
            message(json!([{"op": "add", "path": "/a", "value": 1}, {"op": "frob", "path": "/a"}])),
            "ops[1]: unknown op \"frob\"; expected one of add, remove, replace, move, copy, test"
        );
        assert_eq!(
            message(json!([{"op": "add", "path": "/a"}])),
            "ops[0]: op \"add\" requires member `value`"
        );
        assert_eq!(
            message(json!([{"op": "remove", "path": "/a", "value": 3}])),
            "ops[0]: unknown member `value` for op \"remove\""
        );
        assert!(message(json!([{"op": "remove", "path": "no-slash"}])).starts_with("ops[0]: "));
        assert!(message(json!([])).contains("at least one"));
        assert!(message(json!([1])).contains("JSON object"));
    }

    #[test]
    fn refuses_numbers_postgres_cannot_round_trip() {
        let err =
            message(json!([{"op": "add", "path": "/a", "value": {"x": [1.7976931348623157e308]}}]));
        assert!(err.contains("within ±1e300"), "{err}");
        validate(
            &[json!({"op": "add", "path": "/a", "value": 1e299})],
            10,
            &LIMITS,
        )
        .unwrap();
    }

    #[test]
    fn refuses_what_the_document_limits_can_never_hold() {
        let deep = (0..8).fold(json!(1), |inner, _| json!([inner]));
        let err = message(json!([{"op": "add", "path": "/a", "value": deep}]));
        assert!(
            err.starts_with("ops[0]: `value` at `path` is nested 9 levels deep"),
            "{err}"
        );
        assert!(err.contains("http.max_document_depth"), "{err}");
        let err = message(json!([{"op": "remove", "path": "/a".repeat(9)}]));
        assert!(err.contains("`path` has 9 tokens"), "{err}");
        let err = message(json!([{"op": "replace", "path": "", "value": "x".repeat(1100)}]));
        assert!(err.contains("http.max_document_bytes"), "{err}");
    }

    #[test]
    fn enforces_the_operation_limit() {
        let ops: Vec<Value> = (0..11)
            .map(|i| json!({"op": "add", "path": format!("/k{i}"), "value": i}))
            .collect();
        let err = validate(&ops, 10, &LIMITS).unwrap_err().to_string();
        assert!(err.contains("limit is 10"), "{err}");
    }
}
