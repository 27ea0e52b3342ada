//! Event streams (SSE): `GET /topologies/{id}/events`, `GET /repos/{slug}/events`,
//! `GET /graphs/{slug}/events`, `GET /rfcs/{slug}/events` and, for admins, any subject
//! filter with `GET /events?subject=`. The mechanism is beside them: [`live`] opens a
//! client's stream (snapshot, resume by id, bounds), `hub` is the process's one shared
//! JetStream subscription that fans events out to every stream, and `filter` finds the
//! clients an event's subject goes to.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use switchyard_bus::subjects;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

mod filter;
mod hub;
pub mod live;

use super::{dispatch, graphs, mutations, repos, rfcs, topologies};
use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Path, Query};
use crate::openapi::Refusals;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(topology_events))
        .routes(routes!(repo_events))
        .routes(routes!(graph_events))
        .routes(routes!(rfc_events))
        .routes(routes!(any_events))
}

/// Query of an event stream. `token` is read by authentication (stream tokens).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Resume after this event id (for clients that cannot send `Last-Event-ID`).
    #[param(pattern = "^[0-9]{1,19}$")]
    pub last_event_id: Option<String>,
    /// A stream token from `POST /stream-tokens` (browsers' EventSource).
    pub token: Option<String>,
}

/// `?subject=` of the admin stream, plus the common parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AnyParams {
    /// A subject filter such as `topology.*.mutation.failed` (no deployment prefix).
    #[param(
        pattern = "^(>|([A-Za-z0-9_%-]+|[*])([.]([A-Za-z0-9_%-]+|[*]))*([.]>)?)$",
        max_length = 256
    )]
    pub subject: String,
    #[param(pattern = "^[0-9]{1,19}$")]
    pub last_event_id: Option<String>,
    pub token: Option<String>,
}

/// Where to resume: the `Last-Event-ID` header (any value; an unknown one resets, as
/// browsers expect) or the `last_event_id` query parameter (must be an id: 422 if not).
fn last_event_id(headers: &HeaderMap, query: Option<&str>) -> Result<Option<String>, ApiError> {
    if let Some(id) = query
        && (id.is_empty() || id.len() > 19 || !id.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(ApiError::Unprocessable(format!(
            "last_event_id {id:?} is not an event id (the digits of a previous frame's id)"
        )));
    }
    let header = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    Ok(header.or(query).map(str::to_owned))
}

/// Opens the stream of one resource's `subject`, resuming where the client says.
async fn follow<F, Fut, S>(
    app: &AppState,
    headers: &HeaderMap,
    params: &StreamParams,
    subject: &str,
    snapshot: F,
) -> Result<Response, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<S, ApiError>>,
    S: serde::Serialize,
{
    let start = last_event_id(headers, params.last_event_id.as_deref())?;
    app.live.open(subject, start, snapshot).await
}

/// One SSE frame, as documented (the wire format is `id:`, `event:`, `data:` lines).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct EventFrame {
    /// The event's position in the stream; send it back as `Last-Event-ID` to resume.
    id: Option<String>,
    /// `snapshot`, `reset`, `lagged`, or the event type (`mutation.applied`, `status`, …).
    event: String,
    /// The snapshot or the CloudEvents envelope, as JSON text.
    data: String,
}

/// Follow one topology: a `snapshot` (status, version, pending mutations), then every
/// event on `topology.{id}.>`, resumable with `Last-Event-ID`.
#[utoipa::path(
    get,
    path = "/topologies/{id}/events",
    tag = "events",
    params(("id" = Uuid, Path, description = "Topology id"), StreamParams),
    responses(
        (status = 200, description = "An SSE stream: snapshot, then live events", content_type = "text/event-stream", body = EventFrame),
        Refusals
    ),
    security(("bearer" = ["viewer"]))
)]
async fn topology_events(
    State(app): State<AppState>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Query(params): Query<StreamParams>,
) -> Result<Response, ApiError> {
    topologies::ensure_exists(&app.pool, id).await?;
    let pool = app.pool.clone();
    follow(
        &app,
        &headers,
        &params,
        &subjects::topology_all(id),
        || async move {
            let topology = topologies::find(&pool, id).await?;
            let pending = mutations::pending_of(&pool, id).await?;
            Ok(TopologySnapshot { topology, pending })
        },
    )
    .await
}

/// The snapshot of a topology's stream.
#[derive(serde::Serialize)]
struct TopologySnapshot {
    topology: topologies::TopologyOut,
    /// Its pending mutations in seq order.
    pending: Vec<mutations::MutationOut>,
}

