//! Authentication and authorization: bearer JWTs (HS256) carrying a role.
//!
//! ## Order of checks
//! The [`authenticate`] middleware runs before any handler, on every `/api/v1` route
//! and on the `/api/v1` fallback (a public operation skips steps 1 and 2; see below):
//! 1. no valid credentials → 401 with a `WWW-Authenticate: Bearer` challenge
//!    ([`TokenError::challenge`]), whether or not the resource exists;
//! 2. valid credentials without the route's role → 403;
//! 3. only then does the handler run, and may answer 404.
//!
//! A route's role is declared once, as the scope of its OpenAPI security requirement,
//! and read from the generated spec into a [`RoutePolicy`]. A route without a declared
//! role is refused (fail closed).
//!
//! ## Public operations
//! An operation whose only security requirement is the empty one (`security(())` in
//! its `#[utoipa::path]`, `security: [{}]` in the document) is [`Access::Public`]: its
//! requests reach the handler without credentials being read, and without a
//! [`Caller`]. The handler must prove the sender another way. Only
//! `POST /webhooks/gitea` is public, and it checks Gitea's HMAC signature of the body.
//! An operation that also names a bearer role needs that role; one with no security
//! requirement at all stops start-up. Everything else (the fallback, another method of
//! a public path) still needs credentials.
//!
//! ## Stream tokens
//! Browsers cannot set headers on `EventSource`, so event streams accept `?token=`,
//! but only a short-lived *stream* token minted for that exact path, and only for a
//! stream the minter's role may open. An API token in a query string is refused, so
//! long-lived credentials never land in URLs or logs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, OriginalUri, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Issuer claim of every switchyard token.
const ISSUER: &str = "switchyard";

/// The longest a stream token may live: it travels in URLs.
pub const MAX_STREAM_TOKEN_TTL: Duration = Duration::from_secs(300);

/// Authentication settings (config section `auth`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 secret shared by every API process, at least 32 characters. When unset,
    /// the secret is read from `secret_file`.
    pub secret: Option<String>,
    /// Where the quick-start secret is kept when `secret` is unset (default
    /// `.switchyard/auth-secret`, relative to the working directory): `switchyard up`
    /// creates it (owner-only permissions) on first run and reuses it, so tokens
    /// survive restarts; `api` and `token` read it.
    pub secret_file: std::path::PathBuf,
    /// Lifetime of stream tokens (at most 5 minutes).
    #[serde(with = "humantime_serde")]
    pub stream_token_ttl: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            secret: None,
            secret_file: ".switchyard/auth-secret".into(),
            stream_token_ttl: Duration::from_secs(60),
        }
    }
}

/// What a caller may do. Each role includes the ones before it. Which operation needs
/// which role is the scope of its OpenAPI security requirement ([`RoutePolicy`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads, and mints stream tokens for the streams it may open.
    Viewer,
    /// Also the day's work: topologies, mutations, graphs and their nodes, migration
    /// runs, interface changes, inbox messages.
    Operator,
    /// Also the registry (repos, plugins and their versions), every event
    /// (`GET /events`) and the audit trail (`GET /audit`).
    Admin,
}

impl Role {
    /// The role's name, as in tokens and OpenAPI scopes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }

    /// The role named by an OpenAPI security scope.
    pub fn from_scope(scope: &str) -> Option<Self> {
        match scope {
            "viewer" => Some(Self::Viewer),
            "operator" => Some(Self::Operator),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// API tokens go in the `Authorization` header; stream tokens only in `?token=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Api,
    Stream,
}

/// The claims of a switchyard JWT.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    /// Who the caller is; recorded as the actor in audit rows.
    pub sub: String,
    pub role: Role,
    pub kind: TokenKind,
    /// For stream tokens: the one path the token opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
}

/// The authenticated caller, placed in request extensions by [`authenticate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub subject: String,
    pub role: Role,
}

/// Why a token was refused; the text is what the 401 says.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("missing credentials: send `Authorization: Bearer <token>`")]
    Missing,
    #[error("the Authorization header must be `Bearer <token>`")]
    NotBearer,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid (bad signature, issuer or format)")]
    Invalid,
    #[error(
        "API tokens are not accepted in the query string; mint a stream token (POST /api/v1/stream-tokens)"
    )]
    ApiTokenInQuery,
    #[error(
        "stream tokens are accepted only as `?token=` on the event stream they were minted for"
    )]
    StreamTokenMisused,
    #[error(
        "send one credential: the Authorization header, or ?token= on an event stream, not both"
    )]
    TwoCredentials,
}

