//! Applying one mutation to a document, in memory. Pure: no I/O, no clock.

use serde_json::Value;
use uuid::Uuid;

/// A pending mutation, as the mutator loads it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct PendingMutation {
    pub id: Uuid,
    pub seq: i64,
    pub ops: Value,
    pub if_version: Option<i64>,
    pub actor: String,
}

/// What became of one mutation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Applied; the topology is now at `version`.
    Applied { version: i64 },
    /// Not applied; the document is unchanged.
    Failed { error: String },
}

/// Applies `mutation` to `document` at `version`, all operations or none.
/// On success both are advanced; on failure neither changes.
pub fn apply(
    document: &mut Value,
    version: &mut i64,
    mutation: &PendingMutation,
    max_document_bytes: usize,
) -> Verdict {
    match next_document(document, *version, mutation, max_document_bytes) {
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
    max_document_bytes: usize,
) -> Result<Value, String> {
    if let Some(expected) = mutation.if_version
        && expected != version
    {
        return Err(format!(
            "version conflict: if_version is {expected} but the topology is at version {version}"
        ));
    }
    let ops: Vec<json_patch::PatchOperation> = serde_json::from_value(mutation.ops.clone())
        .map_err(|e| format!("stored operations are not valid JSON Patch: {e}"))?;
    // Work on a copy so a failure part-way leaves the document untouched.
    let mut next = document.clone();
    json_patch::patch(&mut next, &ops).map_err(|e| e.to_string())?;
    let size = serde_json::to_vec(&next).map_or(usize::MAX, |v| v.len());
    if size > max_document_bytes {
        return Err(format!(
            "the document would grow to {size} bytes; the limit is {max_document_bytes}"
        ));
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn mutation(ops: Value, if_version: Option<i64>) -> PendingMutation {
        PendingMutation {
            id: Uuid::nil(),
            seq: 1,
            ops,
            if_version,
            actor: "t".into(),
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
            apply(&mut doc, &mut version, &m, 1024),
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
        let Verdict::Failed { error } = apply(&mut doc, &mut version, &m, 1024) else {
            panic!("applied a failing patch");
        };
        assert!(error.contains("/a"), "{error}");
        assert_eq!((doc, version), (json!({"a": 1}), 2));
    }

    #[test]
    fn if_version_mismatch_is_a_readable_conflict() {
        let (mut doc, mut version) = (json!({}), 7);
        let m = mutation(json!([{"op": "add", "path": "/a", "value": 1}]), Some(3));
        assert_eq!(
            apply(&mut doc, &mut version, &m, 1024),
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
        assert!(matches!(
            apply(&mut doc, &mut version, &m, 50),
            Verdict::Failed { .. }
        ));
        assert_eq!(doc, json!({}));
    }
}
