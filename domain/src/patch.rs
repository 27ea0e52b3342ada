//! RFC 6902 JSON Patch, applied all-or-nothing, with the document's [`Limits`]
//! checked as each operation applies rather than after the last.
//!
//! ## Why per operation
//! One `copy` of the document into itself doubles it: twenty such operations in a
//! 1 KB request would build a document of gigabytes before a check at the end could
//! refuse it. Here the size is tracked as an upper bound (the exact size at the last
//! measurement plus what each operation can add), and measured exactly once the bound
//! passes the limit. Memory therefore stays within a small multiple of
//! `max_bytes`, and the first operation that takes the document past a limit fails,
//! naming itself. A `copy`, the one operation that can double the document, is refused
//! before it is made when even the least it adds passes the limit.
//!
//! The work is bounded too: measuring is one encoding pass, at most one per operation,
//! the same order as what RFC 6902 itself costs (a `copy` clones its value), so a
//! mutation costs at most about `max_ops_per_mutation × max_bytes` bytes of passes.
//!
//! ## What is checked where
//! - On arrival, [`check_operation`]: what one operation can never do within the limits
//!   (a path deeper than the limit, a value too deep, too large or with a number out of
//!   range), whatever the document.
//! - On apply, [`apply`]: the depth a value lands at, the document's size after each
//!   operation, and `test` with RFC 6902 §4.6 equality ([`json::equal`]).

pub use json_patch::PatchOperation;
use json_patch::jsonptr::Pointer;
use serde_json::Value;

use crate::json::{self, LimitError, Limits};

/// Most characters of a path quoted in an error message.
const QUOTED_PATH_CHARS: usize = 120;

/// Why a patch did not apply: the failing operation and the reason. Displayed as
/// `ops[2] failed at path '/nodes/r7': there is no value at this path` (the index as in the
/// request, like the 422s on arrival).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("ops[{index}] failed at path '{path}': {reason}")]
pub struct PatchError {
    /// 0-based position of the operation in the patch.
    pub index: usize,
    /// The operation's `path`, cut to 120 characters.
    pub path: String,
    pub reason: String,
}

/// Applies `ops` to a copy of `document` and returns it; on any failure the document
/// is as it was (the copy is dropped). `document` must be within `limits`.
pub fn apply(
    document: &Value,
    ops: &[PatchOperation],
    limits: &Limits,
) -> Result<Value, PatchError> {
    let mut next = document.clone();
    let mut size = SizeBound::exact(json::encoded_len(document));
    for (index, op) in ops.iter().enumerate() {
        apply_one(&mut next, op, limits, &mut size).map_err(|reason| PatchError {
            index,
            path: json::excerpt(op.path().as_str(), QUOTED_PATH_CHARS),
            reason,
        })?;
    }
    Ok(next)
}

fn apply_one(
    document: &mut Value,
    op: &PatchOperation,
    limits: &Limits,
    size: &mut SizeBound,
) -> Result<(), String> {
    let growth = match growth(document, op, limits)? {
        Some(growth) => growth,
        None => return Ok(()),
    };
    if let PatchOperation::Copy(copy) = op {
        // The one operation that can double the document: refused before it is made.
        size.before_copy(document, copy, growth, limits)?;
    }
    // On a copy of the caller's document, so a half-done operation is simply dropped.
    json_patch::patch_unsafe(document, std::slice::from_ref(op))
        .map_err(|error| explain(op, &error.kind))?;
    size.grow(growth, document, limits)
        .map_err(|error| format!("the document {error}"))
}

/// json_patch's error for `op`, in words that say what is wrong with the path:
/// RFC 6902 §4 requires the target of `remove` and `replace` (and `test`) to exist,
/// and the parent of an `add`'s target to exist (an array index at most its length).
fn explain(op: &PatchOperation, kind: &json_patch::PatchErrorKind) -> String {
    use json_patch::PatchErrorKind;
    match (op, kind) {
        (
            PatchOperation::Add(_) | PatchOperation::Copy(_) | PatchOperation::Move(_),
            PatchErrorKind::InvalidPointer,
        ) => NO_PARENT.to_owned(),
        (_, PatchErrorKind::InvalidPointer) => NO_VALUE.to_owned(),
        (_, PatchErrorKind::InvalidFromPointer) => NO_FROM.to_owned(),
        (_, other) => other.to_string(),
    }
}