/// The realm every `WWW-Authenticate` challenge names.
const REALM: &str = "switchyard";

impl TokenError {
    /// The `WWW-Authenticate` challenge of the 401 (RFC 6750 §3): `invalid_token` when
    /// a token was presented and refused, `invalid_request` for two credentials at
    /// once, no error code when no bearer token was sent at all.
    pub fn challenge(&self) -> String {
        let error = match self {
            Self::Missing | Self::NotBearer => None,
            Self::TwoCredentials => Some("invalid_request"),
            Self::Expired | Self::Invalid | Self::ApiTokenInQuery | Self::StreamTokenMisused => {
                Some("invalid_token")
            }
        };
        match error {
            Some(error) => format!("Bearer realm=\"{REALM}\", error=\"{error}\""),
            None => format!("Bearer realm=\"{REALM}\""),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header. The scheme is
/// case-insensitive (RFC 9110 §11.1), so `bearer` and `BEARER` work too.
fn bearer_token(value: &header::HeaderValue) -> Result<&str, TokenError> {
    let (scheme, token) = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .ok_or(TokenError::NotBearer)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(TokenError::NotBearer);
    }
    Ok(token)
}

/// Signs and verifies tokens with one HS256 secret.
#[derive(Clone)]
pub struct Authenticator {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    key_id: String,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator { .. }")
    }
}

impl Authenticator {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 0;
        // A name for the secret that does not reveal it: SHA-256 of a fixed label and
        // the secret, first 16 hex digits.
        let key_id = {
            use sha2::Digest;
            let digest = sha2::Sha256::new()
                .chain_update(b"switchyard signing key id\0")
                .chain_update(secret)
                .finalize();
            hex::encode(&digest[..8])
        };
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            key_id,
        }
    }

    /// Names the signing secret without revealing it (16 hex digits). Dashboard
    /// sessions record it, so rotating `auth.secret` ends them as it does the tokens.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// An API token for `subject` with `role`, valid for `ttl`.
    pub fn mint(&self, subject: &str, role: Role, ttl: Duration) -> String {
        self.sign(subject, role, TokenKind::Api, None, ttl)
    }

    /// A stream token opening only `path`, for the caller's role, valid for `ttl`.
    pub fn mint_stream(&self, caller: &Caller, path: &str, ttl: Duration) -> (String, i64) {
        let token = self.sign(
            &caller.subject,
            caller.role,
            TokenKind::Stream,
            Some(path),
            ttl,
        );
        (token, Utc::now().timestamp() + ttl.as_secs() as i64)
    }

    fn sign(
        &self,
        subject: &str,
        role: Role,
        kind: TokenKind,
        path: Option<&str>,
        ttl: Duration,
    ) -> String {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: subject.to_owned(),
            role,
            kind,
            path: path.map(str::to_owned),
            iss: ISSUER.to_owned(),
            iat: now,
            exp: now + ttl.as_secs() as i64,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// Verifies signature, issuer and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }

    /// The caller of a request: a header API token, or a stream token in the query
    /// string of the path it was minted for.
    pub fn caller(
        &self,
        method: &Method,
        path: &str,
        headers: &header::HeaderMap,
        query: Option<&str>,
    ) -> Result<Caller, TokenError> {
        if headers.contains_key(header::AUTHORIZATION) && query_token(query).is_some() {
            return Err(TokenError::TwoCredentials);
        }
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let claims = self.verify(bearer_token(value)?)?;
            if claims.kind != TokenKind::Api {
                return Err(TokenError::StreamTokenMisused);
            }
            return Ok(Caller {
                subject: claims.sub,
                role: claims.role,
            });
        }
        let token = query_token(query).ok_or(TokenError::Missing)?;
        let claims = self.verify(&token)?;
        match claims.kind {
            TokenKind::Api => Err(TokenError::ApiTokenInQuery),
            TokenKind::Stream if method == Method::GET && claims.path.as_deref() == Some(path) => {
                Ok(Caller {
                    subject: claims.sub,
                    role: claims.role,
                })
            }
            TokenKind::Stream => Err(TokenError::StreamTokenMisused),
        }
    }
}

fn query_token(query: Option<&str>) -> Option<String> {
    url_params(query?)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
}

fn url_params(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned()))
}

