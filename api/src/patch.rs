//! RFC 6902 JSON Patch at the door: its media type, and validating a mutation's
//! operations. (Reading a mutation request in either media type is the route's job:
//! `routes::mutations`.)
//!
//! ## Validation
//! A mutation's operations are checked here, before anything is written, so a typo
//! in an operation is a 422 naming the operation rather than a failed mutation later.
//! Whether the operations *apply* depends on the document at apply time and is the
//! mutator's call.

use serde_json::Value;
use switchyard_domain::json::Limits;
use switchyard_domain::patch::{self, PatchOperation};

use crate::error::ApiError;

/// RFC 6902's media type (§6): the body is the bare array of operations.
pub const JSON_PATCH: &str = "application/json-patch+json";

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
    if has_nul(op) {
        // Postgres text and jsonb cannot hold it: refused on arrival, so a group commit
        // or a bulk enqueue never meets it in the database.
        return Err("strings must not contain the NUL character (\\u0000)".to_owned());
    }
    let op = serde_json::from_value::<PatchOperation>(op.clone()).map_err(|e| e.to_string())?;
    patch::check_operation(&op, limits)
}

/// Whether any string or member name in `value` holds U+0000.
fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(members) => members.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
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
    fn refuses_nul_anywhere_in_an_operation() {
        assert!(
            message(json!([{"op": "add", "path": "/a", "value": {"k": ["x\u{0}"]}}]))
                .starts_with("ops[0]: strings must not contain the NUL")
        );
        assert!(
            message(json!([{"op": "add", "path": "/a", "value": {"k\u{0}": 1}}])).contains("NUL")
        );
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
        assert!(err.contains("documents.max_depth"), "{err}");
        let err = message(json!([{"op": "remove", "path": "/a".repeat(9)}]));
        assert!(err.contains("`path` has 9 tokens"), "{err}");
        let err = message(json!([{"op": "replace", "path": "", "value": "x".repeat(1100)}]));
        assert!(err.contains("documents.max_bytes"), "{err}");
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
