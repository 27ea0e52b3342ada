//! The HTTP side: Gitea's `/api/v1` paths the cache writer reads (contents, branches,
//! pulls, version), answered from the forge with `shapes`.
//!
//! Every request first passes the gate, in this order: wait while a hold exists
//! (then read the forge as of the release), count the call, answer 503 while down or
//! the next queued failure, check the token. A stalled request (see
//! `GiteaStandin::stall_next`) is answered from the forge as at its arrival, but its
//! answer is delivered only at the release. Lists paginate as Gitea does: `page`
//! from 1, `limit` 30 by default and at most 50 (`MAX_RESPONSE_ITEMS`), with
//! `X-Total-Count` and a `Link` header built like Gitea's `genAPILinks`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{OriginalUri, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::Shared;
use crate::shapes::Reference;
use crate::state::{DEFAULT_BRANCH, Entry};

/// Gitea's `[api] DEFAULT_PAGING_NUM` and `MAX_RESPONSE_ITEMS`.
const DEFAULT_LIMIT: usize = 30;
const MAX_LIMIT: usize = 50;

type AppState = State<Arc<Shared>>;

/// The whole app: `/api/v1` behind the gate, Gitea's 404 for anything else.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let repos = Router::new()
        .route("/contents", get(contents_root))
        .route("/contents/", get(contents_root))
        .route("/contents/{*filepath}", get(contents))
        .route("/branches", get(branches))
        .route("/pulls", get(pulls));
    let api = Router::new()
        .route(
            "/version",
            get(|| async { Json(json!({"version": "1.22.6"})) }),
        )
        .nest("/repos/{owner}/{repo}", repos);
    Router::new()
        .nest("/api/v1", api)
        .fallback(not_found)
        .layer(from_fn_with_state(shared.clone(), gate))
        .with_state(shared)
}

/// Holds, outages, queued failures and auth, before any handler.
async fn gate(State(shared): AppState, request: Request, next: Next) -> Response {
    wait_while_held(&shared).await;
    shared.calls.fetch_add(1, Ordering::SeqCst);
    if shared.down.load(Ordering::SeqCst) {
        return outage(503);
    }
    if let Some(status) = shared.take_failure() {
        return outage(status);
    }
    // `/version` answers without a token, as Gitea's does.
    if request.uri().path() != "/api/v1/version" {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let token = given.and_then(|v| {
            v.strip_prefix("token ")
                .or_else(|| v.strip_prefix("Bearer "))
        });
        match token {
            None => return api_error(&shared.base, StatusCode::UNAUTHORIZED, "token is required"),
            Some(token) if token.trim() != shared.token => {
                return api_error(
                    &shared.base,
                    StatusCode::UNAUTHORIZED,
                    "invalid username, password or token",
                );
            }
            Some(_) => {}
        }
    }
    let stall = shared.take_stall(request.uri().path());
    let response = next.run(request).await;
    if let Some(mut release) = stall {
        shared.stalled.fetch_add(1, Ordering::SeqCst);
        // Err once the guard is dropped: that is the release.
        let _ = release.changed().await;
        shared.stalled.fetch_sub(1, Ordering::SeqCst);
    }
    response
}

/// Waits, without blocking a thread, while any hold exists; counted in `held`.
async fn wait_while_held(shared: &Shared) {
    struct Waiting<'a>(&'a AtomicUsize);
    impl Drop for Waiting<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let mut holds = shared.holds.subscribe();
    if *holds.borrow_and_update() == 0 {
        return;
    }
    shared.held.fetch_add(1, Ordering::SeqCst);
    // Decrements even when the client gives up and the request is dropped mid-wait.
    let _waiting = Waiting(&shared.held);
    // The sender lives in `shared`, so this only ends at a release.
    let _ = holds.wait_for(|holds| *holds == 0).await;
}

