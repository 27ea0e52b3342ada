//! JSON values as switchyard compares and bounds them.
//!
//! ## Equality
//! [`equal`] is the one comparison of JSON values for meaning (a JSON Patch `test`, a
//! migration's `map_values`, a retried request). It follows RFC 6902 §4.6: numbers are
//! equal when numerically equal (`2`, `2.0` and `2e0` are one number, so are `0` and
//! `-0.0`), strings when their code points are, arrays element by element in order,
//! objects member by member in any order. [`canonical`] rewrites a value so that
//! equal values become identical, for hashing.
//!
//! ## Limits
//! A stored document must stay readable and bounded: [`Limits`] caps its encoded size
//! and its nesting depth, and every number must lie within ±[`MAX_NUMBER`]. Callers
//! check at every door where JSON comes in, and [`crate::patch`] checks as a document
//! grows.

use std::io;

use serde_json::{Map, Number, Value};

/// Largest magnitude a JSON number may have. Postgres `jsonb` stores numbers exactly
/// and prints them in full, and near `f64::MAX` that text no longer reads back as an
/// `f64`: such a document could be stored but never loaded or mutated again.
pub const MAX_NUMBER: f64 = 1e300;

/// Deepest nesting a deployment may configure. serde_json refuses to read JSON nested
/// deeper than 128 levels, and events and snapshots wrap a document in a few levels
/// of their own, so a document must stay well below that.
pub const MAX_CONFIGURABLE_DEPTH: usize = 100;

/// Whether `a` and `b` are equal JSON values (RFC 6902 §4.6).
pub fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => numbers_equal(x, y),
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| equal(x, y))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(key, x)| ys.get(key).is_some_and(|y| equal(x, y)))
        }
        _ => a == b,
    }
}

/// Whether two numbers are numerically equal, however they are written.
pub fn numbers_equal(a: &Number, b: &Number) -> bool {
    match (exact_integer(a), exact_integer(b)) {
        (Some(x), Some(y)) => x == y,
        (None, None) => a.as_f64() == b.as_f64(),
        // An integer never equals a number with a fraction.
        _ => false,
    }
}

/// The number as an exact integer: any integer, or a float without a fraction small
/// enough for `i128` (every integer serde_json reads as such fits, so larger floats
/// can only equal other floats).
fn exact_integer(n: &Number) -> Option<i128> {
    if let Some(i) = n.as_i64() {
        return Some(i.into());
    }
    if let Some(u) = n.as_u64() {
        return Some(u.into());
    }
    let f = n.as_f64()?;
    // 2^126: comfortably inside i128, and beyond every u64.
    (f.fract() == 0.0 && f.abs() < 2f64.powi(126)).then_some(f as i128)
}

/// `value` with every number in one spelling, so that `equal(a, b)` exactly when
/// `canonical(a) == canonical(b)`: a number without a fraction that fits `u64` or
/// `i64` becomes that integer (`2.0` → `2`, `-0.0` → `0`). Object members are sorted
/// by name (serde_json's map is ordered), so the encoding is canonical too.
pub fn canonical(value: &Value) -> Value {
    match value {
        Value::Number(n) => Value::Number(canonical_number(n)),
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        Value::Object(members) => Value::Object(
            members
                .iter()
                .map(|(key, v)| (key.clone(), canonical(v)))
                .collect::<Map<_, _>>(),
        ),
        other => other.clone(),
    }
}

fn canonical_number(n: &Number) -> Number {
    match exact_integer(n) {
        Some(i) => u64::try_from(i)
            .map(Number::from)
            .or_else(|_| i64::try_from(i).map(Number::from))
            .unwrap_or_else(|_| n.clone()),
        None => n.clone(),
    }
}

/// How deeply `value` nests arrays and objects: 0 for a scalar, 1 for `[]`, `{}` or
/// `{"a": 1}`, 2 for `{"a": [1]}`. Iterative, so any depth is safe to measure.
pub fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(value, 0)];
    while let Some((value, level)) = pending.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(members) => Box::new(members.values()),
            _ => continue,
        };
        deepest = deepest.max(level + 1);
        pending.extend(children.map(|child| (child, level + 1)));
    }
    deepest
}

