//! Connecting to NATS, and declaring the stream and durable consumers.
//!
//! Declarations are idempotent (`create or update`), so every process runs them at
//! start-up and any number of processes may start at once.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_nats::{HeaderMap, HeaderValue};
use serde::Deserialize;

use crate::Event;
use crate::subjects::{self, InvalidPrefix, Namespace};

/// Where `scripts/up` and `scripts/test` start their pinned nats-server, and so
/// where every process looks by default. Not NATS's usual 4222, which on these
/// machines is often an older distribution server without what switchyard needs.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:14222";

/// The oldest nats-server switchyard runs against: 2.10 brought the consumer
/// create actions (`create or update`) that every process's declarations rely on.
pub const MIN_SERVER_VERSION: (u64, u64, u64) = (2, 10, 0);

/// Bus settings (config section `bus`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    /// NATS server URL; `NATS_URL` in the environment overrides it.
    pub url: String,
    /// JetStream stream name; one per deployment.
    pub stream: String,
    /// Prefix in front of every subject; empty for none.
    pub subject_prefix: String,
    /// How long events stay in the stream (SSE replay reaches back this far).
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Window in which a re-published event id is dropped as a duplicate.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
    /// How long a consumer waits for an ack before redelivering.
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
    /// How long to wait for JetStream to acknowledge a publish.
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
    /// Copies JetStream keeps of the stream and of each durable consumer: 1 on a
    /// single server, 3 (or 5) on a cluster, where a copy survives a node's loss.
    /// JetStream allows 1 to 5 ([`MAX_REPLICAS`]); a cluster needs at least this many
    /// JetStream servers.
    pub replicas: usize,
}

/// The most replicas JetStream keeps of a stream or consumer.
pub const MAX_REPLICAS: usize = 5;

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            url: DEFAULT_URL.to_owned(),
            stream: "SWITCHYARD".to_owned(),
            subject_prefix: String::new(),
            max_age: Duration::from_secs(7 * 24 * 3600),
            duplicate_window: Duration::from_secs(120),
            ack_wait: Duration::from_secs(30),
            publish_timeout: Duration::from_secs(5),
            replicas: 1,
        }
    }
}

/// Errors talking to NATS.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error(transparent)]
    Prefix(#[from] InvalidPrefix),
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        /// Without its user part ([`shown_url`]): errors are logged.
        url: String,
        source: async_nats::ConnectError,
    },
    /// The server answered but lacks something switchyard needs; not retried.
    #[error("NATS server at {url} ({server}) cannot be used: {missing}")]
    Unsupported {
        url: String,
        /// Its name and version, e.g. `nats-server 2.9.25 "NABC…"`.
        server: String,
        /// What it lacks, in words.
        missing: String,
    },
    /// JetStream did not answer for this account (no responders, a timeout); retried
    /// at start-up, since a server starting or a cluster electing answers like this.
    #[error("JetStream at {url} does not answer for this account: {reason}")]
    JetStreamUnavailable { url: String, reason: String },
    #[error("cannot create or update stream {stream}: {source}")]
    Stream {
        stream: String,
        source: jetstream::context::CreateStreamError,
    },
    #[error("cannot create or update consumer {consumer}: {source}")]
    Consumer {
        consumer: String,
        source: jetstream::stream::ConsumerError,
    },
    #[error("publish to {subject} failed: {reason}")]
    Publish { subject: String, reason: String },
}

/// The durable consumers, one per worker role; all processes of a role share it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumerRole {
    Mutator,
    Notifier,
    Migrator,
    Forge,
}

impl BusError {
    /// Whether waiting could help: not for a refused login or an unusable server,
    /// which stay so however long a process retries.
    pub fn is_permanent(&self) -> bool {
        use async_nats::ConnectErrorKind;
        match self {
            Self::Prefix(_) | Self::Unsupported { .. } => true,
            Self::Connect { source, .. } => matches!(
                source.kind(),
                ConnectErrorKind::AuthorizationViolation
                    | ConnectErrorKind::Authentication
                    | ConnectErrorKind::ServerParse
            ),
            _ => false,
        }
    }
}

impl ConsumerRole {
    /// Durable consumer name.
    pub fn durable_name(self) -> &'static str {
        match self {
            Self::Mutator => "mutator",
            Self::Notifier => "notifier",
            Self::Migrator => "migrator",
            Self::Forge => "forge",
        }
    }

    /// The logical subjects the role's consumer takes.
    fn filters(self) -> &'static [&'static str] {
        match self {
            Self::Mutator => &[subjects::ALL_MUTATIONS_ENQUEUED],
            Self::Notifier => &[subjects::ALL_INTERFACES_PUBLISHED],
            Self::Migrator => &[subjects::ALL_MIGRATIONS_REQUESTED],
            Self::Forge => &[subjects::ALL_FORGE_CHANGED, subjects::FORGE_SWEEP_REQUESTED],
        }
    }
}

