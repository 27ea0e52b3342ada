//! The one HTTP error type. Every 4xx carries a message a client can act on; a 503
//! (a dependency is down or busy) carries `Retry-After`; a 500 is logged with its
//! cause and answered with a generic message.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use switchyard_domain::faults;

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (bad JSON syntax, bad header, bad id).
    #[error("{0}")]
    BadRequest(String),
    /// 404: the named resource does not exist.
    #[error("{0}")]
    NotFound(String),
    /// 409: the request conflicts with the resource's current state.
    #[error("{0}")]
    Conflict(String),
    /// 413: the body or a part of it is larger than a configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: the body is not declared as JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed JSON whose content is invalid.
    #[error("{0}")]
    Unprocessable(String),
    /// 503 with `Retry-After`: a dependency is unreachable or overloaded; retrying
    /// later may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// 401 with a `WWW-Authenticate: Bearer` challenge: no valid credentials.
    #[error("{0}")]
    Unauthorized(crate::auth::TokenError),
    /// 401 without a challenge: a webhook whose signature is missing or wrong (it
    /// proves itself with an HMAC of its body, not with a bearer token).
    #[error("{0}")]
    BadSignature(String),
    /// 403: valid credentials without the role the operation needs.
    #[error("{0}")]
    Forbidden(String),
    /// 405: the path exists but not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 408: the request ran past `http.request_timeout`.
    #[error("{0}")]
    Timeout(String),
    /// 500: anything unexpected. The cause is logged, never returned.
    #[error("database error")]
    Database(sqlx::Error),
}

impl ApiError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthorized(_) | Self::BadSignature(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Database(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Unprocessable(_) => "invalid_request",
            Self::Unavailable(_) => "unavailable",
            Self::Unauthorized(_) | Self::BadSignature(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Timeout(_) => "timeout",
            Self::Database(_) => "internal",
        }
    }
}

/// What a client is told about any 500: whether it took effect is unknown to it.
pub const INTERNAL_MESSAGE: &str = "internal error; the request may or may not have taken effect: retry it (with the same Idempotency-Key for mutations)";

/// Seconds a client is asked to wait before retrying a 503 (`Retry-After`).
pub const RETRY_AFTER_SECONDS: u32 = 1;

impl From<sqlx::Error> for ApiError {
    /// Database errors a client caused or can wait out get their own status: an
    /// outage ([`faults::is_transient`]: a lost or refused connection, an exhausted
    /// pool, a server shutting down, a conflict rolled back) is a 503. The rest are
    /// 500s.
    fn from(error: sqlx::Error) -> Self {
        match &error {
            // Postgres text and jsonb cannot hold U+0000.
            sqlx::Error::Database(e) if matches!(e.code().as_deref(), Some("22P05" | "22021")) => {
                Self::Unprocessable(
                    "strings must not contain the NUL character (\\u0000)".to_owned(),
                )
            }
            sqlx::Error::PoolTimedOut => {
                Self::Unavailable("the service is overloaded; retry shortly".to_owned())
            }
            error if faults::is_transient(error) => {
                tracing::warn!(%error, "database unavailable");
                Self::Unavailable(
                    "the database is unavailable; the request may or may not have taken effect: retry it shortly (with the same Idempotency-Key for mutations)"
                        .to_owned(),
                )
            }
            _ => Self::Database(error),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = match &self {
            Self::Database(cause) => {
                tracing::error!(error = %cause, "request failed");
                INTERNAL_MESSAGE.to_owned()
            }
            other => other.to_string(),
        };
        let body = json!({ "error": { "code": self.code(), "message": message } });
        let mut response = (self.status(), Json(body)).into_response();
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        if let Self::Unauthorized(refusal) = &self
            && let Ok(challenge) = HeaderValue::from_str(&refusal.challenge())
        {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => Self::Unprocessable(e.body_text()),
            JsonRejection::JsonSyntaxError(e) => syntax_error(e.body_text()),
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType(
                "expected a body with `Content-Type: application/json`".to_owned(),
            ),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => body_too_large(),
            other => Self::BadRequest(other.body_text()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    /// A body that could not be read: past the size limit (413), or cut off (400).
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            body_too_large()
        } else {
            Self::BadRequest(format!(
                "the body could not be read: {}",
                rejection.body_text()
            ))
        }
    }
}

fn body_too_large() -> ApiError {
    ApiError::PayloadTooLarge(
        "request body is larger than the limit (config key http.body_limit_bytes)".to_owned(),
    )
}

/// A body serde_json would not read. Two of its refusals are well-formed JSON with
/// content past a limit, so they are 422s like the rest of the limits: nesting past
/// the 128 levels it reads, and a number beyond `f64`. (Their texts also quote a
/// path as long as the nesting; the message here does not.)
fn syntax_error(text: String) -> ApiError {
    if text.contains("recursion limit exceeded") {
        ApiError::Unprocessable(
            "the body is nested deeper than 128 levels; a document may be nested at most documents.max_depth levels".to_owned(),
        )
    } else if text.contains("number out of range") {
        ApiError::Unprocessable(
            "the body holds a number out of range; numbers must be within ±1e300".to_owned(),
        )
    } else {
        ApiError::BadRequest(text)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::Unprocessable(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}