/// Who may call an operation, as its OpenAPI security requirement declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `security(())`: anyone, without credentials; the handler proves the sender
    /// itself (the Gitea webhook checks its signature).
    Public,
    /// `security(("bearer" = ["<role>"]))`: a token with at least this role.
    Role(Role),
}

/// Who may call each route, keyed by method and route template.
#[derive(Clone, Debug, Default)]
pub struct RoutePolicy {
    access: HashMap<(Method, String), Access>,
}

impl RoutePolicy {
    /// Reads every operation's security requirement from the generated OpenAPI
    /// document: its `bearer` scope, or the empty requirement of a public operation.
    ///
    /// # Panics
    /// When an operation declares neither: a route without a declared role is a bug,
    /// and the process refuses to start (fail closed).
    pub fn from_openapi(api: &utoipa::openapi::OpenApi) -> Self {
        let mut access = HashMap::new();
        for (path, item) in &api.paths.paths {
            for (method, operation) in operations(item) {
                let declared = access_of(operation).unwrap_or_else(|| {
                    panic!(
                        "{method} {path} declares no bearer role scope (nor `security(())` for a public operation) in its OpenAPI security"
                    )
                });
                access.insert((method, path.clone()), declared);
            }
        }
        Self { access }
    }

    /// Who may call a route, if it is declared.
    pub fn access(&self, method: &Method, template: &str) -> Option<Access> {
        self.access
            .get(&(method.clone(), template.to_owned()))
            .copied()
    }

    /// The role a route requires, if it declares one (a public route declares none).
    pub fn required(&self, method: &Method, template: &str) -> Option<Role> {
        match self.access(method, template)? {
            Access::Role(role) => Some(role),
            Access::Public => None,
        }
    }

    /// Whether some method of `template` is declared (so another method is a 405).
    pub fn knows_path(&self, template: &str) -> bool {
        self.access.keys().any(|(_, path)| path == template)
    }

    /// Every (method, template, role) of the routes that need a token, for tests that
    /// walk the route table. Public routes are [`Self::public_routes`].
    pub fn routes(&self) -> impl Iterator<Item = (&Method, &str, Role)> {
        self.access
            .iter()
            .filter_map(|((m, p), access)| match access {
                Access::Role(role) => Some((m, p.as_str(), *role)),
                Access::Public => None,
            })
    }

    /// Every (method, template) anyone may call without credentials.
    pub fn public_routes(&self) -> impl Iterator<Item = (&Method, &str)> {
        self.access
            .iter()
            .filter(|(_, access)| **access == Access::Public)
            .map(|((m, p), _)| (m, p.as_str()))
    }
}

/// What an operation's security requirements declare: the role of its first `bearer`
/// scope; else public when every requirement is the empty one; else nothing.
fn access_of(operation: &utoipa::openapi::path::Operation) -> Option<Access> {
    let requirements: Vec<serde_json::Value> = operation
        .security
        .iter()
        .flatten()
        .filter_map(|requirement| serde_json::to_value(requirement).ok())
        .collect();
    let role = requirements
        .iter()
        .filter_map(|value| value.get("bearer"))
        .filter_map(|scopes| {
            scopes
                .get(0)
                .and_then(|s| s.as_str())
                .and_then(Role::from_scope)
        })
        .next();
    // An empty requirement beside a bearer one would make credentials optional, which
    // no operation means: the role wins.
    let public = !requirements.is_empty()
        && requirements
            .iter()
            .all(|value| value.as_object().is_some_and(|o| o.is_empty()));
    match (role, public) {
        (Some(role), _) => Some(Access::Role(role)),
        (None, true) => Some(Access::Public),
        (None, false) => None,
    }
}

fn operations(
    item: &utoipa::openapi::PathItem,
) -> Vec<(Method, &utoipa::openapi::path::Operation)> {
    [
        (Method::GET, &item.get),
        (Method::POST, &item.post),
        (Method::PUT, &item.put),
        (Method::PATCH, &item.patch),
        (Method::DELETE, &item.delete),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.as_ref().map(|op| (method, op)))
    .collect()
}

/// Everything [`authenticate`] needs.
#[derive(Clone, Debug)]
pub struct AuthState {
    pub authenticator: Arc<Authenticator>,
    pub policy: Arc<RoutePolicy>,
}