/// A `remove`, `replace` or `test` whose target does not exist.
const NO_VALUE: &str = "there is no value at this path";
/// An `add`, `copy` or `move` whose target's parent does not exist.
const NO_PARENT: &str = "this path's parent does not exist, or its array index is past the end";
/// A `copy` or `move` whose `from` does not exist.
const NO_FROM: &str = "there is no value at the \"from\" path";

/// The most `op` can add to the document's size, after checking the depth its value
/// lands at; `None` for a `test`, which it settles here.
fn growth(document: &Value, op: &PatchOperation, limits: &Limits) -> Result<Option<usize>, String> {
    let growth = match op {
        PatchOperation::Test(test) => {
            let target = document.pointer(test.path.as_str()).ok_or(NO_VALUE)?;
            return if json::equal(target, &test.value) {
                Ok(None)
            } else {
                Err("value did not match".to_owned())
            };
        }
        PatchOperation::Remove(_) => 0,
        PatchOperation::Add(add) => placed(&add.path, &add.value, limits)? + member_len(&add.path),
        PatchOperation::Replace(replace) => placed(&replace.path, &replace.value, limits)?,
        // Checked before the copy is made, so an oversized one is never built.
        PatchOperation::Copy(copy) => {
            placed(&copy.path, source(document, &copy.from)?, limits)? + member_len(&copy.path)
        }
        PatchOperation::Move(mv) => {
            placed(&mv.path, source(document, &mv.from)?, limits)?;
            member_len(&mv.path)
        }
    };
    Ok(Some(growth))
}

/// The value a `copy` or `move` takes, or json_patch's own error for a bad `from`.
fn source<'d>(document: &'d Value, from: &Pointer) -> Result<&'d Value, String> {
    document
        .pointer(from.as_str())
        .ok_or_else(|| NO_FROM.to_owned())
}

/// Checks where a value would land: its depth plus the path's. Returns its encoded
/// size, the most it can add to the document.
fn placed(path: &Pointer, value: &Value, limits: &Limits) -> Result<usize, String> {
    limits
        .check_depth(path.count() + json::depth(value))
        .map_err(|error| format!("the value {error}"))?;
    Ok(json::encoded_len(value))
}

/// The most a new member named by `path`'s last token adds besides its value: the
/// quoted name, `:` and `,`.
fn member_len(path: &Pointer) -> usize {
    path.last()
        .map_or(0, |token| json::encoded_len(&token.decoded()) + 2)
}

/// The document's encoded size, known to be at most `bound`.
struct SizeBound {
    bound: usize,
}

impl SizeBound {
    fn exact(bytes: usize) -> Self {
        Self { bound: bytes }
    }

    /// Before a copy that could pass the limit: measures the document exactly, and
    /// fails if even the least the copy adds (the copied value, less a member it
    /// replaces) takes it past the limit.
    fn before_copy(
        &mut self,
        document: &Value,
        copy: &json_patch::CopyOperation,
        growth: usize,
        limits: &Limits,
    ) -> Result<(), String> {
        if self.bound.saturating_add(growth) <= limits.max_bytes {
            return Ok(());
        }
        self.bound = json::encoded_len(document);
        let copied = document
            .pointer(copy.from.as_str())
            .map_or(0, json::encoded_len);
        // What the copy replaces: a member of an object, or the whole document.
        let replaced = match copy.path.split_back() {
            None => Some(document),
            Some((parent, last)) => document
                .pointer(parent.as_str())
                .and_then(Value::as_object)
                .and_then(|members| members.get(last.decoded().as_ref())),
        }
        .map_or(0, json::encoded_len);
        let least = (self.bound + copied).saturating_sub(replaced);
        if least > limits.max_bytes {
            return Err(format!(
                "the document would be at least {least} bytes; the limit is {} (documents.max_bytes)",
                limits.max_bytes
            ));
        }
        Ok(())
    }

    /// Adds what an operation could have added; measures exactly only when the bound
    /// passes the limit, and fails if the exact size does too.
    fn grow(&mut self, growth: usize, document: &Value, limits: &Limits) -> Result<(), LimitError> {
        self.bound = self.bound.saturating_add(growth);
        if self.bound > limits.max_bytes {
            let exact = json::encoded_len(document);
            limits.check_size(exact)?;
            self.bound = exact;
        }
        Ok(())
    }
}

