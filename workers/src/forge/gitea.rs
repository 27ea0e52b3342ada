//! The Gitea REST client the forge role reads with: token auth, a timeout on every
//! call, Gitea's `page`/`limit` pagination followed to the end, and retries with
//! exponential backoff (`backon`) for what may pass (timeouts, connection errors,
//! 5xx, 429).
//!
//! Paths and payload shapes are Gitea's API v1 (`/api/v1/repos/{owner}/{repo}/…`;
//! `modules/structs` in Gitea's source): `contents` (ContentsResponse), `branches`
//! (Branch), `pulls` (PullRequest). Only the fields the cache keeps are read. Every
//! request counts in [`Gitea::calls`], retries included.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use base64::Engine;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::RepoName;

/// Why a Gitea call failed.
#[derive(Debug, thiserror::Error)]
pub enum GiteaError {
    /// 404: the repo, branch or path does not exist.
    #[error("{0}: not found on Gitea (check forge.url, the repo's name and forge.main_branch)")]
    NotFound(String),
    /// Timeouts, connection errors, 5xx and 429, after every retry.
    #[error("{what}: Gitea unreachable: {reason}")]
    Unreachable { what: String, reason: String },
    /// Any other answer (401, 403, 422…): retrying would get the same.
    #[error("{what}: Gitea answered {status}: {message}")]
    Refused {
        what: String,
        status: u16,
        message: String,
    },
    /// An answer larger than `GiteaSettings::max_response_bytes`; it is not read.
    #[error("{what}: Gitea's answer is larger than {limit} bytes")]
    TooLarge { what: String, limit: usize },
    /// A 2xx whose body is not what Gitea's API documents.
    #[error("{what}: unexpected answer from Gitea: {reason}")]
    Malformed { what: String, reason: String },
}

impl GiteaError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }
}

/// How to reach Gitea.
#[derive(Clone, Debug)]
pub struct GiteaSettings {
    /// Base URL, e.g. `https://gitea.example.com` (the API is under `/api/v1`).
    pub url: String,
    /// An access token (`Authorization: token …`); `None` reads as anonymous.
    pub token: Option<String>,
    /// Per request, connecting included.
    pub timeout: Duration,
    /// Retries of one call after the first attempt.
    pub retries: usize,
    /// Upper bound of the delay between retries (exponential from 200 ms).
    pub max_retry_delay: Duration,
    /// Items per page asked for (Gitea caps it at its `MAX_RESPONSE_ITEMS`, 50 by default).
    pub page_limit: usize,
    /// The largest answer read, in bytes: memory never depends on what Gitea sends.
    pub max_response_bytes: usize,
}

/// A Gitea client. Clones share the connection pool; [`Gitea::counted`] gives one
/// with a call counter of its own.
#[derive(Clone, Debug)]
pub struct Gitea {
    http: reqwest::Client,
    api: String,
    settings: GiteaSettings,
    calls: Arc<AtomicU64>,
}

/// One entry of a directory listing (`ContentsResponse` with `content` null).
#[derive(Clone, Debug, Deserialize)]
pub struct DirEntry {
    pub name: String,
    pub path: String,
    /// The blob sha (a file) or tree sha (a directory).
    pub sha: String,
    /// `file`, `dir`, `symlink` or `submodule`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Bytes.
    #[serde(default)]
    pub size: u64,
}

/// A file read from `contents/{path}`.
#[derive(Clone, Debug)]
pub struct File {
    pub sha: String,
    /// The content, decoded (lossily, should it not be UTF-8).
    pub text: String,
}

/// A branch (`Branch`), with its head commit.
#[derive(Clone, Debug, Deserialize)]
pub struct Branch {
    pub name: String,
    pub commit: Commit,
}

/// A branch's head commit (`PayloadCommit`).
#[derive(Clone, Debug, Deserialize)]
pub struct Commit {
    pub id: String,
    pub timestamp: Option<DateTime<Utc>>,
}

/// A pull request (`PullRequest`).
#[derive(Clone, Debug, Deserialize)]
pub struct Pull {
    pub number: i64,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    /// `open` or `closed`.
    pub state: String,
    #[serde(default)]
    pub merged: bool,
    pub user: User,
    pub head: BranchRef,
    pub created_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub merged_at: Option<DateTime<Utc>>,
}

/// `PRBranchInfo`: the head of a pull request.
#[derive(Clone, Debug, Deserialize)]
pub struct BranchRef {
    #[serde(rename = "ref")]
    pub name: String,
    pub sha: Option<String>,
}

