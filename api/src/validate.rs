//! Field checks shared by the registry's request types; each error names the field
//! and what it must be (422).

use serde::Deserialize;
use serde_json::Value;
use switchyard_bus::subjects;
use switchyard_domain::json::{LimitError, Limits};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};

use crate::error::ApiError;

/// `value` trimmed; 422 unless it has 1 to `max` characters.
pub fn text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.chars().count() > max {
        return Err(ApiError::Unprocessable(format!(
            "{field} must be 1 to {max} characters, not only whitespace"
        )));
    }
    Ok(trimmed.to_owned())
}

/// Like [`text`] for an optional field; `None` stays `None`.
pub fn optional_text(
    field: &str,
    value: Option<&str>,
    max: usize,
) -> Result<Option<String>, ApiError> {
    value.map(|v| text(field, v, max)).transpose()
}

/// Reads an optional field that has no `null` value (a name, a type, a list): left
/// out, it is `None` (with `#[serde(default)]`); an explicit `null` is a 422 naming the
/// field, rather than being read as left out. Fields that `null` clears use
/// `serde_with::rust::double_option` instead.
pub fn not_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    match Option::<T>::deserialize(deserializer)? {
        Some(value) => Ok(Some(value)),
        None => Err(serde::de::Error::custom(
            "null is not a value of this field (it cannot be cleared); leave the field out instead",
        )),
    }
}

/// 422 unless `slug` is a repo slug (it becomes a subject token).
pub fn slug(field: &str, slug: &str) -> Result<(), ApiError> {
    if subjects::is_valid_slug(slug) {
        Ok(())
    } else {
        Err(ApiError::Unprocessable(format!(
            "{field} {slug:?} is not a slug: use 1 to 63 lowercase letters, digits and dashes, starting with a letter or digit"
        )))
    }
}

/// Checks JSON a client sends to be stored (a topology document, a node's data, a
/// step's value) against the document `limits`: 413 when too large, 422 when nested
/// too deep or holding a number beyond ±1e300. The message starts with `field`.
pub fn json(field: &str, value: &Value, limits: &Limits) -> Result<(), ApiError> {
    limits
        .check(value)
        .map_err(|error| beyond_limit(field, error))
}

/// The answer for `field` beyond a document limit (see [`json`]).
fn beyond_limit(field: &str, error: LimitError) -> ApiError {
    let message = format!("{field} {error}");
    match error {
        LimitError::TooLarge { .. } => ApiError::PayloadTooLarge(message),
        LimitError::TooDeep { .. } | LimitError::NumberOutOfRange(_) => {
            ApiError::Unprocessable(message)
        }
    }
}

/// A repo slug in the OpenAPI document (the checks are [`slug`]).
pub struct Slug;

impl utoipa::PartialSchema for Slug {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A repo slug: 1 to 63 lowercase letters, digits and dashes",
            ))
            .pattern(Some("^[a-z0-9][a-z0-9-]{0,62}$"))
            .into()
    }
}

impl utoipa::ToSchema for Slug {}

/// A list of affected repo slugs in the OpenAPI document: each a [`Slug`], each once.
pub struct AffectedSlugs;

impl utoipa::PartialSchema for AffectedSlugs {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(RefOr::Ref(Ref::from_schema_name("Slug")))
            .max_items(Some(500))
            .unique_items(true)
            .into()
    }
}

impl utoipa::ToSchema for AffectedSlugs {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push(("Slug".to_owned(), <Slug as utoipa::PartialSchema>::schema()));
    }
}

/// An affected path in the OpenAPI document: 1 to 500 characters, not only whitespace.
pub struct AffectedPath;

impl utoipa::PartialSchema for AffectedPath {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(500))
            .pattern(Some("\\S"))
            .into()
    }
}

impl utoipa::ToSchema for AffectedPath {}