/// What a proxy (or Gitea itself, for 500) answers when Gitea is unreachable.
fn outage(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (
        status,
        status.canonical_reason().unwrap_or("error").to_owned(),
    )
        .into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// Gitea's `APIError` body.
fn api_error(base: &str, status: StatusCode, message: &str) -> Response {
    let body = json!({"message": message, "url": format!("{base}/api/swagger")});
    (status, Json(body)).into_response()
}

async fn not_found(State(shared): AppState) -> Response {
    api_error(
        &shared.base,
        StatusCode::NOT_FOUND,
        "The target couldn't be found.",
    )
}

/// A query parameter's last value, as Go's `FormValue` reads it.
fn param(query: &Option<String>, name: &str) -> Option<String> {
    let pairs = form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes());
    pairs
        .filter(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .last()
}

async fn contents_root(
    state: AppState,
    Path((owner, repo)): Path<(String, String)>,
    query: RawQuery,
) -> Response {
    contents(state, Path((owner, repo, String::new())), query).await
}

/// `GET /repos/{owner}/{repo}/contents/{filepath}?ref=`: a file's `ContentsResponse`,
/// or a directory's children as an array (not paginated, as Gitea).
async fn contents(
    State(shared): AppState,
    Path((owner, name, filepath)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let forge = shared.forge();
    let Some(repo) = forge.repo(&owner, &name) else {
        return api_error(
            &shared.base,
            StatusCode::NOT_FOUND,
            "The target couldn't be found.",
        );
    };
    let wanted = param(&query, "ref").filter(|r| !r.is_empty());
    let wanted = wanted.unwrap_or_else(|| DEFAULT_BRANCH.to_owned());
    let missing = |id: &str, path: &str| {
        let message = format!("object does not exist [id: {id}, rel_path: {path}]");
        api_error(&shared.base, StatusCode::NOT_FOUND, &message)
    };
    let Some(branch) = repo.branch(&wanted) else {
        return missing(&wanted, "");
    };
    let kind = if repo.branches.contains_key(&wanted) {
        "branch"
    } else {
        "commit"
    };
    let reference = Reference { name: wanted, kind };
    let path = filepath.trim_matches('/');
    let site = shared.site(&forge);
    match branch.entry(path) {
        None => missing("", path),
        Some(entry @ Entry::File(_)) => {
            Json(site.contents(repo, &reference, path, &entry, false)).into_response()
        }
        Some(Entry::Dir { .. }) => {
            let children = branch.children(path).into_values().filter_map(|child| {
                let entry = branch.entry(&child)?;
                Some(site.contents(repo, &reference, &child, &entry, true))
            });
            Json(children.collect::<Vec<_>>()).into_response()
        }
    }
}

/// `GET /repos/{owner}/{repo}/branches`: every branch by name, paginated.
async fn branches(
    State(shared): AppState,
    Path((owner, name)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
) -> Response {
    let forge = shared.forge();
    let Some(repo) = forge.repo(&owner, &name) else {
        return api_error(
            &shared.base,
            StatusCode::NOT_FOUND,
            "The target couldn't be found.",
        );
    };
    let site = shared.site(&forge);
    let all = repo
        .branches
        .iter()
        .map(|(name, b)| site.branch(repo, name, &b.head));
    paginate(&shared.base, &uri, all.collect())
}

/// `GET /repos/{owner}/{repo}/pulls?state=open|closed|all`: newest first, paginated.
async fn pulls(
    State(shared): AppState,
    Path((owner, name)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
) -> Response {
    let forge = shared.forge();
    let Some(repo) = forge.repo(&owner, &name) else {
        return api_error(
            &shared.base,
            StatusCode::NOT_FOUND,
            "The target couldn't be found.",
        );
    };
    let state = param(&uri.query().map(str::to_owned), "state").unwrap_or_default();
    let wanted = |open: bool| match state.as_str() {
        "closed" => !open,
        "all" => true,
        _ => open,
    };
    let site = shared.site(&forge);
    let matching = repo.pulls.iter().rev().filter(|p| wanted(p.is_open()));
    paginate(
        &shared.base,
        &uri,
        matching.map(|p| site.pull_request(repo, p)).collect(),
    )
}

/// One page of `items` with Gitea's `X-Total-Count`, `Link` and
/// `Access-Control-Expose-Headers`.
fn paginate(base: &str, uri: &axum::http::Uri, items: Vec<Value>) -> Response {
    let query = uri.query().map(str::to_owned);
    let number = |name| {
        param(&query, name)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
    };
    let page = number("page").max(1);
    let limit = match number("limit") {
        0 => DEFAULT_LIMIT,
        limit => limit.min(MAX_LIMIT),
    };
    let total = items.len();
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(limit))
        .take(limit)
        .collect();
    let mut headers = HeaderMap::new();
    let links = links(base, uri, total, limit, number("page"));
    let mut exposed = "X-Total-Count".to_owned();
    if !links.is_empty() {
        headers.insert(
            header::LINK,
            HeaderValue::from_str(&links.join(",")).expect("a URL is a header value"),
        );
        exposed = format!("Link, {exposed}");
    }
    headers.insert("x-total-count", HeaderValue::from(total));
    let exposed = HeaderValue::from_str(&exposed).expect("header names are a header value");
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, exposed);
    (headers, Json(slice)).into_response()
}

/// Gitea's `genAPILinks`: next, last, first, prev, each the request's URL with
/// `page` replaced (query keys sorted, as Go's `url.Values.Encode` writes them).
fn links(
    base: &str,
    uri: &axum::http::Uri,
    total: usize,
    limit: usize,
    asked: usize,
) -> Vec<String> {
    let total_pages = total.div_ceil(limit);
    let current = asked.min(total_pages).max(1);
    let has_next = current * limit < total;
    let link = |page: usize, rel: &str| {
        let mut query: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (key, value) in form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
            query
                .entry(key.into_owned())
                .or_default()
                .push(value.into_owned());
        }
        query.insert("page".to_owned(), vec![page.to_string()]);
        let mut encoded = form_urlencoded::Serializer::new(String::new());
        for (key, value) in query
            .iter()
            .flat_map(|(k, vs)| vs.iter().map(move |v| (k, v)))
        {
            encoded.append_pair(key, value);
        }
        format!("<{base}{}?{}>; rel=\"{rel}\"", uri.path(), encoded.finish())
    };
    let mut links = Vec::new();
    if has_next {
        links.push(link(current + 1, "next"));
        links.push(link(total_pages, "last"));
    }
    if current != 1 {
        links.push(link(1, "first"));
        links.push(link(current - 1, "prev"));
    }
    links
}
