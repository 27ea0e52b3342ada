//! `POST /webhooks/gitea`: Gitea says a repo changed. The one public operation: it
//! carries no bearer token, and proves itself with `X-Gitea-Signature`, the hex
//! HMAC-SHA256 of the raw body keyed with `forge.webhook_secret`.
//!
//! ## Verify, record, announce
//! The API reads nothing from Gitea. It verifies the signature (401, nothing written,
//! if missing or wrong), reads the delivery's headers and `repository.full_name`, and
//! in one transaction records the delivery by its `X-Gitea-Delivery` id, writes the
//! audit row and stages `forge.{owner}.{repo}.changed`. The forge worker role then
//! reads the repo from Gitea and updates the cache.
//!
//! Gitea waits only a few seconds and never retries, so the answer is 202 at once. A
//! delivery id seen before is answered 200 and changes nothing. If Postgres is down the
//! answer is 503: a 2xx always means the delivery was committed.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;
use switchyard_bus::payloads::ForgeTrigger;
use switchyard_bus::{OutboxTx, Payload, Source, subjects};
use switchyard_domain::status::AuditEntity;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::forge::{RepoName, changed, parse_repo};
use crate::error::ApiError;
use crate::openapi::ErrorBody;
use crate::{AppState, audit};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(gitea))
}

/// The audit actor of every delivery.
const ACTOR: &str = "gitea";
/// Longest `X-Gitea-Event`.
const MAX_EVENT: usize = 64;
/// Longest `X-Gitea-Delivery`.
const MAX_DELIVERY: usize = 128;

/// What became of a delivery.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DeliveryOut {
    /// `X-Gitea-Delivery`.
    pub delivery_id: String,
    /// The id was seen before: nothing changed.
    pub duplicate: bool,
    /// The repo the delivery is about, `owner/name`, lower case.
    pub repo: String,
    /// The subject of the staged event; only for a new delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// Why a signature is refused; each is a 401 saying which.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("webhooks are not accepted: no forge.webhook_secret is configured")]
    NoSecret,
    #[error("missing X-Gitea-Signature: set the webhook's secret in Gitea")]
    Missing,
    #[error("X-Gitea-Signature is not hex (expected the hex HMAC-SHA256 of the body)")]
    NotHex,
    #[error(
        "X-Gitea-Signature does not match the body: check that Gitea's webhook secret is forge.webhook_secret"
    )]
    Mismatch,
}

/// Checks `signature` (`X-Gitea-Signature`) against the HMAC-SHA256 of `body` keyed
/// with `secret`, in constant time. An empty secret counts as none: anyone could sign.
pub fn verify_signature(
    secret: Option<&str>,
    signature: Option<&[u8]>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let secret = secret
        .filter(|s| !s.is_empty())
        .ok_or(SignatureError::NoSecret)?;
    let signature = signature.ok_or(SignatureError::Missing)?;
    let tag = hex::decode(signature.trim_ascii()).map_err(|_| SignatureError::NotHex)?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&tag).map_err(|_| SignatureError::Mismatch)
}

/// A delivery's headers, checked.
#[derive(Debug, PartialEq, Eq)]
pub struct DeliveryHeaders {
    /// `X-Gitea-Event`: `push`, `pull_request`, `create`, `delete`, ….
    pub event: String,
    /// `X-Gitea-Delivery`: the delivery's unique id.
    pub delivery_id: String,
}

impl DeliveryHeaders {
    /// Reads `X-Gitea-Event` (1 to 64 of `a`–`z` and `_`) and `X-Gitea-Delivery` (1 to
    /// 128 printable ASCII characters): 400 naming the header that is missing or bad.
    pub fn read(headers: &HeaderMap) -> Result<Self, ApiError> {
        let event = header_text(headers, "x-gitea-event", MAX_EVENT, |c| {
            c.is_ascii_lowercase() || c == '_'
        })
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "X-Gitea-Event must be the event name, 1 to {MAX_EVENT} of a-z and _ (for example push)"
            ))
        })?;
        let delivery_id = header_text(headers, "x-gitea-delivery", MAX_DELIVERY, |c| {
            matches!(c, ' '..='~')
        })
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "X-Gitea-Delivery must be the delivery id, 1 to {MAX_DELIVERY} printable ASCII characters"
            ))
        })?;
        Ok(Self { event, delivery_id })
    }
}

/// The one value of header `name` when it has 1 to `max` characters, each `legal`.
fn header_text(
    headers: &HeaderMap,
    name: &str,
    max: usize,
    legal: impl Fn(char) -> bool,
) -> Option<String> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?.to_str().ok()?;
    let one = values.next().is_none();
    (one && (1..=max).contains(&value.len()) && value.chars().all(legal)).then(|| value.to_owned())
}

/// The part of Gitea's payload the API reads; every payload names its repository.
#[derive(Deserialize)]
struct Hook {
    repository: Option<HookRepository>,
}

#[derive(Deserialize)]
struct HookRepository {
    full_name: Option<String>,
}