/// A public route goes straight on to its handler, without a [`Caller`]. Any other:
/// 401 without valid credentials, 403 without the route's role, else on to the handler
/// with a [`Caller`] and the [`RoutePolicy`] in the request extensions.
pub async fn authenticate(
    State(auth): State<AuthState>,
    matched: Option<MatchedPath>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    // HEAD runs the GET handler, so it needs GET's role.
    let method = if request.method() == Method::HEAD {
        Method::GET
    } else {
        request.method().clone()
    };
    let access = matched
        .as_ref()
        .and_then(|template| auth.policy.access(&method, template.as_str()));
    if access == Some(Access::Public) {
        // No credentials are read, so none can be refused: the handler proves the
        // sender itself.
        return Ok(next.run(request).await);
    }
    // Inside the nested `/api/v1` router the URI has lost its prefix; stream tokens are
    // bound to the full path the client used.
    let uri = request
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| request.uri().clone(), |original| original.0.clone());
    let caller = auth
        .authenticator
        .caller(request.method(), uri.path(), request.headers(), uri.query())
        .map_err(ApiError::Unauthorized)?;
    // Unmatched paths (the fallback) need only authentication: the 404 says nothing.
    if let Some(template) = matched {
        authorize(&auth.policy, &caller, access, template.as_str())?;
    }
    request.extensions_mut().insert(caller);
    // Minting a stream token checks the role its stream needs against the same table.
    request.extensions_mut().insert(auth.policy.clone());
    Ok(next.run(request).await)
}