/// The length in bytes of `value`'s compact JSON encoding, without building it.
pub fn encoded_len(value: &impl serde::Serialize) -> usize {
    let mut counter = ByteCounter(0);
    serde_json::to_writer(&mut counter, value).expect("JSON values always serialize");
    counter.0
}

/// An `io::Write` that only counts.
struct ByteCounter(usize);

impl io::Write for ByteCounter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a stored JSON document may be: at most `max_bytes` encoded (compact, as
/// [`encoded_len`] counts) and at most `max_depth` levels deep (as [`depth`] counts).
///
/// The configuration section `documents` (`documents.max_bytes`,
/// `documents.max_depth`), read alike by the API, which checks what comes in, and by
/// the mutator and migrator, which check what they make. Defaults: 512 KiB, 64 levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest encoded size, in bytes (compact JSON).
    pub max_bytes: usize,
    /// Deepest nesting of arrays and objects (`{"a": [1]}` is 2), 1 to
    /// [`MAX_CONFIGURABLE_DEPTH`].
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 512 * 1024,
            max_depth: 64,
        }
    }
}

/// A value beyond a [`Limits`] or [`MAX_NUMBER`]. Displayed as the end of a sentence
/// whose subject the caller supplies: "document is 600000 bytes; …".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("is {bytes} bytes; the limit is {limit} (documents.max_bytes)")]
    TooLarge { bytes: usize, limit: usize },
    #[error("is nested {depth} levels deep; the limit is {limit} (documents.max_depth)")]
    TooDeep { depth: usize, limit: usize },
    #[error("contains the number {0}; numbers must be within ±1e300")]
    NumberOutOfRange(String),
}

impl Limits {
    /// Checks a whole value: its numbers, its depth, then its size.
    pub fn check(&self, value: &Value) -> Result<(), LimitError> {
        check_numbers(value)?;
        self.check_depth(depth(value))?;
        self.check_size(encoded_len(value))
    }

    /// `TooDeep` if `depth` is past the limit.
    pub fn check_depth(&self, depth: usize) -> Result<(), LimitError> {
        if depth > self.max_depth {
            return Err(LimitError::TooDeep {
                depth,
                limit: self.max_depth,
            });
        }
        Ok(())
    }

    /// `TooLarge` if `bytes` is past the limit.
    pub fn check_size(&self, bytes: usize) -> Result<(), LimitError> {
        if bytes > self.max_bytes {
            return Err(LimitError::TooLarge {
                bytes,
                limit: self.max_bytes,
            });
        }
        Ok(())
    }
}

/// `NumberOutOfRange` if `value` holds a number beyond ±[`MAX_NUMBER`].
pub fn check_numbers(value: &Value) -> Result<(), LimitError> {
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            Value::Number(n) if n.as_f64().is_none_or(|f| f.abs() > MAX_NUMBER) => {
                return Err(LimitError::NumberOutOfRange(n.to_string()));
            }
            Value::Array(items) => pending.extend(items),
            Value::Object(members) => pending.extend(members.values()),
            _ => {}
        }
    }
    Ok(())
}