/// A Gitea account, as payloads name it.
#[derive(Clone, Debug, Deserialize)]
pub struct User {
    pub login: String,
}

/// `ContentsResponse` of a file.
#[derive(Deserialize)]
struct FileResponse {
    sha: String,
    #[serde(rename = "type")]
    kind: String,
    encoding: Option<String>,
    content: Option<String>,
}

/// Gitea's error body (`APIError`).
#[derive(Deserialize)]
struct ApiErrorBody {
    message: Option<String>,
}

impl Gitea {
    /// A client for `settings`.
    pub fn new(settings: GiteaSettings) -> Result<Self, GiteaError> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GiteaError::Malformed {
                what: "client".into(),
                reason: e.to_string(),
            })?;
        let api = format!("{}/api/v1", settings.url.trim_end_matches('/'));
        Ok(Self {
            http,
            api,
            settings,
            calls: Arc::default(),
        })
    }

    /// The same client with a call counter of its own, starting at 0.
    pub fn counted(&self) -> Self {
        Self {
            calls: Arc::default(),
            ..self.clone()
        }
    }

    /// Requests sent through this client (and its clones), retries included.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The entries of directory `path` at `branch`.
    pub async fn list_dir(
        &self,
        repo: &RepoName,
        path: &str,
        branch: &str,
    ) -> Result<Vec<DirEntry>, GiteaError> {
        let url = self.contents_url(repo, path)?;
        let what = format!("{path} in {repo}");
        let (entries, _) = self
            .get::<Vec<DirEntry>>(&what, &url, &[("ref", branch)])
            .await?;
        Ok(entries)
    }

    /// File `path` at `branch`, or `None` if there is none.
    pub async fn file(
        &self,
        repo: &RepoName,
        path: &str,
        branch: &str,
    ) -> Result<Option<File>, GiteaError> {
        let url = self.contents_url(repo, path)?;
        let what = format!("{path} in {repo}");
        let response = match self
            .get::<FileResponse>(&what, &url, &[("ref", branch)])
            .await
        {
            Ok((response, _)) => response,
            Err(GiteaError::NotFound(_)) => return Ok(None),
            Err(error) => return Err(error),
        };
        let malformed = |reason: &str| GiteaError::Malformed {
            what: what.clone(),
            reason: reason.to_owned(),
        };
        if response.kind != "file" || response.encoding.as_deref() != Some("base64") {
            return Err(malformed("not a base64-encoded file"));
        }
        let encoded: String = response
            .content
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| malformed("content is not base64"))?;
        Ok(Some(File {
            sha: response.sha,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }))
    }

    /// Every branch of `repo`, each once, and whether the listing is complete: a
    /// branch created or deleted while it was paged shifts the pages, so one may be
    /// missing (the count of distinct names falls short of `X-Total-Count`).
    pub async fn branches(&self, repo: &RepoName) -> Result<(Vec<Branch>, bool), GiteaError> {
        let url = format!("{}/branches", self.repo_url(repo));
        let (branches, total) = self
            .all_pages(&format!("{repo} branches"), &url, &[])
            .await?;
        let branches = distinct(branches, |b: &Branch| b.name.clone());
        let complete = total.is_none_or(|total| branches.len() as u64 >= total);
        Ok((branches, complete))
    }

    /// Every pull request of `repo`, open and closed, each once (oldest first, so a
    /// pull request opened meanwhile lands on the last page).
    pub async fn pulls(&self, repo: &RepoName) -> Result<Vec<Pull>, GiteaError> {
        let url = format!("{}/pulls", self.repo_url(repo));
        let query = [("state", "all"), ("sort", "oldest")];
        let (pulls, _) = self
            .all_pages(&format!("{repo} pulls"), &url, &query)
            .await?;
        Ok(distinct(pulls, |p: &Pull| p.number))
    }

    fn repo_url(&self, repo: &RepoName) -> String {
        format!("{}/repos/{}/{}", self.api, repo.owner, repo.name)
    }

    /// `…/contents/{path}` with each segment of `path` percent-encoded (a file may be
    /// named `100% done?.md`).
    fn contents_url(&self, repo: &RepoName, path: &str) -> Result<String, GiteaError> {
        let base = format!("{}/contents", self.repo_url(repo));
        let mut url = reqwest::Url::parse(&base).map_err(|e| GiteaError::Malformed {
            what: base.clone(),
            reason: e.to_string(),
        })?;
        url.path_segments_mut()
            .map_err(|()| GiteaError::Malformed {
                what: base.clone(),
                reason: "not a base URL".to_owned(),
            })?
            .extend(path.split('/'));
        Ok(url.into())
    }

    /// Follows `page` from 1 until a page is empty or the `X-Total-Count` Gitea
    /// reports is reached (and returns that count), reading at most [`MAX_PAGES`].
    async fn all_pages<T: DeserializeOwned>(
        &self,
        what: &str,
        url: &str,
        query: &[(&str, &str)],
    ) -> Result<(Vec<T>, Option<u64>), GiteaError> {
        let limit = self.settings.page_limit.to_string();
        let mut items = Vec::new();
        let mut reported = None;
        for page in 1..=MAX_PAGES {
            if page == MAX_PAGES {
                return Err(GiteaError::TooLarge {
                    what: format!("{what} (more than {MAX_PAGES} pages)"),
                    limit: self.settings.max_response_bytes,
                });
            }
            let page_text = page.to_string();
            let mut params = query.to_vec();
            params.extend([("page", page_text.as_str()), ("limit", limit.as_str())]);
            let (batch, total) = self.get::<Vec<T>>(what, url, &params).await?;
            reported = total;
            let got = batch.len();
            items.extend(batch);
            let done = got == 0 || total.is_some_and(|total| items.len() as u64 >= total);
            // Without X-Total-Count a short page can only mean Gitea's own cap is lower
            // than asked, so only an empty page ends the list.
            if done {
                break;
            }
        }
        Ok((items, reported))
    }

    /// GETs `url` as JSON with retries; also returns `X-Total-Count` when given.
    async fn get<T: DeserializeOwned>(
        &self,
        what: &str,
        url: &str,
        query: &[(&str, &str)],
    ) -> Result<(T, Option<u64>), GiteaError> {
        let attempt = || self.get_once::<T>(what, url, query);
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(self.settings.max_retry_delay)
                    .with_max_times(self.settings.retries)
                    .with_jitter(),
            )
            .when(GiteaError::is_transient)
            .notify(|error, delay| tracing::debug!(%error, ?delay, "Gitea call failed; retrying"))
            .await
    }

    async fn get_once<T: DeserializeOwned>(
        &self,
        what: &str,
        url: &str,
        query: &[(&str, &str)],
    ) -> Result<(T, Option<u64>), GiteaError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut request = self.http.get(url).query(query);
        if let Some(token) = &self.settings.token {
            request = request.header("Authorization", format!("token {token}"));
        }
        let unreachable = |reason: String| GiteaError::Unreachable {
            what: what.to_owned(),
            reason,
        };
        let response = request.send().await.map_err(|e| unreachable(cause(e)))?;
        let status = response.status();
        let total = response
            .headers()
            .get("x-total-count")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        if status.is_success() {
            let body = read_bounded(response, self.settings.max_response_bytes, what).await?;
            let value = serde_json::from_slice(&body).map_err(|e| GiteaError::Malformed {
                what: what.to_owned(),
                reason: e.to_string(),
            })?;
            return Ok((value, total));
        }
        let message = read_bounded(response, ERROR_BODY_BYTES, what)
            .await
            .ok()
            .and_then(|body| serde_json::from_slice::<ApiErrorBody>(&body).ok())
            .and_then(|body| body.message)
            .unwrap_or_default();
        Err(match status {
            StatusCode::NOT_FOUND => GiteaError::NotFound(what.to_owned()),
            StatusCode::TOO_MANY_REQUESTS => unreachable(format!("429 {message}")),
            s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => {
                unreachable(format!("{} {message}", s.as_u16()))
            }
            s => GiteaError::Refused {
                what: what.to_owned(),
                status: s.as_u16(),
                message,
            },
        })
    }
}

/// What went wrong, with its causes (connection refused, a DNS failure, a TLS
/// error…), but not the URL: errors are shown to viewers (`GET /forge/repos`).
fn cause(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// The most pages of one list read (100,000 items at Gitea's default cap of 50).
const MAX_PAGES: usize = 2000;

/// `items` with each key once, the first kept.
fn distinct<T, K: std::hash::Hash + Eq>(items: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    let mut seen = std::collections::HashSet::new();
    items
        .into_iter()
        .filter(|item| seen.insert(key(item)))
        .collect()
}

/// The most of an error answer read for its message.
const ERROR_BODY_BYTES: usize = 64 * 1024;

/// Reads `response`'s body, refusing it once it passes `limit` bytes.
async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
    what: &str,
) -> Result<Vec<u8>, GiteaError> {
    let too_large = || GiteaError::TooLarge {
        what: what.to_owned(),
        limit,
    };
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| GiteaError::Unreachable {
            what: what.to_owned(),
            reason: cause(e),
        })?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