/// 403 unless `caller` has the role of the matched route (`access`, as declared for
/// `template`).
fn authorize(
    policy: &RoutePolicy,
    caller: &Caller,
    access: Option<Access>,
    template: &str,
) -> Result<(), ApiError> {
    match access {
        Some(Access::Role(role)) if caller.role >= role => Ok(()),
        Some(Access::Role(role)) => Err(ApiError::Forbidden(format!(
            "this operation needs the {} role; your token has {}",
            role.as_str(),
            caller.role.as_str()
        ))),
        // Handled before credentials are read.
        Some(Access::Public) => Ok(()),
        // Another method of a declared path: the router answers 405.
        None if policy.knows_path(template) => Ok(()),
        None => Err(ApiError::Forbidden(
            "this operation declares no role".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role) -> Caller {
        Caller {
            subject: "ada".into(),
            role,
        }
    }

    #[test]
    fn api_tokens_round_trip_and_expire() {
        let auth = Authenticator::new(b"0123456789abcdef0123456789abcdef");
        let claims = auth
            .verify(&auth.mint("ada", Role::Operator, Duration::from_secs(60)))
            .unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.role, claims.kind),
            ("ada", Role::Operator, TokenKind::Api)
        );
        let expired = auth.sign("ada", Role::Admin, TokenKind::Api, None, Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(auth.verify(&expired).unwrap_err(), TokenError::Expired);
        let other = Authenticator::new(b"another secret, another deployment");
        assert_eq!(
            other
                .verify(&auth.mint("ada", Role::Admin, Duration::from_secs(60)))
                .unwrap_err(),
            TokenError::Invalid
        );
    }

    #[test]
    fn stream_tokens_open_only_their_path_and_only_from_the_query() {
        let auth = Authenticator::new(b"0123456789abcdef0123456789abcdef");
        let path = "/api/v1/topologies/x/events";
        let (stream, _) = auth.mint_stream(&caller(Role::Viewer), path, Duration::from_secs(60));
        let none = header::HeaderMap::new();
        let query = format!("token={stream}");
        assert_eq!(
            auth.caller(&Method::GET, path, &none, Some(&query))
                .unwrap(),
            caller(Role::Viewer)
        );
        assert_eq!(
            auth.caller(
                &Method::GET,
                "/api/v1/topologies/y/events",
                &none,
                Some(&query)
            )
            .unwrap_err(),
            TokenError::StreamTokenMisused
        );
        assert_eq!(
            auth.caller(&Method::POST, path, &none, Some(&query))
                .unwrap_err(),
            TokenError::StreamTokenMisused
        );
        let mut headers = header::HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {stream}").parse().unwrap(),
        );
        assert_eq!(
            auth.caller(&Method::GET, path, &headers, None).unwrap_err(),
            TokenError::StreamTokenMisused
        );
        let api = auth.mint("ada", Role::Admin, Duration::from_secs(60));
        let query = format!("token={api}");
        assert_eq!(
            auth.caller(&Method::GET, path, &none, Some(&query))
                .unwrap_err(),
            TokenError::ApiTokenInQuery
        );
        assert_eq!(
            auth.caller(&Method::GET, path, &none, None).unwrap_err(),
            TokenError::Missing
        );
    }

    /// A document with a public `POST /hook`, a viewer's `GET /private`, and `extra`
    /// operations of `/extra`.
    fn spec(extra: serde_json::Value) -> utoipa::openapi::OpenApi {
        let ok = serde_json::json!({ "200": { "description": "ok" } });
        serde_json::from_value(serde_json::json!({
            "openapi": "3.1.0",
            "info": { "title": "t", "version": "1" },
            "paths": {
                "/hook": { "post": { "responses": ok, "security": [{}] } },
                "/private": { "get": { "responses": ok, "security": [{ "bearer": ["viewer"] }] } },
                "/extra": extra,
            }
        }))
        .unwrap()
    }

    #[test]
    fn the_policy_reads_roles_and_public_operations() {
        let both = serde_json::json!({ "get": {
            "responses": { "200": { "description": "ok" } },
            "security": [{}, { "bearer": ["admin"] }]
        }});
        let policy = RoutePolicy::from_openapi(&spec(both));
        assert_eq!(policy.access(&Method::POST, "/hook"), Some(Access::Public));
        assert_eq!(policy.required(&Method::POST, "/hook"), None);
        assert_eq!(
            policy.access(&Method::GET, "/private"),
            Some(Access::Role(Role::Viewer))
        );
        // Credentials are never optional: a bearer requirement beside the empty one wins.
        assert_eq!(
            policy.access(&Method::GET, "/extra"),
            Some(Access::Role(Role::Admin))
        );
        assert_eq!(policy.access(&Method::GET, "/hook"), None);
        assert!(policy.knows_path("/hook"));
        let public: Vec<_> = policy.public_routes().collect();
        assert_eq!(public, [(&Method::POST, "/hook")]);
        assert!(policy.routes().all(|(_, path, _)| path != "/hook"));
    }

    #[test]
    #[should_panic(expected = "GET /extra declares no bearer role scope")]
    fn an_operation_without_security_stops_start_up() {
        let bare =
            serde_json::json!({ "get": { "responses": { "200": { "description": "ok" } } } });
        RoutePolicy::from_openapi(&spec(bare));
    }

    #[test]
    fn the_gitea_webhook_is_the_only_public_operation() {
        let policy = RoutePolicy::from_openapi(&crate::openapi());
        let public: Vec<_> = policy.public_routes().collect();
        assert_eq!(public, [(&Method::POST, "/api/v1/webhooks/gitea")]);
    }

    /// The status and body of `method path` through [`authenticate`], with the bearer
    /// `token` if given; a handler answers with its caller's subject, or `anonymous`.
    async fn through_authenticate(
        method: Method,
        path: &str,
        token: Option<&str>,
    ) -> (axum::http::StatusCode, String) {
        use axum::routing::{get, post};
        use tower::ServiceExt;
        async fn who(caller: Option<axum::Extension<Caller>>) -> String {
            caller.map_or_else(|| "anonymous".to_owned(), |c| c.0.subject)
        }
        let auth = AuthState {
            authenticator: Arc::new(Authenticator::new(SECRET)),
            policy: Arc::new(RoutePolicy::from_openapi(&spec(serde_json::json!({})))),
        };
        let app = axum::Router::new()
            .route("/hook", post(who))
            .route("/private", get(who))
            .layer(axum::middleware::from_fn_with_state(auth, authenticate));
        let mut request = axum::http::Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = app
            .oneshot(request.body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[tokio::test]
    async fn public_routes_need_no_credentials_and_everything_else_does() {
        use axum::http::StatusCode;
        let token = Authenticator::new(SECRET).mint("ada", Role::Viewer, Duration::from_secs(60));
        let anonymous = (StatusCode::OK, "anonymous".to_owned());
        assert_eq!(
            through_authenticate(Method::POST, "/hook", None).await,
            anonymous
        );
        // Credentials sent to a public route are not even read.
        assert_eq!(
            through_authenticate(Method::POST, "/hook", Some("not-a-token")).await,
            anonymous
        );
        for (method, path) in [
            (Method::GET, "/hook"),
            (Method::GET, "/private"),
            (Method::GET, "/nowhere"),
        ] {
            let (status, _) = through_authenticate(method.clone(), path, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        }
        assert_eq!(
            through_authenticate(Method::GET, "/private", Some(&token)).await,
            (StatusCode::OK, "ada".to_owned())
        );
        let (status, _) = through_authenticate(Method::GET, "/hook", Some(&token)).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    }
}
