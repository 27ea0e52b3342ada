//! # The operator dashboard (`/ui/`)
//!
//! Server-rendered HTML ([maud]) with one small script of our own
//! (`assets/ui.js`) and one stylesheet, both compiled into the binary: nothing is
//! fetched at build or run time, and there is no Node build step.
//!
//! ## Acting as the signed-in user
//! Every read and every change a page makes goes through the API's own `/api/v1`
//! routes in process ([`Loopback`]), with a short-lived token minted for the session's
//! subject and role. So roles, validation, transactions, audit rows and events are
//! exactly the API's, and a refusal is shown inline with the API's own message. The
//! exceptions are reads no API route serves yet: the overview's counts and failed
//! migration runs ([`overview`]), and the repos a published change has notified
//! ([`interface_changes`]). They are read-only queries.
//!
//! ## Sessions and CSRF
//! [`session`]: `/ui/sign-in` exchanges an API token for a session cookie (HttpOnly,
//! `SameSite=Strict`, `Secure` behind TLS, expiring with the token); every
//! state-changing form carries the session's CSRF token, and a post without it is
//! refused (403) before anything is done. A button the role may not use is not shown
//! (the role table is the API's, read from its OpenAPI document).
//!
//! ## Live pages
//! A topology, a graph and a repo page follow their resource's event stream (a stream
//! token minted through `/ui/stream-token`) and re-render their live part from the
//! server on each event; after a dropped connection they resume by event id, without
//! losing or repeating a line.

use std::sync::Arc;

use axum::Router;
use axum::extract::{OriginalUri, Request};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use serde_json::Value;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::AppState;
use crate::auth::RoutePolicy;
use crate::error::ApiError;
use crate::loopback::{Credentials, Loopback, Refusal};

mod audit;
mod forge;
mod graphs;
mod interface_changes;
mod overview;
mod plugins;
mod repos;
pub mod session;
mod topologies;

pub use session::Session;

/// Rows per page on every list (the API allows up to 500).
const PAGE_SIZE: u32 = 50;

/// What every dashboard handler shares (cheap to clone).
#[derive(Clone)]
pub struct Ui(Arc<Inner>);

struct Inner {
    state: AppState,
    api: Loopback,
    /// The API's role table, to hide what a role may not use.
    policy: RoutePolicy,
}

impl std::ops::Deref for Ui {
    type Target = AppState;
    fn deref(&self) -> &AppState {
        &self.0.state
    }
}

/// The dashboard's routes, all under `/ui`.
pub fn router(state: AppState, api: Loopback) -> Router {
    let policy = RoutePolicy::from_openapi(&crate::openapi());
    let ui = Ui(Arc::new(Inner { state, api, policy }));
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(overview::page))
        .route("/ui/overview", get(overview::fragment))
        .route("/ui/assets/ui.js", get(script))
        .route("/ui/assets/ui.css", get(stylesheet))
        .route(
            "/ui/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .route("/ui/sign-out", post(session::sign_out))
        .route("/ui/stream-token", post(session::stream_token))
        .route(
            "/ui/interface-changes",
            get(interface_changes::list).post(interface_changes::create),
        )
        .route(
            "/ui/interface-changes/{id}",
            get(interface_changes::edit_page).post(interface_changes::update),
        )
        .route(
            "/ui/interface-changes/{id}/publish",
            post(interface_changes::publish),
        )
        .route(
            "/ui/interface-changes/{id}/resolve",
            post(interface_changes::resolve),
        )
        .route(
            "/ui/topologies",
            get(topologies::list).post(topologies::create),
        )
        .route("/ui/topologies/{id}", get(topologies::show))
        .route("/ui/topologies/{id}/live", get(topologies::fragment))
        .route("/ui/topologies/{id}/mutations", post(topologies::enqueue))
        .route("/ui/graphs", get(graphs::list).post(graphs::create))
        .route("/ui/graphs/{slug}", get(graphs::show))
        .route("/ui/graphs/{slug}/live", get(graphs::fragment))
        .route("/ui/graphs/{slug}/re-migrate", post(graphs::re_migrate))
        .route(
            "/ui/graphs/{slug}/migrations/{run_id}/cancel",
            post(graphs::cancel),
        )
        .route("/ui/repos", get(repos::list).post(repos::register))
        .route("/ui/repos/{slug}/archive", post(repos::archive))
        .route("/ui/rfcs", get(forge::rfcs))
        .route("/ui/rfcs/{slug}", get(forge::rfc))
        .route("/ui/rfcs/{slug}/live", get(forge::rfc_fragment))
        .route("/ui/forge", get(forge::cache))
        .route("/ui/forge/live", get(forge::fragment))
        .route("/ui/forge/{action}", post(forge::request))
        .route("/ui/plugins", get(plugins::list).post(plugins::register))
        .route("/ui/plugins/{name}", get(plugins::show))
        .route("/ui/plugins/{name}/versions", post(plugins::add_version))
        .route("/ui/audit", get(audit::show))
        .route("/ui/graphs/{slug}/nodes", post(graphs::write_nodes))
        .route("/ui/repos/{slug}", get(repos::show))
        .route("/ui/repos/{slug}/live", get(repos::fragment))
        .route(
            "/ui/repos/{slug}/inbox/{message_id}/read",
            post(repos::mark_read),
        )
        .route("/ui/{*rest}", get(not_found))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(ui)
        .layer(axum::middleware::from_fn(same_origin_posts))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
            ),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(CatchPanicLayer::custom(crate::routes::panic_response))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(crate::routes::request_span)
                .on_response(crate::routes::log_response),
        )
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("assets/ui.js"),
    )
        .into_response()
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/ui.css"),
    )
        .into_response()
}