/// A connected bus: the NATS client, its JetStream context and the namespace.
#[derive(Clone, Debug)]
pub struct Bus {
    /// The core NATS connection (also used for readiness).
    pub client: async_nats::Client,
    /// JetStream on that connection, with `publish_timeout` applied.
    pub jetstream: jetstream::Context,
    /// The deployment prefix every wire subject carries.
    pub namespace: Namespace,
    /// What this bus was connected with.
    pub config: BusConfig,
}

impl Bus {
    /// Connects and declares the stream. Fails fast if NATS is unreachable; callers
    /// that want to wait for it wrap this in a retry.
    pub async fn connect(config: &BusConfig, client_name: &str) -> Result<Self, BusError> {
        let namespace = Namespace::new(&config.subject_prefix)?;
        let (servers, credentials) = split_credentials(&config.url);
        let options = match credentials {
            Some(Credentials::UserPassword(user, password)) => {
                async_nats::ConnectOptions::with_user_and_password(user, password)
            }
            Some(Credentials::Token(token)) => async_nats::ConnectOptions::with_token(token),
            None => async_nats::ConnectOptions::new(),
        };
        let client = options
            .name(client_name)
            .connection_timeout(Duration::from_secs(5))
            // A list (`nats://a:4222,nats://b:4222`) is a cluster's seed servers:
            // async-nats parses a lone string as one URL, so hand it each in turn.
            .connect(servers.split(',').collect::<Vec<_>>())
            .await
            .map_err(|source| BusError::Connect {
                url: shown_url(&config.url),
                source,
            })?;
        let mut jetstream = jetstream::new(client.clone());
        check_server(&client, &jetstream, &config.url).await?;
        jetstream.set_timeout(config.publish_timeout);
        let bus = Self {
            client,
            jetstream,
            namespace,
            config: config.clone(),
        };
        bus.ensure_stream().await?;
        Ok(bus)
    }

    async fn ensure_stream(&self) -> Result<(), BusError> {
        let config = stream::Config {
            name: self.config.stream.clone(),
            subjects: self.namespace.stream_subjects(),
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age: self.config.max_age,
            duplicate_window: self.config.duplicate_window,
            num_replicas: self.config.replicas,
            ..Default::default()
        };
        self.jetstream
            .create_or_update_stream(config)
            .await
            .map_err(|source| BusError::Stream {
                stream: self.config.stream.clone(),
                source,
            })?;
        Ok(())
    }

    /// Creates (or updates) the role's durable pull consumer and returns it.
    pub async fn consumer(
        &self,
        role: ConsumerRole,
        max_ack_pending: i64,
    ) -> Result<consumer::PullConsumer, BusError> {
        let name = role.durable_name();
        let failed = |source| BusError::Consumer {
            consumer: name.to_owned(),
            source,
        };
        self.jetstream
            .create_consumer_on_stream(
                consumer::pull::Config {
                    durable_name: Some(name.to_owned()),
                    filter_subject: match role.filters() {
                        [one] => self.namespace.qualify(one),
                        _ => String::new(),
                    },
                    // More than one: JetStream's `filter_subjects` (server 2.10+).
                    filter_subjects: match role.filters() {
                        [_] => Vec::new(),
                        many => many.iter().map(|f| self.namespace.qualify(f)).collect(),
                    },
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: self.config.ack_wait,
                    deliver_policy: consumer::DeliverPolicy::All,
                    max_ack_pending,
                    num_replicas: self.config.replicas,
                    ..Default::default()
                },
                &self.config.stream,
            )
            .await
            .map_err(failed)
    }

    /// Sends one event with `Nats-Msg-Id` = its id and returns the pending ack, so
    /// callers can pipeline many.
    pub async fn send(
        &self,
        event: &Event,
    ) -> Result<jetstream::context::PublishAckFuture, BusError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            "Nats-Msg-Id",
            HeaderValue::from(event.id.to_string().as_str()),
        );
        let payload = serde_json::to_vec(event).expect("an Event always serializes");
        let send = self.jetstream.publish_with_headers(
            self.namespace.qualify(&event.subject),
            headers,
            payload.into(),
        );
        // While disconnected, the client buffers until full and then waits; bound it
        // so callers (the relay) stay responsive to shutdown and fall back to the sweep.
        let failed = |reason: String| BusError::Publish {
            subject: event.subject.clone(),
            reason,
        };
        match tokio::time::timeout(self.config.publish_timeout, send).await {
            Ok(sent) => sent.map_err(|e| failed(e.to_string())),
            Err(_) => Err(failed(
                "timed out waiting for the NATS connection".to_owned(),
            )),
        }
    }
}

/// `url` as it may be logged: a user part (`user:password@`, or a NATS token before
/// `@`) becomes `***@`.
pub fn shown_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// What a NATS URL's user part carries.
#[derive(Debug, PartialEq, Eq)]
enum Credentials {
    /// `nats://user:password@host`.
    UserPassword(String, String),
    /// `nats://token@host`.
    Token(String),
}

