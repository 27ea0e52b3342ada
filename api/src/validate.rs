//! Field checks shared by the registry's request types; each error names the field
//! and what it must be (422).

use switchyard_bus::subjects;

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
