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
use axum::extract::{FromRequestParts, OptionalFromRequestParts, OriginalUri, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use maud::html;
use rand::RngCore;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Failure, Page, Ui, page};
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
    /// When the session ends: the exchanged token's expiry.
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

/// Why a request has no session.
pub enum NoSession {
    /// A page or a form post: to the sign-in page, then back to `next`; `ended` when a
    /// cookie was sent but its session is over (expired, signed out, or the signing
    /// secret rotated), so the sign-in page says so.
    SignIn { next: String, ended: bool },
    /// The script's `POST /ui/stream-token`: a 401 it can read.
    Unauthorized,
    /// The session could not be read (the database is down: a 503).
    Failed(Failure),
}

impl IntoResponse for NoSession {
    fn into_response(self) -> Response {
        match self {
            Self::SignIn { next, ended } => Redirect::to(&format!(
                "/ui/sign-in?next={}{}",
                super::encode(&next),
                if ended { "&ended=true" } else { "" }
            ))
            .into_response(),
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
        let uri = parts
            .extensions
            .get::<OriginalUri>()
            .map_or_else(|| parts.uri.clone(), |uri| uri.0.clone());
        let secret = cookie(&parts.headers, COOKIE);
        let missing = || {
            if uri.path() == "/ui/stream-token" {
                return NoSession::Unauthorized;
            }
            // A form post returns to the page the form was on.
            let next = if parts.method == Method::GET {
                uri.path_and_query()
                    .map_or("/ui/", |p| p.as_str())
                    .to_owned()
            } else {
                parts
                    .headers
                    .get(header::REFERER)
                    .and_then(|r| r.to_str().ok())
                    .and_then(|r| r.parse::<axum::http::Uri>().ok())
                    .and_then(|r| r.path_and_query().map(|p| p.as_str().to_owned()))
                    .unwrap_or_else(|| "/ui/".to_owned())
            };
            NoSession::SignIn {
                next: next_page(Some(&next)),
                ended: secret.is_some(),
            }
        };
        let Some(secret) = secret.as_deref() else {
            return Err(missing());
        };
        let row = sqlx::query!(
            "select subject, role, csrf_token, expires_at from ui_sessions
             where secret_sha256 = $1 and key_id = $2 and expires_at > now()",
            sha256(secret),
            ui.authenticator.key_id(),
        )
        .fetch_optional(&ui.pool)
        .await
        .map_err(|e| NoSession::Failed(Failure::from(ApiError::from(e))))?;
        let Some(row) = row else {
            return Err(missing());
        };
        let role = Role::from_scope(&row.role).ok_or_else(missing)?;
        Ok(Session {
            caller: Caller {
                subject: row.subject,
                role,
            },
            csrf: row.csrf_token,
            expires_at: row.expires_at,
        })
    }
}

impl OptionalFromRequestParts<Ui> for Session {
    type Rejection = NoSession;

    /// `None` without a live session; an error only when it could not be read.
    async fn from_request_parts(parts: &mut Parts, ui: &Ui) -> Result<Option<Self>, NoSession> {
        match <Session as FromRequestParts<Ui>>::from_request_parts(parts, ui).await {
            Ok(session) => Ok(Some(session)),
            Err(NoSession::Failed(failure)) => Err(NoSession::Failed(failure)),
            Err(_) => Ok(None),
        }
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

/// `?next=&ended=` of the sign-in page.
#[derive(Deserialize)]
pub struct SignInQuery {
    /// The dashboard page to return to.
    next: Option<String>,
    /// Set when a session just ended, so the page says why it is shown.
    #[serde(default)]
    ended: bool,
}

/// Where to go after signing in: a dashboard page (a path and query of printable
/// ASCII under `/ui/`), never another site; anything else is `/ui/`.
fn next_page(next: Option<&str>) -> String {
    match next {
        Some(next)
            if next.starts_with("/ui/")
                && !next.starts_with("/ui//")
                && next.bytes().all(|b| b.is_ascii_graphic())
                && next.parse::<axum::http::uri::PathAndQuery>().is_ok() =>
        {
            next.to_owned()
        }
        _ => "/ui/".to_owned(),
    }
}

/// `GET /ui/sign-in`: the form.
pub async fn sign_in_page(
    axum::extract::Query(query): axum::extract::Query<SignInQuery>,
) -> Response {
    let ended = query
        .ended
        .then_some("Your session has ended (the token expired, you signed out, or the signing secret changed): sign in again to continue.");
    sign_in_form(StatusCode::OK, query.next.as_deref(), ended)
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

/// The sign-in form.
#[derive(Deserialize)]
pub struct SignIn {
    /// An API token, as `switchyard token` prints it (an `export TOKEN=` or `Bearer `
    /// before it is ignored).
    token: String,
    /// The dashboard page to go to next.
    next: Option<String>,
}

/// The token in what was pasted: without an `export TOKEN=` or `Bearer ` before it,
/// or quotes around it.
fn pasted_token(pasted: &str) -> &str {
    let mut token = pasted.trim();
    for prefix in ["export TOKEN=", "TOKEN=", "Bearer ", "bearer "] {
        token = token.strip_prefix(prefix).unwrap_or(token).trim();
    }
    token.trim_matches(|c| c == '"' || c == '\'')
}

/// `POST /ui/sign-in`: an API token for a session cookie.
pub async fn sign_in(State(ui): State<Ui>, headers: HeaderMap, Form(form): Form<SignIn>) -> Page {
    let next = form.next.as_deref();
    let claims = match ui.authenticator.verify(pasted_token(&form.token)) {
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
        "insert into ui_sessions (secret_sha256, subject, role, key_id, csrf_token, expires_at)
         values ($1, $2, $3, $4, $5, $6)",
        sha256(&secret),
        claims.sub,
        claims.role.as_str(),
        ui.authenticator.key_id(),
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

/// `POST /ui/sign-out`: ends the session (its CSRF token must come along). Without a
/// session there is nothing to end: the cookie is cleared all the same.
pub async fn sign_out(
    State(ui): State<Ui>,
    session: Option<Session>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Page {
    if let Some(session) = session {
        let csrf = form_urlencoded::parse(&body)
            .find(|(key, _)| key == "csrf")
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default();
        session.check(&csrf)?;
        if let Some(secret) = cookie(&headers, COOKIE) {
            sqlx::query!(
                "delete from ui_sessions where secret_sha256 = $1",
                sha256(&secret)
            )
            .execute(&ui.pool)
            .await
            .map_err(ApiError::from)?;
        }
    }
    let mut response = Redirect::to("/ui/sign-in").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "switchyard_session=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    Ok(response)
}

/// The script's request for a stream token.
#[derive(Deserialize)]
pub struct StreamTokenForm {
    /// The page's CSRF token.
    #[serde(default)]
    csrf: String,
    /// The `/api/v1/…/events` path to open.
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