/// Splits the credentials off a NATS URL (or a comma-separated list of them), since
/// the client does not read them from the URL: the server list without user parts,
/// and the first URL's credentials, percent-decoded.
fn split_credentials(urls: &str) -> (String, Option<Credentials>) {
    let mut credentials = None;
    let servers: Vec<String> = urls
        .split(',')
        .map(|raw| {
            let raw = raw.trim();
            let Ok(mut url) = url::Url::parse(raw) else {
                return raw.to_owned();
            };
            if url.username().is_empty() && url.password().is_none() {
                return raw.to_owned();
            }
            let decode = |s: &str| {
                url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            let user = decode(url.username());
            let found = match url.password() {
                Some(password) => Credentials::UserPassword(user, decode(password)),
                None => Credentials::Token(user),
            };
            credentials.get_or_insert(found);
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string().trim_end_matches('/').to_owned()
        })
        .collect();
    (servers.join(","), credentials)
}

/// Refuses a server that lacks what switchyard needs, before anything is declared
/// on it: [`MIN_SERVER_VERSION`], and JetStream on the server and for this account.
/// (A server without message headers, which `Nats-Msg-Id` de-duplication needs,
/// refuses the client's CONNECT itself: "no responders requires headers support".)
async fn check_server(
    client: &async_nats::Client,
    jetstream: &jetstream::Context,
    url: &str,
) -> Result<(), BusError> {
    let info = client.server_info();
    let unsupported = |missing: String| BusError::Unsupported {
        url: shown_url(url),
        server: describe_server(&info),
        missing,
    };
    let (major, minor, patch) = MIN_SERVER_VERSION;
    if parse_version(&info.version).is_none_or(|version| version < MIN_SERVER_VERSION) {
        return Err(unsupported(format!(
            "switchyard needs nats-server {major}.{minor}.{patch} or newer \
             (JetStream consumer create actions); start one with scripts/up, or point NATS_URL at one"
        )));
    }
    if !info.jetstream {
        return Err(unsupported(
            "JetStream is not enabled on the server (start it with -js)".to_owned(),
        ));
    }
    use async_nats::jetstream::ErrorCode;
    use async_nats::jetstream::context::AccountErrorKind;
    match jetstream.query_account().await {
        Ok(_) => Ok(()),
        // A definite answer: this account has no JetStream.
        Err(error)
            if matches!(error.kind(), AccountErrorKind::JetStream(e)
                if e.error_code() == ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT
                    || e.error_code() == ErrorCode::JETSTREAM_NOT_ENABLED) =>
        {
            Err(unsupported(format!(
                "JetStream is not enabled for this account ({error})"
            )))
        }
        // No responders or a timeout: a server just started, or a cluster electing
        // its meta leader, answers like this for a few seconds; waited out like an
        // unreachable server.
        Err(error) => Err(BusError::JetStreamUnavailable {
            url: shown_url(url),
            reason: error.to_string(),
        }),
    }
}

/// A server as logs and errors name it: `nats-server 2.12.8 "NC4N…"` (version, name).
pub fn describe_server(info: &async_nats::ServerInfo) -> String {
    format!("nats-server {} {:?}", info.version, info.server_name)
}

/// `2.10.22` or `2.11.0-beta.1` as (major, minor, patch); pre-release suffixes are
/// ignored.
fn parse_version(version: &str) -> Option<(u64, u64, u64)> {
    let core = version.trim_start_matches('v').split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::{MIN_SERVER_VERSION, parse_version, shown_url};

    #[test]
    fn credentials_never_show() {
        assert_eq!(shown_url("nats://tok3n@host:4222"), "nats://***@host:4222");
        assert_eq!(shown_url("nats://u:p4ss@host:4222"), "nats://***@host:4222");
        assert_eq!(shown_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
    }

    #[test]
    fn url_credentials_are_passed_as_options_not_in_the_url() {
        use super::{Credentials, split_credentials};
        assert_eq!(
            split_credentials("nats://127.0.0.1:4222"),
            ("nats://127.0.0.1:4222".to_owned(), None)
        );
        assert_eq!(
            split_credentials("nats://app:p%40ss@127.0.0.1:4222"),
            (
                "nats://127.0.0.1:4222".to_owned(),
                Some(Credentials::UserPassword("app".into(), "p@ss".into()))
            )
        );
        assert_eq!(
            split_credentials("nats://s3cr3t@a:4222, nats://b:4222"),
            (
                "nats://a:4222,nats://b:4222".to_owned(),
                Some(Credentials::Token("s3cr3t".into()))
            )
        );
    }

    #[test]
    fn server_versions_compare_by_number() {
        assert_eq!(parse_version("2.9.25"), Some((2, 9, 25)));
        assert_eq!(parse_version("2.11.0-beta.1"), Some((2, 11, 0)));
        assert_eq!(parse_version("v2.10"), Some((2, 10, 0)));
        assert_eq!(parse_version("banana"), None);
        assert!(parse_version("2.9.25").unwrap() < MIN_SERVER_VERSION);
        assert!(parse_version("2.10.0").unwrap() >= MIN_SERVER_VERSION);
        assert!(parse_version("2.12.8").unwrap() >= MIN_SERVER_VERSION);
    }
}