async fn not_found(OriginalUri(uri): OriginalUri) -> Failure {
    Failure::new(
        StatusCode::NOT_FOUND,
        format!("there is no dashboard page {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> Failure {
    Failure::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not accept {method}", uri.path()),
    )
}

/// Refuses a state-changing request another site made the browser send. With
/// `SameSite=Strict` cookies and CSRF tokens this is a third guard, and the one that
/// covers the sign-in form (no session, so no CSRF token yet):
/// - a browser that sends `Sec-Fetch-Site` is believed: `same-origin` (or `none`, the
///   user's own navigation) passes, anything else is refused;
/// - otherwise an `Origin` must name this host, as the request's `Host` or, behind a
///   proxy that rewrites it, `X-Forwarded-Host` or `Forwarded: host=` (a page on
///   another site cannot set those); `Origin: null` (a sandboxed or `data:` page) is
///   foreign. A request without `Origin` (not sent by a browser's cross-site form
///   post) passes.
async fn same_origin_posts(request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) || same_origin(request.headers()) {
        return next.run(request).await;
    }
    Failure::new(
        StatusCode::FORBIDDEN,
        "this form was sent from another site; open the dashboard and submit it there",
    )
    .into_response()
}

/// Whether a state-changing request comes from the dashboard's own pages (see
/// [`same_origin_posts`]).
fn same_origin(headers: &axum::http::HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    let Some(origin) = text("origin") else {
        return true;
    };
    let Some((_, origin_host)) = origin.split_once("://") else {
        return false;
    };
    let forwarded = text("forwarded").and_then(|value| {
        value
            .split([';', ','])
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(key, _)| key.eq_ignore_ascii_case("host"))
            .map(|(_, host)| host.trim_matches('"'))
    });
    [text("host"), text("x-forwarded-host"), forwarded]
        .into_iter()
        .flatten()
        .any(|host| host.eq_ignore_ascii_case(origin_host))
}

/// `?cursor=` of a paged page.
#[derive(Debug, Default, Deserialize)]
pub(super) struct CursorQuery {
    /// The API's `next_cursor` for the page to show; none for the first.
    cursor: Option<String>,
}

/// A form that carries only its CSRF token (a button that changes something).
#[derive(Debug, Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `?notice=` after a change: which confirmation to show.
#[derive(Debug, Default, Deserialize)]
pub(super) struct NoticeQuery {
    notice: Option<String>,
}

/// The confirmation a page shows after a change, by its `?notice=` code (a fixed set:
/// nothing from the URL is shown as such).
fn notice_banner(code: Option<&str>) -> Markup {
    let text = match code {
        Some("drafted") => "Draft created.",
        Some("saved") => "Draft saved.",
        Some("published") => "Published: the notifier tells the affected repos.",
        Some("resolved") => "Resolved.",
        Some("created") => "Created.",
        Some("enqueued") => "Enqueued: the mutator applies it in seq order.",
        Some("requested") => "Migration run requested.",
        Some("cancelled") => "Cancel requested.",
        Some("read") => "Marked read.",
        Some("archived") => "Archived.",
        Some("written") => "Nodes written.",
        Some("sweep") => "Requested: the forge role picks it up at its next turn.",
        _ => return html! {},
    };
    html! { div.banner.notice role="status" { (text) } }
}

impl Ui {
    /// `GET /api/v1{path}` as the session's user.
    async fn get(&self, session: &Session, path: &str) -> Result<Value, Refusal> {
        self.send(session, Method::GET, path, None, &[]).await
    }

