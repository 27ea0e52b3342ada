//! The connection to the API: the base URL, the bearer token, sending a request, and
//! how an answer becomes a body to print or a [`ClientError`] that names what was
//! wrong (the API's own `error.message`, or the URL that could not be reached).

use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode, Url};
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
    http: reqwest::Client,
    /// `…/api/v1`; every request's URL is built from it.
    base: Url,
    token: Option<String>,
    /// `--json`: print the API's JSON as it came.
    pub json: bool,
}

/// A 2xx answer.
pub struct Answer {
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
    /// The API named by `--url` (or `SWITCHYARD_URL`): plain HTTP, `/api/v1` added.
    pub fn new(args: &ClientArgs) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .build()
            .map_err(|error| ClientError::Unexpected(format!("starting HTTP: {error}")))?;
        Ok(Self {
            http,
            base: base_url(&args.url)?,
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

    pub async fn get(&self, url: Url) -> Result<Answer, ClientError> {
        self.send(self.request(Method::GET, url)).await
    }

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
            .map_err(|error| unreachable(&url, &error))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|error| unreachable(&url, &error))?;
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
    let bad = |why: &str| ClientError::Usage(format!("--url (SWITCHYARD_URL) {raw:?}: {why}"));
    let mut url = Url::parse(raw).map_err(|error| bad(&error.to_string()))?;
    if url.scheme() != "http" {
        return Err(bad(
            "only http:// URLs are supported (put TLS in front of the API, not in this client)",
        ));
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
    Ok(url)
}

/// [`ClientError::Unreachable`] naming the URL and the cause (refused, timed out, …).
pub fn unreachable(url: &Url, error: &reqwest::Error) -> ClientError {
    // reqwest's own message repeats the URL; its sources say what went wrong.
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    let reason = if error.is_timeout() {
        "timed out".to_owned()
    } else {
        causes.last().cloned().unwrap_or_else(|| error.to_string())
    };
    ClientError::Unreachable {
        url: url.to_string(),
        reason,
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
    use super::base_url;

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
    fn other_schemes_are_refused_naming_the_setting() {
        let error = base_url("https://api.example").unwrap_err().to_string();
        assert!(error.contains("SWITCHYARD_URL"), "{error}");
        let error = base_url("127.0.0.1:8080").unwrap_err().to_string();
        assert!(error.contains("SWITCHYARD_URL"), "{error}");
    }
}
