//! Applying one mutation to a document, in memory. Pure: no I/O, no clock.

use serde_json::Value;
use switchyard_domain::json::Limits;
use switchyard_domain::patch::{self, PatchOperation};
use uuid::Uuid;

/// A pending mutation, as the mutator loads it.
#[derive(Clone, Debug)]
pub struct PendingMutation {
    pub id: Uuid,
    pub seq: i64,
    pub ops: Value,
    pub if_version: Option<i64>,
    pub actor: String,
    /// The W3C trace context of the request that enqueued it (none for a request
    /// without tracing); its apply runs as a child of it.
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

/// What became of one mutation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Applied; the topology is now at `version`.
    Applied { version: i64 },
    /// Not applied; the document is unchanged.
    Failed { error: String },
}

/// Applies `mutation` to `document` at `version`, all operations or none, with the
/// document's `limits` checked as each operation applies (see
/// [`switchyard_domain::patch`]). On success both are advanced; on failure neither
/// changes.
pub fn apply(
    document: &mut Value,
    version: &mut i64,
    mutation: &PendingMutation,
    limits: &Limits,
) -> Verdict {
    match next_document(document, *version, mutation, limits) {
        Ok(next) => {
            *document = next;
            *version += 1;
            Verdict::Applied { version: *version }
        }
        Err(error) => Verdict::Failed { error },
    }
}

fn next_document(
    document: &Value,
    version: i64,
    mutation: &PendingMutation,
    limits: &Limits,
) -> Result<Value, String> {
    if let Some(expected) = mutation.if_version
        && expected != version
    {
        return Err(format!(
            "version conflict: if_version is {expected} but the topology is at version {version}"
        ));
    }
    let ops = stored_operations(&mutation.ops)?;
    patch::apply(document, &ops, limits).map_err(|e| e.to_string())
}

/// The stored operations. Each was checked on arrival; one that no longer reads as
/// JSON Patch is named `ops[N]`, as everywhere else.
fn stored_operations(ops: &Value) -> Result<Vec<PatchOperation>, String> {
    let ops = ops
        .as_array()
        .ok_or("the stored operations are not a JSON array")?;
    ops.iter()
        .enumerate()
        .map(|(index, op)| {
            serde_json::from_value(op.clone()).map_err(|e| {
                format!("ops[{index}]: the stored operation is not valid JSON Patch: {e}")
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const LIMITS: Limits = Limits {
        max_bytes: 1024,
        max_depth: 16,
    };

    fn mutation(ops: Value, if_version: Option<i64>) -> PendingMutation {
        PendingMutation {
            id: Uuid::nil(),
            seq: 1,
            ops,
            if_version,
            actor: "t".into(),
            traceparent: None,
            tracestate: None,
        }
    }

    #[test]
    fn applies_all_operations_and_bumps_the_version() {
        let (mut doc, mut version) = (json!({"nodes": []}), 4);
        let m = mutation(
            json!([{"op": "add", "path": "/nodes/-", "value": "a"}, {"op": "add", "path": "/name", "value": "x"}]),
            Some(4),
        );
        assert_eq!(
            apply(&mut doc, &mut version, &m, &LIMITS),
            Verdict::Applied { version: 5 }
        );
        assert_eq!(doc, json!({"nodes": ["a"], "name": "x"}));
    }

    #[test]
    fn a_failing_operation_changes_nothing() {
        let (mut doc, mut version) = (json!({"a": 1}), 2);
        let m = mutation(
            json!([{"op": "replace", "path": "/a", "value": 2}, {"op": "test", "path": "/a", "value": 1}]),
            None,
        );
        let Verdict::Failed { error } = apply(&mut doc, &mut version, &m, &LIMITS) else {
            panic!("applied a failing patch");
        };
        assert!(error.contains("/a"), "{error}");
        assert_eq!((doc, version), (json!({"a": 1}), 2));
    }

    #[test]
    fn every_failure_names_the_operation_as_ops_n() {
        let (mut doc, mut version) = (json!({"a": 1}), 0);
        let failing = [
            json!([{"op": "test", "path": "/a", "value": 1}, {"op": "test", "path": "/a", "value": 2}]),
            json!([{"op": "add", "path": "/b", "value": 1}, {"op": "remove", "path": "/missing"}]),
            json!([{"op": "add", "path": "/b", "value": 1}, {"op": "frob", "path": "/a"}]),
        ];
        for ops in failing {
            let Verdict::Failed { error } =
                apply(&mut doc, &mut version, &mutation(ops, None), &LIMITS)
            else {
                panic!("applied a failing patch");
            };
            assert!(error.starts_with("ops[1]"), "{error}");
        }
    }

    #[test]
    fn if_version_mismatch_is_a_readable_conflict() {
        let (mut doc, mut version) = (json!({}), 7);
        let m = mutation(json!([{"op": "add", "path": "/a", "value": 1}]), Some(3));
        assert_eq!(
            apply(&mut doc, &mut version, &m, &LIMITS),
            Verdict::Failed {
                error: "version conflict: if_version is 3 but the topology is at version 7".into()
            }
        );
    }

    #[test]
    fn the_document_size_limit_holds_after_apply() {
        let (mut doc, mut version) = (json!({}), 0);
        let m = mutation(
            json!([{"op": "add", "path": "/big", "value": "x".repeat(100)}]),
            None,
        );
        let small = Limits {
            max_bytes: 50,
            ..LIMITS
        };
        assert!(matches!(
            apply(&mut doc, &mut version, &m, &small),
            Verdict::Failed { .. }
        ));
        assert_eq!(doc, json!({}));
    }
}
