//! The connection to the API: the base URL, the bearer token, sending a request, and
//! how an answer becomes a body to print or a [`ClientError`] that names what was
//! wrong (the API's own `error.message`, or the URL that could not be reached).
//!
//! `http://` and `https://` URLs are spoken to; TLS is rustls with its `ring`
//! provider, and a server's certificate is checked by the platform's verifier (the
//! system's trust store). A URL is never shown with the credentials it may carry
//! (`https://user:secret@host`).

use std::error::Error;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode, Url};
use rustls::InvalidMessage;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{ClientArgs, ClientError};

/// Longest wait for a TCP connection to the API.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence on an open connection. An event stream sends a keepalive at least
/// every `http.event_keepalive` (15 s by default), so a stream this quiet is dead.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The API at `SWITCHYARD_URL`, spoken to with `SWITCHYARD_TOKEN`.
pub struct Api {
    /// One connection pool for every request of the command.
    http: reqwest::Client,
    /// `…/api/v1`; every request's URL is built from it.
    base: Url,
    /// The bearer token; `None` when none (or an empty one) was given.
    token: Option<String>,
    /// `--json`: print the API's JSON as it came.
    pub json: bool,
}

/// A 2xx answer.
pub struct Answer {
    /// Its status: `200 OK`, `201 Created`, `202 Accepted`, …
    pub status: StatusCode,
    /// The body as it came, for `--json`.
    pub text: String,
}

impl Answer {
    /// The body read as `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        serde_json::from_str(&self.text).map_err(|error| {
            ClientError::Unexpected(format!(
                "the API answered {} with a body this client cannot read: {error}",
                self.status
            ))
        })
    }
}

impl Api {
    /// The API named by `--url` (or `SWITCHYARD_URL`), over HTTP or HTTPS, with
    /// `/api/v1` added.
    pub fn new(args: &ClientArgs) -> Result<Self, ClientError> {
        // reqwest is built without a default crypto provider (aws-lc-rs needs cmake),
        // so one is installed before the first client; a second install, by another
        // Api in the same process, is refused and changes nothing.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base = base_url(&args.url)?;
        let mut http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT);
        if base.scheme() == "http" {
            // Plain HTTP trusts no certificate, so the system's store is not read:
            // a machine without one still works.
            http = http.tls_certs_only([]);
        }
        let http = http
            .build()
            .map_err(|error| ClientError::Unexpected(format!("starting HTTP: {error}")))?;
        Ok(Self {
            http,
            base,
            token: args.token.clone().filter(|token| !token.is_empty()),
            json: args.json,
        })
    }

    /// The URL of `segments` under `/api/v1`, each one percent-encoded.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("an http URL has a path")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// A request with the bearer token, if one was given.
    pub fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let request = self.http.request(method, url);
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// `GET url`, read as [`Api::send`] reads it.
    pub async fn get(&self, url: Url) -> Result<Answer, ClientError> {
        self.send(self.request(Method::GET, url)).await
    }

    /// `POST url` with `body` as JSON, read as [`Api::send`] reads it.
    pub async fn post(&self, url: Url, body: &impl Serialize) -> Result<Answer, ClientError> {
        self.send(self.request(Method::POST, url).json(body)).await
    }

    /// Sends `request` and reads the whole answer; a non-2xx one is [`ClientError::Api`].
    pub async fn send(&self, request: RequestBuilder) -> Result<Answer, ClientError> {
        let request = request
            .build()
            .map_err(|error| ClientError::Usage(format!("building the request: {error}")))?;
        let (method, url) = (request.method().clone(), request.url().clone());
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|error| unreachable(&url, error))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|error| unreachable(&url, error))?;
        if status.is_success() {
            Ok(Answer { status, text })
        } else {
            Err(self.refusal(method, &url, status, &text))
        }
    }

    /// The error for a non-2xx answer, with the API's `error.message`.
    pub fn refusal(
        &self,
        method: Method,
        url: &Url,
        status: StatusCode,
        body: &str,
    ) -> ClientError {
        let mut message = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|body| body["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| excerpt(body));
        if status == StatusCode::UNAUTHORIZED && self.token.is_none() {
            message.push_str(" (no token was sent: set SWITCHYARD_TOKEN or pass --token)");
        }
        let path = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        ClientError::Api {
            method,
            path,
            status,
            message,
        }
    }
}