/// The repo a payload names: 400 for a body that is not JSON, 422 without a
/// well-formed `repository.full_name`.
pub fn repo_of(body: &[u8]) -> Result<RepoName, ApiError> {
    let hook: Hook = serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            ApiError::Unprocessable(format!(
                "the payload must be a JSON object with repository.full_name (owner/name): {e}"
            ))
        } else {
            ApiError::BadRequest(format!("the body is not JSON: {e}"))
        }
    })?;
    let full_name = hook.repository.and_then(|r| r.full_name).ok_or_else(|| {
        ApiError::Unprocessable(
            "repository.full_name is missing: every Gitea payload names its repository".to_owned(),
        )
    })?;
    parse_repo("repository.full_name", &full_name)
}

/// Take a Gitea webhook delivery: verify its signature, record it once, and have the
/// forge role read the repo again.
#[utoipa::path(
    post,
    path = "/webhooks/gitea",
    tag = "forge",
    params(
        ("X-Gitea-Signature" = String, Header, description = "Hex HMAC-SHA256 of the raw body, keyed with forge.webhook_secret"),
        ("X-Gitea-Event" = String, Header, description = "The event: push, pull_request, create, delete, …", pattern = "^[a-z_]{1,64}$"),
        ("X-Gitea-Delivery" = String, Header, description = "The delivery's unique id", pattern = "^[ -~]{1,128}$"),
    ),
    request_body(
        content = serde_json::Value,
        content_type = "application/json",
        description = "Gitea's payload for the event; it must name `repository.full_name`"
    ),
    responses(
        (status = 202, description = "Recorded; the forge role reads the repo again", body = DeliveryOut),
        (status = 200, description = "A delivery id seen before: nothing changed", body = DeliveryOut),
        (status = 400, description = "The body is not JSON, or X-Gitea-Event or X-Gitea-Delivery is missing or bad", body = ErrorBody),
        (status = 401, description = "X-Gitea-Signature is missing or wrong, or no webhook secret is configured; nothing was written", body = ErrorBody),
        (status = 408, description = "The request took longer than http.request_timeout", body = ErrorBody),
        (status = 413, description = "The body is larger than http.body_limit_bytes", body = ErrorBody),
        (status = 415, description = "The body is not declared as JSON: set the webhook's content type to application/json", body = ErrorBody),
        (status = 422, description = "The payload has no well-formed repository.full_name", body = ErrorBody),
        (status = 500, description = "Internal error; no details are given", body = ErrorBody),
        (status = 503, description = "The database is unavailable; nothing was recorded", body = ErrorBody),
    ),
    security(())
)]
async fn gitea(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<DeliveryOut>), ApiError> {
    let body = body.map_err(|rejection| too_large(rejection, app.config.body_limit_bytes))?;
    let signature = headers.get("x-gitea-signature").map(|v| v.as_bytes());
    verify_signature(app.webhook_secret.as_deref(), signature, &body)
        .map_err(|e| ApiError::BadSignature(e.to_string()))?;
    let delivery = DeliveryHeaders::read(&headers)?;
    require_json(&headers)?;
    let repo = repo_of(&body)?;
    record(&app, delivery, repo).await
}

/// 413 naming the limit for a body past it; other read failures as usual.
fn too_large(rejection: BytesRejection, limit: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(format!(
            "the body is larger than {limit} bytes (config key http.body_limit_bytes)"
        ))
    } else {
        rejection.into()
    }
}

/// 415 for a body declared as something other than JSON (Gitea's form content type
/// wraps the JSON in `payload=`). No `Content-Type` at all is read as JSON.
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(
            "expected `Content-Type: application/json`: set the Gitea webhook's POST content type to application/json".to_owned(),
        ))
    }
}