    /// One API call as the session's user: its body, or its refusal.
    async fn send(
        &self,
        session: &Session,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&'static str, String)],
    ) -> Result<Value, Refusal> {
        self.0
            .api
            .call(
                Credentials::Caller(&self.authenticator, &session.caller),
                method,
                path,
                body,
                headers,
            )
            .await
            .into_result()
    }

    /// Whether the session's role may call `method template` (a path under `/api/v1`
    /// as written in the OpenAPI document, for example `/graphs/{slug}/re-migrate`).
    fn may(&self, session: &Session, method: Method, template: &str) -> bool {
        self.0
            .policy
            .required(&method, &format!("/api/v1{template}"))
            .is_some_and(|role| session.caller.role >= role)
    }
}

/// A page that could not be shown: the status and the reason, rendered as a page.
#[derive(Debug)]
pub struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl From<Refusal> for Failure {
    fn from(refusal: Refusal) -> Self {
        Self::new(refusal.status, refusal.message)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            page(
                None,
                "Error",
                html! {
                    h1 { (self.status.as_u16()) " " (self.status.canonical_reason().unwrap_or("")) }
                    div.banner.error { (self.message) }
                    p { a href="/ui/" { "Back to the overview" } }
                },
            ),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// What a page handler returns.
type Page = Result<Response, Failure>;

/// Where a form post ends: on success, a redirect to `next(answer)` (so a reload does
/// not post again); on a refusal, the form's page again, rendered by `again` with the
/// API's message and what was typed, under the refusal's status.
async fn after<Fut>(
    result: Result<Value, Refusal>,
    next: impl FnOnce(&Value) -> String,
    again: impl FnOnce(Refusal) -> Fut,
) -> Page
where
    Fut: Future<Output = Result<Markup, Failure>>,
{
    match result {
        Ok(answer) => Ok(Redirect::to(&next(&answer)).into_response()),
        Err(refusal) => {
            let status = refusal.status;
            let markup = again(refusal).await?;
            let mut response = (status, markup).into_response();
            if status == StatusCode::SERVICE_UNAVAILABLE {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Ok(response)
        }
    }
}

/// A page, as a response.
fn ok(markup: Markup) -> Page {
    Ok(markup.into_response())
}

impl From<ApiError> for Failure {
    /// A database error of the dashboard's own reads: an outage is the API's 503 (with
    /// `Retry-After`), anything else a 500 that says nothing of its cause.
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

/// A form with only the CSRF field and a button; `confirm` asks first.
fn button_form(session: &Session, action: &str, label: &str, confirm: Option<&str>) -> Markup {
    html! {
        form.inline method="post" action=(action) data-confirm=[confirm] {
            (csrf_field(session))
            button type="submit" { (label) }
        }
    }
}

/// The page frame: navigation, the signed-in user and sign-out, the CSRF token for
/// the script, and `body`.
fn page(session: Option<&Session>, title: &str, body: Markup) -> Markup {
    const NAV: [(&str, &str); 9] = [
        ("/ui/", "Overview"),
        ("/ui/interface-changes", "Interface changes"),
        ("/ui/topologies", "Topologies"),
        ("/ui/graphs", "Graphs"),
        ("/ui/plugins", "Plugins"),
        ("/ui/repos", "Repos"),
        ("/ui/rfcs", "RFCs"),
        ("/ui/forge", "Forge"),
        ("/ui/audit", "Audit"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(session) = session {
                    meta name="csrf-token" content=(session.csrf);
                }
                title { (title) " · switchyard" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/ui/assets/ui.css";
                script src="/ui/assets/ui.js" defer {}
            }
            body {
                header {
                    b { "switchyard" }
                    @if let Some(session) = session {
                        // The audit trail is the admin's; nobody else is shown its link.
                        @for (href, label) in NAV.into_iter().filter(|(href, _)| *href != "/ui/audit" || session.caller.role == crate::auth::Role::Admin) {
                            a href=(href) class=[(label == title).then_some("here")] { (label) }
                        }
                    }
                    @if let Some(session) = session {
                        span.who {
                            span #who { (session.caller.subject) " (" (session.caller.role.as_str()) ")" }
                            form.inline method="post" action="/ui/sign-out" {
                                (csrf_field(session))
                                button.secondary type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The hidden CSRF field every state-changing form carries.
fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// An inline error banner (the API's message), if any.
fn error_banner(error: Option<&Refusal>) -> Markup {
    html! {
        @if let Some(error) = error {
            div.banner.error role="alert" {
                b { (error.status.as_u16()) " " } (error.message)
            }
        }
    }
}

/// A status badge, styled by its value.
fn badge(value: &str) -> Markup {
    html! { span class={"badge status-" (value)} { (value) } }
}

/// A JSON value as text (strings without quotes, null as an empty string).
fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A timestamp shown to the second (`2026-12-01 11:25:31`), or nothing.
fn when(value: &Value) -> String {
    let text = text(value);
    match chrono::DateTime::parse_from_rfc3339(&text) {
        Ok(time) => time.format("%Y-%m-%d %H:%M:%S").to_string(),
        Err(_) => text,
    }
}

/// `?limit=…&cursor=…` for a list page, the cursor taken from the page's own query.
fn page_query(cursor: Option<&str>) -> String {
    let mut query = format!("limit={PAGE_SIZE}");
    if let Some(cursor) = cursor.filter(|c| !c.is_empty()) {
        query.push_str("&cursor=");
        query.push_str(&encode(cursor));
    }
    query
}

/// "Next page" when the API says there is one (`next_cursor`), and "First page" when
/// this is not the first. `base` is the page's path with its other query parameters;
/// `param` names this list's cursor parameter, and `current` is its value now.
fn pager(base: &str, param: &str, current: Option<&str>, list: &Value) -> Markup {
    let join = if base.contains('?') { "&" } else { "?" };
    html! {
        div.pager {
            @if let Some(next) = list["next_cursor"].as_str() {
                a.next href={(base) (join) (param) "=" (encode(next))} { "Next page →" }
            }
            @if current.is_some_and(|c| !c.is_empty()) {
                a href=(base) { "First page" }
            }
        }
    }
}

/// Percent-encodes a path segment or query value.
fn encode(value: &str) -> String {
    crate::loopback::segment(value)
}

/// The event names a live section listens for: every event type and stream frame.
fn event_names() -> String {
    let mut names: Vec<&str> = switchyard_bus::EventType::ALL
        .iter()
        .map(|kind| kind.as_str())
        .collect();
    names.extend(["snapshot", "reset", "lagged"]);
    names.join(" ")
}

/// A table of `items` (JSON objects): one column per `(header, key)`. Times (keys
/// ending in `_at`) are shown to the second, lists joined with commas, `true` as
/// "yes". `link` makes the first column a link to the item's page.
fn list_table(
    id: &str,
    items: &[Value],
    columns: &[(&str, &str)],
    link: Option<&dyn Fn(&Value) -> String>,
) -> Markup {
    let cell = |item: &Value, key: &str| -> String {
        let value = &item[key];
        match value {
            Value::Array(_) => joined(value),
            Value::Bool(true) => "yes".to_owned(),
            Value::Bool(false) => String::new(),
            Value::Object(_) => value.to_string(),
            _ if key.ends_with("_at") => when(value),
            _ => text(value),
        }
    };
    html! {
        @if items.is_empty() {
            p.muted id=(id) { "None." }
        } @else {
            table id=(id) {
                thead { tr { @for (header, _) in columns { th { (header) } } } }
                tbody {
                    @for item in items {
                        tr {
                            @for (n, (_, key)) in columns.iter().enumerate() {
                                td {
                                    @match (n, link) {
                                        (0, Some(link)) => a href=(link(item)) { (cell(item, key)) },
                                        _ => (cell(item, key)),
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A JSON list of strings as `a, b, c` (anything else as [`text`]).
fn joined(value: &Value) -> String {
    match value.as_array() {
        Some(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
        None => text(value),
    }
}

/// The items of an API list answer (`{"items": [...]}`), or none.
fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

/// A form with one JSON text area (`json`), for the bodies too rich for fields (a
/// plugin, its version's steps, graph nodes).
fn json_form(
    session: &Session,
    id: &str,
    action: &str,
    label: &str,
    placeholder: &str,
    typed: Option<&str>,
    button: &str,
) -> Markup {
    html! {
        form.stack id=(id) method="post" action=(action) {
            (csrf_field(session))
            label { (label)
                textarea name="json" required placeholder=(placeholder) { (typed.unwrap_or("")) }
            }
            button type="submit" { (button) }
        }
    }
}

/// A form's JSON text area, parsed: the value, or a 422 naming `field` and where the
/// text stops being JSON.
fn parse_json(field: &str, typed: &str) -> Result<Value, Refusal> {
    serde_json::from_str(typed).map_err(|e| Refusal {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: "invalid_request".to_owned(),
        message: format!("{field} is not valid JSON: {e}"),
    })
}

/// The form of [`json_form`].
#[derive(Debug, Deserialize)]
pub(super) struct JsonForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    json: String,
}

/// Rendered JSON, pretty-printed.
fn pretty(value: &Value) -> Markup {
    html! { pre { (serde_json::to_string_pretty(value).unwrap_or_default()) } }
}

/// Lets handlers take `State<Ui>`.
impl axum::extract::FromRef<Ui> for AppState {
    fn from_ref(ui: &Ui) -> AppState {
        ui.0.state.clone()
    }
}