/// `…/api/v1` from the base URL a user gives (with or without the prefix).
fn base_url(raw: &str) -> Result<Url, ClientError> {
    let bad = |why: &str| {
        let shown = without_credentials(raw);
        ClientError::Usage(format!("--url (SWITCHYARD_URL) {shown:?}: {why}"))
    };
    let mut url = Url::parse(raw)
        .map_err(|error| bad(&format!("{error}; give an http:// or https:// URL")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("give an http:// or https:// URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("give the API's base URL, without a query or fragment"));
    }
    let path = url.path().trim_end_matches('/');
    let path = if path.ends_with("/api/v1") {
        path.to_owned()
    } else {
        format!("{path}/api/v1")
    };
    url.set_path(&path);
    // The API takes the bearer token only; a user part would go out as a second
    // `Authorization` (Basic) header, which the API refuses as two credentials.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Ok(url)
}

/// [`ClientError::Unreachable`] naming the URL (without credentials) and the cause
/// (refused, timed out, a failed TLS handshake, …).
pub fn unreachable(url: &Url, error: reqwest::Error) -> ClientError {
    let error = error.without_url();
    let reason = if error.is_timeout() {
        "timed out".to_owned()
    } else {
        cause(&error)
    };
    let mut shown = url.clone();
    // Only a URL without a host refuses these, and every URL here has one.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    ClientError::Unreachable {
        url: shown.to_string(),
        reason,
    }
}

/// What went wrong, from `error`'s innermost source (reqwest's own message only
/// repeats the URL); a failed TLS handshake says so.
fn cause(error: &reqwest::Error) -> String {
    let mut innermost: Option<&dyn Error> = None;
    let mut tls = None;
    let mut source = error.source();
    while let Some(cause) = source {
        tls = tls.or_else(|| tls_error(cause));
        innermost = Some(cause);
        source = cause.source();
    }
    let text = innermost.map_or_else(|| error.to_string(), ToString::to_string);
    match tls {
        // The answer did not even look like TLS: most likely plain HTTP.
        Some(rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType)) => {
            format!("the TLS handshake failed: {text}; the server may speak plain HTTP")
        }
        Some(_) => format!("the TLS handshake failed: {text}"),
        None => text,
    }
}

/// The rustls error `cause` is, or wraps in (layers of) I/O errors.
fn tls_error<'e>(mut cause: &'e (dyn Error + 'static)) -> Option<&'e rustls::Error> {
    loop {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        cause = cause.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
}

/// `raw` without the `user:password@` before its host, if it has one; for a URL that
/// may not parse, so the text is cut rather than the URL rebuilt.
fn without_credentials(raw: &str) -> String {
    let start = raw.find("://").map_or(0, |at| at + 3);
    let authority_end = raw[start..]
        .find(['/', '?', '#'])
        .map_or(raw.len(), |at| start + at);
    match raw[start..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &raw[..start], &raw[start + at + 1..]),
        None => raw.to_owned(),
    }
}

/// A body that is not the API's JSON error (a proxy's page, say), cut short.
fn excerpt(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return "no error message in the answer".to_owned();
    }
    let mut cut: String = body.chars().take(200).collect();
    if cut.len() < body.len() {
        cut.push('…');
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::{base_url, without_credentials};

    #[test]
    fn the_prefix_is_added_once() {
        for raw in [
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/",
            "http://127.0.0.1:8080/api/v1",
            "http://127.0.0.1:8080/api/v1/",
        ] {
            assert_eq!(
                base_url(raw).unwrap().as_str(),
                "http://127.0.0.1:8080/api/v1",
                "{raw}"
            );
        }
        assert_eq!(
            base_url("http://lb.example/switchyard").unwrap().as_str(),
            "http://lb.example/switchyard/api/v1"
        );
    }

    #[test]
    fn https_is_spoken_and_other_schemes_are_refused_naming_the_setting() {
        assert_eq!(
            base_url("https://api.example").unwrap().as_str(),
            "https://api.example/api/v1"
        );
        for raw in ["ftp://api.example", "127.0.0.1:8080"] {
            let error = base_url(raw).unwrap_err().to_string();
            assert!(error.contains("SWITCHYARD_URL"), "{error}");
            assert!(error.contains("http:// or https://"), "{error}");
        }
    }

    #[test]
    fn refusals_never_show_credentials() {
        for raw in [
            "ftp://user:secret@api.example/x",
            "user:secret@api.example",
            "http://user:secret@api.example?query",
        ] {
            let error = base_url(raw).unwrap_err().to_string();
            assert!(!error.contains("secret"), "{error}");
            assert!(error.contains("api.example"), "{error}");
        }
        assert_eq!(
            without_credentials("https://user:p@ss@host:8443/base"),
            "https://host:8443/base"
        );
        assert_eq!(without_credentials("http://host/a@b"), "http://host/a@b");
    }

    #[test]
    fn a_user_part_is_not_sent_beside_the_token() {
        assert_eq!(
            base_url("https://user:secret@api.example")
                .unwrap()
                .as_str(),
            "https://api.example/api/v1"
        );
    }
}
