//! Dashboard sessions: an API token exchanged for a cookie, and CSRF tokens.
//!
//! - `POST /ui/sign-in` checks the token exactly as the API does (an API token, not a
//!   stream token; signature, issuer, expiry), then stores a session (table
//!   `ui_sessions`: the SHA-256 of a random 256-bit secret, the token's subject and
//!   role, a CSRF token, and the token's expiry) and sets the cookie
//!   `switchyard_session` = the secret: `HttpOnly`, `SameSite=Strict`, `Path=/ui`,
//!   `Max-Age` = the seconds the token has left, and `Secure` when the request came
//!   over TLS (`X-Forwarded-Proto: https`, or `Forwarded: proto=https`, from the TLS
//!   front).
//! - Each state-changing form carries the session's CSRF token in a hidden `csrf`
//!   field; [`Session::check`] refuses a post without it (403) before anything runs.
//! - `POST /ui/sign-out` deletes the session, so the cookie no longer signs anyone in.

use axum::Form;
use axum::extract::{FromRequestParts, OriginalUri, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use maud::html;
use rand::RngCore;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Failure, Page, Ui, csrf_field, page, respond};
use crate::auth::{Caller, Role, TokenKind};
use crate::error::ApiError;

/// The session cookie's name.
pub const COOKIE: &str = "switchyard_session";

/// A signed-in dashboard user.
#[derive(Clone, Debug)]
pub struct Session {
    /// Who the pages act as: the exchanged token's subject and role.
    pub caller: Caller,
    /// The token every state-changing form must carry.
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

impl Session {
    /// 403 unless `sent` is this session's CSRF token (compared in constant time).
    pub fn check(&self, sent: &str) -> Result<(), Failure> {
        let expected = self.csrf.as_bytes();
        let sent = sent.as_bytes();
        let same = expected.len() == sent.len()
            && expected
                .iter()
                .zip(sent)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            Ok(())
        } else {
            Err(Failure::new(
                StatusCode::FORBIDDEN,
                "the form's CSRF token is missing or does not belong to this session; reload the page and submit it again",
            ))
        }
    }
}

/// Why a request has no session: pages send the browser to sign in; the script's
/// `POST /ui/stream-token` gets a 401 it can read.
pub enum NoSession {
    SignIn(String),
    Unauthorized,
    Failed(Failure),
}

impl IntoResponse for NoSession {
    fn into_response(self) -> Response {
        match self {
            Self::SignIn(next) => {
                Redirect::to(&format!("/ui/sign-in?next={}", super::encode(&next))).into_response()
            }
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"error": {"code": "unauthorized", "message": "not signed in, or the session has ended: sign in again at /ui/sign-in"}})),
            )
                .into_response(),
            Self::Failed(failure) => failure.into_response(),
        }
    }
}

impl FromRequestParts<Ui> for Session {
    type Rejection = NoSession;

    async fn from_request_parts(parts: &mut Parts, ui: &Ui) -> Result<Self, NoSession> {
        let path = parts
            .extensions
            .get::<OriginalUri>()
            .map_or_else(|| parts.uri.clone(), |uri| uri.0.clone());
        let missing = || {
            if path.path() == "/ui/stream-token" || parts.method != Method::GET {
                NoSession::Unauthorized
            } else {
                NoSession::SignIn(
                    path.path_and_query()
                        .map_or("/ui/", |p| p.as_str())
                        .to_owned(),
                )
            }
        };
        let Some(secret) = cookie(&parts.headers, COOKIE) else {
            return Err(missing());
        };
        let row = sqlx::query!(
            "select subject, role, csrf_token, expires_at from ui_sessions
             where secret_sha256 = $1 and expires_at > now()",
            sha256(&secret),
        )
        .fetch_optional(&ui.pool)
        .await
        .map_err(|e| NoSession::Failed(Failure::from(ApiError::from(e))))?;
        let Some(row) = row else {
            return Err(missing());
        };
        let (subject, role, csrf, expires_at) =
            (row.subject, row.role, row.csrf_token, row.expires_at);
        let role = Role::from_scope(&role).ok_or_else(missing)?;
        Ok(Session {
            caller: Caller { subject, role },
            csrf,
            expires_at,
        })
    }
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Self {
        if let ApiError::Database(cause) = &error {
            tracing::error!(error = %cause, "dashboard query failed");
            return Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                crate::error::INTERNAL_MESSAGE,
            );
        }
        Failure::new(error.status(), error.to_string())
    }
}

/// The value of cookie `name`, if the request carries it.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
        .filter(|value| !value.is_empty())
}

fn sha256(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// 32 random bytes, hex.
fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Whether the browser reached us over TLS, as the TLS front says.
fn over_tls(headers: &HeaderMap) -> bool {
    let says = |name: header::HeaderName, needle: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains(needle))
    };
    says(
        header::HeaderName::from_static("x-forwarded-proto"),
        "https",
    ) || says(header::FORWARDED, "proto=https")
}

#[derive(Deserialize)]
pub struct Next {
    next: Option<String>,
}

/// Where to go after signing in: a dashboard page, never another site.
fn next_page(next: Option<&str>) -> String {
    match next {
        Some(next) if next.starts_with("/ui/") && !next.starts_with("/ui//") => next.to_owned(),
        _ => "/ui/".to_owned(),
    }
}

