//! Webhook deliveries as Gitea sends them: the event payloads (`PushPayload`,
//! `PullRequestPayload`, `CreatePayload`, `DeletePayload`, indented JSON like Gitea's
//! `JSONPayload`), the headers of Gitea's `services/webhook/deliver.go` with their
//! HMAC signatures, and a small HTTP/1 client that POSTs them.
//!
//! The client speaks plain `http://` only (a test's receiver listens on loopback) and
//! gives up after 5 s, Gitea's default `[webhook] DELIVER_TIMEOUT`. Gitea never retries
//! a failed delivery, and neither does [`Delivery::send`].

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, Uri, header};
use hmac::{Hmac, KeyInit, Mac};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sha1::Sha1;
use sha2::Sha256;

use crate::shapes::Site;
use crate::state::{Repo, ZERO_SHA};

/// How long a delivery waits for the receiver's answer.
const DELIVER_TIMEOUT: Duration = Duration::from_secs(5);

/// One webhook delivery: the exact body bytes and the headers Gitea sends with them.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The JSON payload, byte for byte as signed.
    pub body: Vec<u8>,
    /// `(name, value)` pairs, in Gitea's order.
    pub headers: Vec<(String, String)>,
    /// The delivery's UUID (`X-Gitea-Delivery`).
    pub id: String,
}

impl Delivery {
    /// A delivery of `body` for `event` with a fresh id, signed with `secret` (an
    /// empty secret sends empty signatures, as Gitea does for a hook without one).
    pub fn new(event: &str, body: Vec<u8>, secret: &str) -> Self {
        let id = uuid::Uuid::new_v4().to_string();
        let (sha256, sha1) = if secret.is_empty() {
            (String::new(), String::new())
        } else {
            (
                signature(secret, &body),
                hex_hmac::<Hmac<Sha1>>(secret, &body),
            )
        };
        let headers = [
            ("Content-Type", "application/json".to_owned()),
            ("User-Agent", "Go-http-client/1.1".to_owned()),
            ("X-Gitea-Delivery", id.clone()),
            ("X-Gitea-Event", event.to_owned()),
            ("X-Gitea-Event-Type", event.to_owned()),
            ("X-Gitea-Signature", sha256.clone()),
            ("X-Gogs-Delivery", id.clone()),
            ("X-Gogs-Event", event.to_owned()),
            ("X-Gogs-Event-Type", event.to_owned()),
            ("X-Gogs-Signature", sha256.clone()),
            ("X-Hub-Signature", format!("sha1={sha1}")),
            ("X-Hub-Signature-256", format!("sha256={sha256}")),
            ("X-GitHub-Delivery", id.clone()),
            ("X-GitHub-Event", event.to_owned()),
            ("X-GitHub-Event-Type", event.to_owned()),
        ];
        let headers = headers
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        Self { body, headers, id }
    }

    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let found = self
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name));
        found.map(|(_, v)| v.as_str())
    }

    /// POSTs it to `url` (the receiver's full webhook URL, `http://` only) and returns
    /// `(status, body text)`; a delivery that could not be made (refused, timed out)
    /// returns status 0 and the reason.
    pub async fn send(&self, url: &str) -> (u16, String) {
        match exchange(Method::POST, url, &self.headers, self.body.clone()).await {
            Ok((status, _, body)) => (status.as_u16(), body),
            Err(reason) => (0, reason),
        }
    }
}

/// Hex HMAC-SHA256 of `body` with `secret`, as Gitea computes `X-Gitea-Signature`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    hex_hmac::<Hmac<Sha256>>(secret, body)
}

fn hex_hmac<M: Mac + KeyInit>(secret: &str, body: &[u8]) -> String {
    let mut mac =
        <M as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The payload Gitea sends for `event` about `target` (a branch, or for
/// `pull_request` a pull request's number). Panics when `target` does not exist.
pub(crate) fn payload(site: &Site<'_>, repo: &Repo, event: &str, target: &str) -> Value {
    let owner = site.user(&repo.owner);
    let missing = || -> ! { panic!("no {target} on {} for a {event} webhook", repo.full_name()) };
    match event {
        "push" => {
            let head = &repo.branches.get(target).unwrap_or_else(|| missing()).head;
            let before = head.parent.as_deref().unwrap_or(ZERO_SHA);
            let commit = site.payload_commit(repo, head, true);
            json!({
                "ref": format!("refs/heads/{target}"), "before": before, "after": head.sha,
                "compare_url": format!("{}/{}/compare/{before}...{}", site.base, repo.full_name(), head.sha),
                "commits": [commit], "total_commits": 1, "head_commit": commit,
                "repository": site.repository(repo), "pusher": owner, "sender": owner,
            })
        }
        "pull_request" => {
            let pull = target
                .parse()
                .ok()
                .and_then(|n| repo.pull(n))
                .unwrap_or_else(|| missing());
            let (action, sender) = match (&pull.merged, pull.is_open()) {
                (_, true) => ("opened", site.user(&pull.opener)),
                (Some(merge), false) => ("closed", site.user(&merge.by)),
                (None, false) => ("closed", owner),
            };
            json!({
                "action": action, "number": pull.number,
                "pull_request": site.pull_request(repo, pull), "requested_reviewer": null,
                "repository": site.repository(repo), "sender": sender, "commit_id": "", "review": null,
            })
        }
        "create" => {
            let head = &repo.branches.get(target).unwrap_or_else(|| missing()).head;
            json!({
                "sha": head.sha, "ref": target, "ref_type": "branch",
                "repository": site.repository(repo), "sender": owner,
            })
        }
        // Gitea's DeletePayload carries no sha: the branch is gone.
        "delete" => json!({
            "ref": target, "ref_type": "branch", "pusher_type": "user",
            "repository": site.repository(repo), "sender": owner,
        }),
        other => panic!("the Gitea stand-in sends no {other:?} webhook"),
    }
}

/// One HTTP/1.1 request over a fresh connection: `(status, headers, body text)`.
pub(crate) async fn exchange(
    method: Method,
    url: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Result<(StatusCode, HeaderMap, String), String> {
    let uri: Uri = url.parse().map_err(|e| format!("bad URL {url}: {e}"))?;
    let authority = match (uri.scheme_str(), uri.authority()) {
        (Some("http"), Some(authority)) => authority.clone(),
        _ => return Err(format!("{url} is not an http:// URL")),
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, authority.as_str());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let request = request.body(Body::from(body)).map_err(|e| e.to_string())?;
    let exchange = async {
        let address = (authority.host(), authority.port_u16().unwrap_or(80));
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(Body::new(body), usize::MAX)
            .await
            .map_err(|e| e.to_string())?;
        Ok((
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        ))
    };
    match tokio::time::timeout(DELIVER_TIMEOUT, exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer from {url} within {DELIVER_TIMEOUT:?}")),
    }
}