/// Follow one repo: a `snapshot` (its dispatch: pending changes, unread inbox, recent
/// progress), then every event on `repo.{slug}.>`, resumable with `Last-Event-ID`.
#[utoipa::path(
    get,
    path = "/repos/{slug}/events",
    tag = "events",
    params(("slug" = String, Path, description = "Repo slug"), StreamParams),
    responses(
        (status = 200, description = "An SSE stream: snapshot, then live events", content_type = "text/event-stream", body = EventFrame),
        Refusals
    ),
    security(("bearer" = ["viewer"]))
)]
async fn repo_events(
    State(app): State<AppState>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    Query(params): Query<StreamParams>,
) -> Result<Response, ApiError> {
    let repo = repos::find(&app.pool, &slug).await?;
    let pool = app.pool.clone();
    let subject = subjects::repo_all(&repo.slug);
    follow(&app, &headers, &params, &subject, || async move {
        Ok(json!(dispatch::dispatch_of(&pool, &repo.slug).await?))
    })
    .await
}

/// Follow one graph: a `snapshot` (the graph and its run in flight, if any), then
/// every event on `graph.{slug}.>` (migration requested, running, progress, succeeded,
/// failed), resumable with `Last-Event-ID`.
#[utoipa::path(
    get,
    path = "/graphs/{slug}/events",
    tag = "events",
    params(("slug" = String, Path, description = "Graph slug"), StreamParams),
    responses(
        (status = 200, description = "An SSE stream: snapshot, then live events", content_type = "text/event-stream", body = EventFrame),
        Refusals
    ),
    security(("bearer" = ["viewer"]))
)]
async fn graph_events(
    State(app): State<AppState>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    Query(params): Query<StreamParams>,
) -> Result<Response, ApiError> {
    let graph = graphs::find(&app.pool, &slug).await?;
    let pool = app.pool.clone();
    let subject = subjects::graph_all(&graph.slug);
    follow(&app, &headers, &params, &subject, || async move {
        // Read again: the snapshot must be taken after the stream position.
        let graph = graphs::find(&pool, &graph.slug).await?;
        let run = graphs::migrations::active(&pool, graph.id).await?;
        Ok(json!({ "graph": graph, "migration_run": run }))
    })
    .await
}

/// Follow one cached RFC: a `snapshot` (the RFC as `GET /rfcs/{slug}` returns it), then
/// every event on `rfc.{slug}.>` (updated, branch and pull request changes), resumable
/// with `Last-Event-ID`.
#[utoipa::path(
    get,
    path = "/rfcs/{slug}/events",
    tag = "events",
    params(("slug" = String, Path, description = "RFC slug", pattern = "^[a-z0-9][a-z0-9-]{0,62}$"), StreamParams),
    responses(
        (status = 200, description = "An SSE stream: snapshot, then live events", content_type = "text/event-stream", body = EventFrame),
        Refusals
    ),
    security(("bearer" = ["viewer"]))
)]
async fn rfc_events(
    State(app): State<AppState>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    Query(params): Query<StreamParams>,
) -> Result<Response, ApiError> {
    rfcs::ensure_cached(&app.pool, &slug).await?;
    let pool = app.pool.clone();
    let subject = subjects::rfc_all(&slug);
    follow(&app, &headers, &params, &subject, || async move {
        // Read after the stream position is taken, like every snapshot.
        rfcs::rfc_of(&pool, &slug).await
    })
    .await
}

/// Follow any subject filter (admins). The `snapshot` frame only marks the position.
#[utoipa::path(
    get,
    path = "/events",
    tag = "events",
    params(AnyParams),
    responses(
        (status = 200, description = "An SSE stream of every matching event", content_type = "text/event-stream", body = EventFrame),
        Refusals
    ),
    security(("bearer" = ["admin"]))
)]
async fn any_events(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<AnyParams>,
) -> Result<Response, ApiError> {
    if !subjects::is_valid_filter(&params.subject) {
        return Err(ApiError::Unprocessable(format!(
            "subject {:?} is not a subject filter: use dot-separated tokens, `*`, and `>` last",
            params.subject
        )));
    }
    let start = last_event_id(&headers, params.last_event_id.as_deref())?;
    let subject = params.subject.clone();
    let stream = app
        .live
        .open(&params.subject, start, || async move {
            Ok(json!({ "subject": subject }))
        })
        .await?;
    Ok(stream)
}
