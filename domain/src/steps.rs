//! The plugin step language: declarative edits of a node's data (a JSON object), from
//! one schema version to the next. The API validates a version's steps when it is
//! registered; the migrator applies them to each node of a graph.
//!
//! Steps are validated when a plugin version is registered, and each is idempotent:
//! applying a version's steps to data already at that version changes nothing. So a
//! migration is deterministic, and re-running it on a node does no harm.

use crate::json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Most steps in one plugin version.
pub const MAX_STEPS: usize = 100;

/// One edit of a node's top-level properties.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Moves `from` to `to`, replacing `to`; nothing when `from` is absent.
    Rename { from: String, to: String },
    /// Sets `property` to `value` where it is absent.
    SetDefault {
        property: String,
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        value: Value,
    },
    /// Removes `property`.
    Remove { property: String },
    /// Replaces a value of `property` equal to a `from` (RFC 6902 equality: `2` and
    /// `2.0` are equal) with its `to`.
    MapValues {
        property: String,
        mapping: Vec<ValueMapping>,
    },
    /// Fails the migration of a node that lacks `property`.
    Require { property: String },
}

/// One `from` → `to` of [`Step::MapValues`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ValueMapping {
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub from: Value,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub to: Value,
}

/// Why a step could not apply to a node.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("step {index} ({step}) failed: {reason}")]
pub struct StepError {
    /// 1-based position of the step within its version.
    pub index: usize,
    /// The step, briefly: `require owner`.
    pub step: String,
    pub reason: String,
}

impl Step {
    fn describe(&self) -> String {
        match self {
            Self::Rename { from, to } => format!("rename {from} to {to}"),
            Self::SetDefault { property, .. } => format!("set_default {property}"),
            Self::Remove { property } => format!("remove {property}"),
            Self::MapValues { property, .. } => format!("map_values {property}"),
            Self::Require { property } => format!("require {property}"),
        }
    }