/// `text` cut to at most `max` characters, with `…` when cut: for quoting a client's
/// input in a message without letting the message grow with it.
pub fn excerpt(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn number(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn numbers_compare_by_value_not_spelling() {
        for (a, b) in [
            ("2", "2.0"),
            ("1", "1.0"),
            ("100", "1e2"),
            ("0", "-0.0"),
            ("-3", "-3.0"),
            ("1e20", "100000000000000000000"),
            ("18446744073709551615", "18446744073709551615"),
        ] {
            assert!(equal(&number(a), &number(b)), "{a} = {b}");
            assert_eq!(canonical(&number(a)), canonical(&number(b)), "{a} ~ {b}");
        }
        for (a, b) in [
            ("2", "2.5"),
            ("9007199254740993", "9007199254740992.0"),
            ("-1", "1"),
            ("0.1", "0.2"),
        ] {
            assert!(!equal(&number(a), &number(b)), "{a} ≠ {b}");
            assert_ne!(canonical(&number(a)), canonical(&number(b)), "{a} ≁ {b}");
        }
    }

    #[test]
    fn containers_compare_member_by_member() {
        assert!(equal(
            &json!({"a": [1, {"b": 2.0}], "c": 0}),
            &number(r#"{"c": -0.0, "a": [1.0, {"b": 2}]}"#)
        ));
        assert!(!equal(&json!([1, 2]), &json!([2, 1])));
        assert!(!equal(&json!({"a": 1}), &json!({"a": 1, "b": null})));
        assert!(!equal(&json!("1"), &json!(1)));
    }

    #[test]
    fn depth_and_size_are_measured_as_documented() {
        assert_eq!(depth(&json!(3)), 0);
        assert_eq!(depth(&json!([])), 1);
        assert_eq!(depth(&json!({"a": [1]})), 2);
        let value = json!({"a": [1, "x"], "b": null});
        assert_eq!(encoded_len(&value), value.to_string().len());
        let limits = Limits {
            max_bytes: 10,
            max_depth: 1,
        };
        assert_eq!(
            limits.check(&json!({"a": [1]})),
            Err(LimitError::TooDeep { depth: 2, limit: 1 })
        );
        assert_eq!(
            limits.check(&json!({"a": "0123456789"})),
            Err(LimitError::TooLarge {
                bytes: 18,
                limit: 10
            })
        );
        assert!(matches!(
            limits.check(&json!([1.7976931348623157e308])),
            Err(LimitError::NumberOutOfRange(_))
        ));
    }

    #[test]
    fn excerpts_cut_on_characters() {
        assert_eq!(excerpt("abc", 3), "abc");
        assert_eq!(excerpt("ééé", 2), "éé…");
    }

    /// A number and other spellings of the same value.
    fn spellings() -> impl Strategy<Value = (String, String)> {
        prop_oneof![
            (-1_000_000_000_000i64..1_000_000_000_000)
                .prop_map(|i| (i.to_string(), format!("{i}.0"))),
            (-1_000_000i64..1_000_000).prop_map(|i| (i.to_string(), format!("{i}e0"))),
            (1i64..100_000).prop_map(|i| (format!("{i}00"), format!("{i}e2"))),
            (-1_000_000i64..1_000_000, 1u32..6).prop_map(|(i, places)| {
                let scaled = i * 10i64.pow(places);
                (i.to_string(), format!("{scaled}e-{places}"))
            }),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| (format!("{f:?}"), format!("{f:e}"))),
            Just(("0".to_owned(), "-0.0".to_owned())),
        ]
    }

    /// Any JSON value, with numbers in both spellings: `(a, b)` are equal values.
    fn equal_pair() -> impl Strategy<Value = (Value, Value)> {
        let leaf = prop_oneof![
            spellings().prop_map(|(a, b)| (number(&a), number(&b))),
            any::<bool>().prop_map(|b| (json!(b), json!(b))),
            "[a-z]{0,4}".prop_map(|s| (json!(s), json!(s))),
            Just((Value::Null, Value::Null)),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|pairs| {
                    let (a, b): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
                    (Value::Array(a), Value::Array(b))
                }),
                prop::collection::btree_map("[a-c]", inner, 0..4).prop_map(|members| {
                    let a = members.iter().map(|(k, (a, _))| (k.clone(), a.clone()));
                    let b = members.iter().map(|(k, (_, b))| (k.clone(), b.clone()));
                    (Value::Object(a.collect()), Value::Object(b.collect()))
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn numerically_equal_values_compare_equal_whatever_their_spelling((a, b) in equal_pair()) {
            prop_assert!(equal(&a, &b), "{a} vs {b}");
            prop_assert!(equal(&b, &a));
            prop_assert_eq!(canonical(&a), canonical(&b));
        }

        #[test]
        fn canonical_agrees_with_equal(x in -5i64..5, y in -5i64..5, fx in any::<bool>(), fy in any::<bool>()) {
            let spell = |n: i64, float: bool| number(&if float { format!("{n}.0") } else { n.to_string() });
            let (a, b) = (spell(x, fx), spell(y, fy));
            prop_assert_eq!(equal(&a, &b), x == y);
            prop_assert_eq!(canonical(&a) == canonical(&b), x == y);
        }
    }
}