/// What `op` can never do within `limits`, whatever the document: a pointer deeper than
/// the depth limit, or a value that would land too deep, could only sit in a document
/// too large, or holds a number out of range. The message names the member at fault.
pub fn check_operation(op: &PatchOperation, limits: &Limits) -> Result<(), String> {
    let pointer = |member: &str, pointer: &Pointer| {
        limits.check_depth(pointer.count()).map_err(|_| {
            format!(
                "`{member}` has {} tokens; the limit is {} (documents.max_depth)",
                pointer.count(),
                limits.max_depth
            )
        })
    };
    pointer("path", op.path())?;
    if let PatchOperation::Copy(json_patch::CopyOperation { from, .. })
    | PatchOperation::Move(json_patch::MoveOperation { from, .. }) = op
    {
        pointer("from", from)?;
    }
    let value = match op {
        PatchOperation::Add(add) => &add.value,
        PatchOperation::Replace(replace) => &replace.value,
        PatchOperation::Test(test) => &test.value,
        _ => return Ok(()),
    };
    json::check_numbers(value).map_err(|error| format!("`value` {error}"))?;
    limits
        .check_depth(op.path().count() + json::depth(value))
        .map_err(|error| format!("`value` at `path` {error}"))?;
    limits
        .check_size(least_document_len(op.path(), value))
        .map_err(|error| format!("a document holding `value` at `path` {error}"))
}