/// `GET /ui/sign-in`: the form.
pub async fn sign_in_page(axum::extract::Query(query): axum::extract::Query<Next>) -> Response {
    sign_in_form(StatusCode::OK, query.next.as_deref(), None)
}

fn sign_in_form(status: StatusCode, next: Option<&str>, error: Option<&str>) -> Response {
    let body = html! {
        h1 { "Sign in" }
        @if let Some(error) = error {
            div.banner.error role="alert" { (error) }
        }
        form.stack method="post" action="/ui/sign-in" {
            label {
                "API token"
                textarea name="token" required autocomplete="off" spellcheck="false"
                    placeholder="eyJ… (switchyard token --role operator --sub you)" {}
            }
            input type="hidden" name="next" value=(next_page(next));
            button type="submit" { "Sign in" }
            p.muted {
                "The token's role (viewer, operator or admin) decides what you can do here, exactly as in the API. The session ends when the token expires or when you sign out."
            }
        }
    };
    (status, page(None, "Sign in", body)).into_response()
}

#[derive(Deserialize)]
pub struct SignIn {
    token: String,
    next: Option<String>,
}

/// `POST /ui/sign-in`: an API token for a session cookie.
pub async fn sign_in(State(ui): State<Ui>, headers: HeaderMap, Form(form): Form<SignIn>) -> Page {
    let next = form.next.as_deref();
    let claims = match ui.authenticator.verify(form.token.trim()) {
        Ok(claims) if claims.kind == TokenKind::Api => claims,
        Ok(_) => {
            return Ok(sign_in_form(
                StatusCode::UNAUTHORIZED,
                next,
                Some("that is a stream token; sign in with an API token (switchyard token)"),
            ));
        }
        Err(e) => {
            return Ok(sign_in_form(
                StatusCode::UNAUTHORIZED,
                next,
                Some(&e.to_string()),
            ));
        }
    };
    let Some(expires_at) = DateTime::<Utc>::from_timestamp(claims.exp, 0) else {
        return Ok(sign_in_form(
            StatusCode::UNAUTHORIZED,
            next,
            Some("the token's expiry is out of range"),
        ));
    };
    let secret = random_hex();
    let mut tx = ui.pool.begin().await.map_err(ApiError::from)?;
    sqlx::query!("delete from ui_sessions where expires_at <= now()")
        .execute(&mut *tx)
        .await
        .map_err(ApiError::from)?;
    sqlx::query!(
        "insert into ui_sessions (secret_sha256, subject, role, csrf_token, expires_at)
         values ($1, $2, $3, $4, $5)",
        sha256(&secret),
        claims.sub,
        claims.role.as_str(),
        random_hex(),
        expires_at,
    )
    .execute(&mut *tx)
    .await
    .map_err(ApiError::from)?;
    tx.commit().await.map_err(ApiError::from)?;
    let max_age = (expires_at - Utc::now()).num_seconds().max(0);
    let secure = if over_tls(&headers) { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={secret}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    );
    let mut response = Redirect::to(&next_page(next)).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("hex and fixed text"),
    );
    Ok(response)
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// `POST /ui/sign-out`: ends the session.
pub async fn sign_out(
    State(ui): State<Ui>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<CsrfOnly>,
) -> Page {
    session.check(&form.csrf)?;
    if let Some(secret) = cookie(&headers, COOKIE) {
        sqlx::query!(
            "delete from ui_sessions where secret_sha256 = $1",
            sha256(&secret)
        )
        .execute(&ui.pool)
        .await
        .map_err(ApiError::from)?;
    }
    let mut response = Redirect::to("/ui/sign-in").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"
        ))
        .expect("fixed text"),
    );
    Ok(response)
}

#[derive(Deserialize)]
pub struct StreamTokenForm {
    #[serde(default)]
    csrf: String,
    path: String,
}

/// `POST /ui/stream-token` (`csrf`, `path`): a stream token for `path`, minted by the
/// API's `POST /stream-tokens` as the session's user; JSON, for the page's script.
pub async fn stream_token(
    State(ui): State<Ui>,
    session: Session,
    Form(form): Form<StreamTokenForm>,
) -> Response {
    if let Err(failure) = session.check(&form.csrf) {
        return (
            failure.status,
            axum::Json(json!({"error": {"code": "forbidden", "message": failure.message}})),
        )
            .into_response();
    }
    let reply =
        ui.0.api
            .call(
                crate::loopback::Credentials::Caller(&ui.authenticator, &session.caller),
                Method::POST,
                "/stream-tokens",
                Some(&json!({"path": form.path})),
                &[],
            )
            .await;
    (reply.status, axum::Json(reply.body)).into_response()
}

/// A form with only the CSRF field and a button.
pub(super) fn button_form(
    session: &Session,
    action: &str,
    label: &str,
    confirm: Option<&str>,
) -> maud::Markup {
    html! {
        form.inline method="post" action=(action) data-confirm=[confirm] {
            (csrf_field(session))
            button type="submit" { (label) }
        }
    }
}

/// Shorthand for handlers that render a page.
pub(super) fn ok(markup: maud::Markup) -> Page {
    Ok(respond(markup))
}