    fn check(&self) -> Result<(), String> {
        let name = |n: &str| {
            if n.is_empty() || n.chars().count() > 200 {
                Err("property names must be 1 to 200 characters".to_owned())
            } else {
                Ok(())
            }
        };
        match self {
            Self::Rename { from, to } => {
                name(from)?;
                name(to)?;
                if from == to {
                    return Err("rename needs two different properties".to_owned());
                }
            }
            Self::SetDefault { property, .. }
            | Self::Remove { property }
            | Self::Require { property } => name(property)?,
            Self::MapValues { property, mapping } => {
                name(property)?;
                for (i, pair) in mapping.iter().enumerate() {
                    if mapping[..i]
                        .iter()
                        .any(|earlier| json::equal(&earlier.from, &pair.from))
                    {
                        return Err(format!("map_values maps {} twice", pair.from));
                    }
                    // A value mapped onto another `from` would change again on a re-run.
                    if mapping.iter().any(|other| {
                        json::equal(&other.from, &pair.to) && !json::equal(&pair.from, &pair.to)
                    }) {
                        return Err(format!(
                            "map_values maps to {}, which it also maps from: a second run would change it again",
                            pair.to
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn apply(&self, data: &mut Map<String, Value>) -> Result<(), String> {
        match self {
            Self::Rename { from, to } => {
                if let Some(value) = data.remove(from) {
                    data.insert(to.clone(), value);
                }
            }
            Self::SetDefault { property, value } => {
                data.entry(property.clone())
                    .or_insert_with(|| value.clone());
            }
            Self::Remove { property } => {
                data.remove(property);
            }
            Self::MapValues { property, mapping } => {
                if let Some(value) = data.get_mut(property)
                    && let Some(pair) = mapping.iter().find(|pair| json::equal(&pair.from, value))
                {
                    *value = pair.to.clone();
                }
            }
            Self::Require { property } => {
                if !data.contains_key(property) {
                    return Err(format!("property {property:?} is missing"));
                }
            }
        }
        Ok(())
    }
}

impl Step {
    /// The JSON values the step holds, each with the property it is the value of: what
    /// `set_default` writes, and what `map_values` matches and writes.
    pub fn values(&self) -> Vec<(&str, &Value)> {
        match self {
            Self::SetDefault { property, value } => vec![(property, value)],
            Self::MapValues { property, mapping } => mapping
                .iter()
                .flat_map(|m| [(property.as_str(), &m.from), (property.as_str(), &m.to)])
                .collect(),
            Self::Rename { .. } | Self::Remove { .. } | Self::Require { .. } => Vec::new(),
        }
    }
}

/// Checks a version's steps; the error names the step (1-based) and the problem.
pub fn validate(steps: &[Step]) -> Result<(), String> {
    if steps.len() > MAX_STEPS {
        return Err(format!(
            "at most {MAX_STEPS} steps per version, got {}",
            steps.len()
        ));
    }
    for (i, step) in steps.iter().enumerate() {
        step.check()
            .map_err(|problem| format!("step {} ({}): {problem}", i + 1, step.describe()))?;
    }
    Ok(())
}

/// Applies `steps` in order to `data`.
pub fn apply(steps: &[Step], data: &mut Map<String, Value>) -> Result<(), StepError> {
    for (i, step) in steps.iter().enumerate() {
        step.apply(data).map_err(|reason| StepError {
            index: i + 1,
            step: step.describe(),
            reason,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn steps(value: Value) -> Vec<Step> {
        serde_json::from_value(value).unwrap()
    }

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn each_step_edits_as_documented_and_a_rerun_changes_nothing() {
        let steps = steps(json!([
            {"op": "rename", "from": "colour", "to": "color"},
            {"op": "set_default", "property": "weight", "value": 1},
            {"op": "remove", "property": "legacy"},
            {"op": "map_values", "property": "kind", "mapping": [{"from": "sw", "to": "switch"}]},
            {"op": "require", "property": "color"},
        ]));
        validate(&steps).unwrap();
        let mut data = object(json!({"colour": "red", "legacy": true, "kind": "sw"}));
        apply(&steps, &mut data).unwrap();
        let migrated = json!({"color": "red", "weight": 1, "kind": "switch"});
        assert_eq!(Value::Object(data.clone()), migrated);
        apply(&steps, &mut data).unwrap();
        assert_eq!(
            Value::Object(data),
            migrated,
            "a second run changed the node"
        );
    }

    #[test]
    fn map_values_matches_numbers_by_value() {
        let by_size = steps(json!([
            {"op": "map_values", "property": "size", "mapping": [{"from": 2, "to": "medium"}]}
        ]));
        let mut data = object(serde_json::from_str(r#"{"size": 2.0}"#).unwrap());
        apply(&by_size, &mut data).unwrap();
        assert_eq!(Value::Object(data), json!({"size": "medium"}));
        let twice = steps(json!([
            {"op": "map_values", "property": "k", "mapping": [{"from": 1, "to": "a"}, {"from": 1.0, "to": "b"}]}
        ]));
        assert!(validate(&twice).unwrap_err().contains("twice"));
    }

    #[test]
    fn a_failing_step_is_named() {
        let steps = steps(
            json!([{"op": "remove", "property": "a"}, {"op": "require", "property": "owner"}]),
        );
        let error = apply(&steps, &mut object(json!({}))).unwrap_err();
        assert_eq!(
            error.to_string(),
            "step 2 (require owner) failed: property \"owner\" is missing"
        );
    }

    #[test]
    fn steps_that_would_not_be_idempotent_or_are_malformed_are_refused() {
        for (bad, why) in [
            (
                json!([{"op": "rename", "from": "a", "to": "a"}]),
                "two different",
            ),
            (
                json!([{"op": "map_values", "property": "k", "mapping": [{"from": 1, "to": 2}, {"from": 2, "to": 3}]}]),
                "second run",
            ),
            (
                json!([{"op": "map_values", "property": "k", "mapping": [{"from": 1, "to": 2}, {"from": 1, "to": 3}]}]),
                "twice",
            ),
            (json!([{"op": "remove", "property": ""}]), "1 to 200"),
        ] {
            let error = validate(&steps(bad.clone())).unwrap_err();
            assert!(error.contains(why), "{bad}: {error}");
        }
        assert!(serde_json::from_value::<Vec<Step>>(json!([{"op": "explode"}])).is_err());
        assert!(
            serde_json::from_value::<Vec<Step>>(
                json!([{"op": "remove", "property": "a", "extra": 1}])
            )
            .is_err()
        );
    }
}