/// The smallest document that holds `value` at `path`: the value wrapped, token by
/// token, in `[…]` (a token that can be an index) or `{"token": …}`.
fn least_document_len(path: &Pointer, value: &Value) -> usize {
    let wrapping: usize = path
        .tokens()
        .map(|token| {
            let name = token.decoded();
            if name == "-" || name.bytes().all(|b| b.is_ascii_digit()) {
                2
            } else {
                json::encoded_len(&name) + 3
            }
        })
        .sum();
    json::encoded_len(value) + wrapping
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    const LIMITS: Limits = Limits {
        max_bytes: 1024,
        max_depth: 8,
    };

    fn ops(value: Value) -> Vec<PatchOperation> {
        serde_json::from_value(value).unwrap()
    }

    fn nested(levels: usize) -> Value {
        (0..levels).fold(json!(0), |inner, _| json!({ "d": inner }))
    }

    #[test]
    fn applies_every_operation_in_order() {
        let document = json!({"nodes": [], "a": {"b": 1}});
        let patch = ops(json!([
            {"op": "add", "path": "/nodes/-", "value": "r1"},
            {"op": "copy", "from": "/a", "path": "/c"},
            {"op": "move", "from": "/c/b", "path": "/moved"},
            {"op": "replace", "path": "/a/b", "value": 2},
            {"op": "remove", "path": "/c"},
            {"op": "test", "path": "/moved", "value": 1.0}
        ]));
        assert_eq!(
            apply(&document, &patch, &LIMITS).unwrap(),
            json!({"nodes": ["r1"], "a": {"b": 2}, "moved": 1})
        );
    }

    #[test]
    fn test_compares_numbers_by_value() {
        let document = json!({"weight": 2.0, "list": [1, {"x": 0}]});
        for (path, value) in [
            ("/weight", json!(2)),
            (
                "/list",
                serde_json::from_str("[1.0, {\"x\": -0.0}]").unwrap(),
            ),
        ] {
            let patch = ops(json!([{"op": "test", "path": path, "value": value}]));
            assert!(apply(&document, &patch, &LIMITS).is_ok(), "{path}");
        }
        let patch = ops(json!([{"op": "test", "path": "/weight", "value": 2.5}]));
        assert_eq!(
            apply(&document, &patch, &LIMITS).unwrap_err().to_string(),
            "ops[0] failed at path '/weight': value did not match"
        );
    }

    #[test]
    fn names_the_failing_operation_and_its_path() {
        let patch = ops(json!([
            {"op": "add", "path": "/a", "value": 1},
            {"op": "remove", "path": "/missing"}
        ]));
        let error = apply(&json!({}), &patch, &LIMITS).unwrap_err();
        assert_eq!(
            error.to_string(),
            "ops[1] failed at path '/missing': there is no value at this path"
        );
        for (op, message) in [
            (
                json!({"op": "add", "path": "/no/such/parent", "value": 1}),
                "ops[0] failed at path '/no/such/parent': this path's parent does not exist, or its array index is past the end",
            ),
            (
                json!({"op": "add", "path": "/list/5", "value": 1}),
                "ops[0] failed at path '/list/5': this path's parent does not exist, or its array index is past the end",
            ),
            (
                json!({"op": "replace", "path": "/nope", "value": 1}),
                "ops[0] failed at path '/nope': there is no value at this path",
            ),
            (
                json!({"op": "copy", "from": "/nope", "path": "/x"}),
                "ops[0] failed at path '/x': there is no value at the \"from\" path",
            ),
        ] {
            let error = apply(&json!({"list": [0]}), &ops(json!([op])), &LIMITS).unwrap_err();
            assert_eq!(error.to_string(), message);
        }
        let long = format!("/{}", "k".repeat(500));
        let patch = ops(json!([{"op": "remove", "path": long}]));
        let error = apply(&json!({}), &patch, &LIMITS).unwrap_err();
        assert!(error.to_string().len() < 200, "{error}");
    }

    #[test]
    fn stops_at_the_first_copy_past_the_size_limit() {
        // Each copy appends /a to itself, more than doubling it.
        let document = json!({"a": [0, 1, 2, 3, 4, 5, 6, 7]});
        let patch: Vec<PatchOperation> = (0..22)
            .map(|_| {
                serde_json::from_value(json!({"op": "copy", "from": "/a", "path": "/a/-"})).unwrap()
            })
            .collect();
        let error = apply(&document, &patch, &LIMITS).unwrap_err();
        // Unlimited, the document first passes 1 KiB at this operation.
        let mut unlimited = document.clone();
        let first_past = (0..patch.len())
            .find(|&i| {
                json_patch::patch(&mut unlimited, &patch[i..=i]).unwrap();
                json::encoded_len(&unlimited) > LIMITS.max_bytes
            })
            .unwrap();
        assert_eq!(error.index, first_past, "{error}");
        assert!(error.reason.contains("the limit is 1024"), "{error}");
    }

    #[test]
    fn refuses_a_value_landing_past_the_depth_limit() {
        let document = json!({"shallow": nested(3), "deep": nested(6)});
        let patch = ops(json!([
            {"op": "copy", "from": "/shallow", "path": "/deep/d/d/d/d/x"}
        ]));
        let error = apply(&document, &patch, &LIMITS).unwrap_err();
        assert!(error.reason.contains("nested 9 levels deep"), "{error}");
        let patch = ops(json!([{"op": "move", "from": "/shallow", "path": "/deep/d/d/x"}]));
        apply(&document, &patch, &LIMITS).unwrap();
    }

    #[test]
    fn arrival_checks_name_what_can_never_fit() {
        let check = |op: Value| check_operation(&serde_json::from_value(op).unwrap(), &LIMITS);
        check(json!({"op": "add", "path": "/a/b", "value": nested(6)})).unwrap();
        let error = check(json!({"op": "add", "path": "/a/b/c", "value": nested(6)})).unwrap_err();
        assert!(error.contains("nested 9 levels deep"), "{error}");
        let deep_path = "/x".repeat(9);
        let error = check(json!({"op": "remove", "path": deep_path})).unwrap_err();
        assert!(error.contains("`path` has 9 tokens"), "{error}");
        let error = check(json!({"op": "copy", "from": deep_path, "path": "/a"})).unwrap_err();
        assert!(error.contains("`from`"), "{error}");
        let error =
            check(json!({"op": "test", "path": "/a", "value": "x".repeat(2000)})).unwrap_err();
        assert!(error.contains("the limit is 1024"), "{error}");
        // 1,017 bytes of value fit alone, or in [ ], but not inside {"key": …}: 1,025.
        let value = json!("x".repeat(1015));
        check(json!({"op": "add", "path": "", "value": value})).unwrap();
        check(json!({"op": "add", "path": "/0", "value": value})).unwrap();
        let error = check(json!({"op": "add", "path": "/key", "value": value})).unwrap_err();
        assert!(error.contains("is 1025 bytes"), "{error}");
        let error = check(json!({"op": "replace", "path": "/a", "value": [1e301]})).unwrap_err();
        assert!(error.contains("±1e300"), "{error}");
    }

    /// Small enough that generated patches often reach them.
    const PROPERTY_LIMITS: Limits = Limits {
        max_bytes: 600,
        max_depth: 6,
    };

    /// Documents of nested objects (keys a, b, c) and arrays, with strings long
    /// enough that a few copies pass the size limit.
    fn document() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i32>().prop_map(Value::from),
            "[a-z]{0,6}".prop_map(Value::from),
            "[a-z]{50,150}".prop_map(Value::from),
        ];
        leaf.prop_recursive(5, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[abc]", inner, 0..4)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    /// Every location in `document`, as JSON Pointers ("" is the root), and where a
    /// new member can go (`/new` in an object, `/-` at the end of an array).
    fn locations(document: &Value) -> (Vec<String>, Vec<String>) {
        let (mut found, mut new) = (Vec::new(), Vec::new());
        let mut pending = vec![(String::new(), document)];
        while let Some((pointer, value)) = pending.pop() {
            match value {
                Value::Array(items) => {
                    new.push(format!("{pointer}/-"));
                    pending.extend(
                        items
                            .iter()
                            .enumerate()
                            .map(|(i, v)| (format!("{pointer}/{i}"), v)),
                    );
                }
                Value::Object(members) => {
                    new.push(format!("{pointer}/new"));
                    pending.extend(members.iter().map(|(k, v)| (format!("{pointer}/{k}"), v)));
                }
                _ => {}
            }
            found.push(pointer);
        }
        (found, new)
    }

    /// A document within the limits and a patch over it. Paths are taken from the
    /// document (or name a new member), `test` values from it, so operations mostly
    /// apply, and copies, deep values and long strings push it towards both limits.
    fn case() -> impl Strategy<Value = (Value, Vec<PatchOperation>)> {
        let root = prop::collection::btree_map("[abc]", document(), 1..4)
            .prop_map(|members| Value::Object(members.into_iter().collect()));
        root.prop_filter("within limits", |d| PROPERTY_LIMITS.check(d).is_ok())
            .prop_flat_map(|start| {
                let (existing, new) = locations(&start);
                let doc = start.clone();
                let op = (
                    prop::sample::select(vec![0, 0, 1, 2, 3, 4, 4, 4, 5]),
                    prop::sample::select(existing.clone()),
                    prop::sample::select(existing),
                    prop::sample::select(new),
                    any::<bool>(),
                    prop_oneof![document(), nested_value()],
                )
                    .prop_map(move |(kind, at, from, fresh, to_new, value)| {
                        let path = if to_new && kind != 1 && kind != 5 {
                            fresh
                        } else {
                            at
                        };
                        let value = match kind {
                            5 => doc.pointer(&path).cloned().unwrap_or(value),
                            _ => value,
                        };
                        operation(kind, path, from, value)
                    });
                (Just(start), prop::collection::vec(op, 1..5))
            })
    }

    /// A leaf wrapped in up to 6 arrays or objects.
    fn nested_value() -> impl Strategy<Value = Value> {
        (0..7usize, any::<bool>()).prop_map(|(levels, arrays)| {
            (0..levels).fold(json!("leaf"), |inner, _| {
                if arrays {
                    json!([inner])
                } else {
                    json!({"a": inner})
                }
            })
        })
    }

    fn operation(kind: usize, path: String, from: String, value: Value) -> PatchOperation {
        let op = match kind {
            0 => json!({"op": "add", "path": path, "value": value}),
            1 => json!({"op": "remove", "path": path}),
            2 => json!({"op": "replace", "path": path, "value": value}),
            3 => json!({"op": "move", "from": from, "path": path}),
            4 => json!({"op": "copy", "from": from, "path": path}),
            _ => json!({"op": "test", "path": path, "value": value}),
        };
        serde_json::from_value(op).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// All or nothing, and never past a limit: either the result is within the limits
        /// and equals json_patch's own (unlimited) result, or it is an error and the
        /// caller's document is untouched.
        #[test]
        fn all_or_nothing_and_within_limits((start, patch) in case()) {
            let before = start.clone();
            match apply(&start, &patch, &PROPERTY_LIMITS) {
                Ok(next) => {
                    prop_assert!(PROPERTY_LIMITS.check(&next).is_ok(), "{next}");
                    let mut reference = start.clone();
                    // json_patch's `test` compares numbers by representation; these
                    // documents hold only integers, so the two agree.
                    json_patch::patch(&mut reference, &patch).unwrap();
                    prop_assert_eq!(next, reference);
                }
                Err(error) => prop_assert!(error.index < patch.len()),
            }
            prop_assert_eq!(start, before);
        }

        /// A patch fails at the first operation that cannot apply or would take the
        /// document past a limit, and not before.
        #[test]
        fn fails_at_the_first_operation_past_a_limit((start, patch) in case()) {
            if let Err(error) = apply(&start, &patch, &PROPERTY_LIMITS) {
                let before = apply(&start, &patch[..error.index], &PROPERTY_LIMITS);
                prop_assert!(before.is_ok(), "the prefix before {} failed too", error.index);
                // Without limits, the failing operation fails too, or goes past a limit.
                let mut unlimited = before.unwrap();
                let failing = &patch[error.index..=error.index];
                if json_patch::patch(&mut unlimited, failing).is_ok() {
                    prop_assert!(PROPERTY_LIMITS.check(&unlimited).is_err(), "{error} but {unlimited} fits");
                }
            }
        }
    }
}