/// Records a verified delivery once, with its audit row and event: 202, or 200 for an
/// id seen before (nothing written).
async fn record(
    app: &AppState,
    delivery: DeliveryHeaders,
    repo: RepoName,
) -> Result<(StatusCode, Json<DeliveryOut>), ApiError> {
    let full_name = repo.to_string();
    let mut tx = OutboxTx::begin(&app.pool).await?;
    let inserted = sqlx::query!(
        "insert into forge_deliveries (delivery_id, event, repo) values ($1, $2, $3)
         on conflict (delivery_id) do nothing",
        &delivery.delivery_id,
        &delivery.event,
        &full_name,
    )
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !inserted {
        let recorded = sqlx::query_scalar!(
            "select repo from forge_deliveries where delivery_id = $1",
            &delivery.delivery_id,
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.rollback().await?;
        let out = DeliveryOut {
            delivery_id: delivery.delivery_id,
            duplicate: true,
            repo: recorded,
            subject: None,
        };
        return Ok((StatusCode::OK, Json(out)));
    }
    audit::record(
        &mut tx,
        AuditEntity::ForgeDelivery,
        &delivery.delivery_id,
        "received",
        ACTOR,
        json!({ "event": delivery.event, "repo": full_name }),
    )
    .await?;
    let mut changed = changed(&repo, ForgeTrigger::Webhook);
    changed.gitea_event = Some(delivery.event);
    changed.delivery_id = Some(delivery.delivery_id.clone());
    let event = changed.event(Source::Api);
    tx.stage(std::slice::from_ref(&event));
    tx.commit(&app.doorbell).await?;
    let out = DeliveryOut {
        delivery_id: delivery.delivery_id,
        duplicate: false,
        repo: full_name,
        subject: Some(subjects::forge_changed(&repo.owner, &repo.name)),
    };
    Ok((StatusCode::ACCEPTED, Json(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a webhook secret";
    const BODY: &[u8] = br#"{"repository":{"full_name":"Acme/RFC.meta"}}"#;

    /// What Gitea sends: the hex HMAC-SHA256 of the body.
    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn a_known_vector_verifies() {
        // RFC 4231 test case 2: key "Jefe".
        let signature = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let body = b"what do ya want for nothing?";
        assert_eq!(sign("Jefe", body), signature);
        assert_eq!(
            verify_signature(Some("Jefe"), Some(signature.as_bytes()), body),
            Ok(())
        );
        let upper = signature.to_uppercase();
        assert_eq!(
            verify_signature(Some("Jefe"), Some(upper.as_bytes()), body),
            Ok(())
        );
    }

    #[test]
    fn each_refusal_says_which() {
        let good = sign(SECRET, BODY);
        let verify = |secret, signature: Option<&str>, body| {
            verify_signature(secret, signature.map(str::as_bytes), body)
        };
        assert_eq!(verify(Some(SECRET), Some(&good), BODY), Ok(()));
        assert_eq!(
            verify(None, Some(&good), BODY),
            Err(SignatureError::NoSecret)
        );
        assert_eq!(
            verify(Some(""), Some(&sign("", BODY)), BODY),
            Err(SignatureError::NoSecret)
        );
        assert_eq!(
            verify(Some(SECRET), None, BODY),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(Some(SECRET), Some("not hex"), BODY),
            Err(SignatureError::NotHex)
        );
        assert_eq!(
            verify(Some(SECRET), Some(&sign("another secret", BODY)), BODY),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(SECRET), Some(&good), b"{}"),
            Err(SignatureError::Mismatch)
        );
        // A prefix of the right tag is no tag.
        assert_eq!(
            verify(Some(SECRET), Some(&good[..32]), BODY),
            Err(SignatureError::Mismatch)
        );
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn delivery_headers_name_what_is_wrong() {
        let id = "f6266f16-1bf3-46a5-9ea4-602e06ead473";
        assert_eq!(
            DeliveryHeaders::read(&headers(&[
                ("x-gitea-event", "pull_request"),
                ("x-gitea-delivery", id)
            ]))
            .unwrap(),
            DeliveryHeaders {
                event: "pull_request".into(),
                delivery_id: id.into()
            }
        );
        let long = "x".repeat(129);
        for (pairs, named) in [
            (vec![("x-gitea-delivery", id)], "X-Gitea-Event"),
            (
                vec![("x-gitea-event", "Push"), ("x-gitea-delivery", id)],
                "X-Gitea-Event",
            ),
            (
                vec![
                    ("x-gitea-event", "push"),
                    ("x-gitea-event", "create"),
                    ("x-gitea-delivery", id),
                ],
                "X-Gitea-Event",
            ),
            (vec![("x-gitea-event", "push")], "X-Gitea-Delivery"),
            (
                vec![("x-gitea-event", "push"), ("x-gitea-delivery", &long)],
                "X-Gitea-Delivery",
            ),
        ] {
            let error = DeliveryHeaders::read(&headers(&pairs)).unwrap_err();
            assert!(matches!(error, ApiError::BadRequest(_)), "{pairs:?}");
            assert!(error.to_string().starts_with(named), "{pairs:?}: {error}");
        }
    }

    #[test]
    fn the_payload_must_name_its_repository() {
        assert_eq!(repo_of(BODY).unwrap().to_string(), "acme/rfc.meta");
        assert!(matches!(
            repo_of(b"{\"repository\":"),
            Err(ApiError::BadRequest(_))
        ));
        for body in [
            &b"{}"[..],
            b"[]",
            b"{\"repository\":{}}",
            b"{\"repository\":{\"full_name\":\"meta\"}}",
            b"{\"repository\":\"acme/meta\"}",
        ] {
            let error = repo_of(body).unwrap_err();
            assert!(
                matches!(&error, ApiError::Unprocessable(m) if m.contains("repository.full_name")),
                "{}: {error}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn only_json_is_read() {
        assert!(require_json(&headers(&[])).is_ok());
        assert!(
            require_json(&headers(&[(
                "content-type",
                "application/json; charset=utf-8"
            )]))
            .is_ok()
        );
        assert!(matches!(
            require_json(&headers(&[(
                "content-type",
                "application/x-www-form-urlencoded"
            )])),
            Err(ApiError::UnsupportedMediaType(_))
        ));
    }
}
