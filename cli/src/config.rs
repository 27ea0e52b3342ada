//! Configuration, layered with figment: built-in defaults, then an optional
//! `switchyard.toml`, then `DATABASE_URL` / `NATS_URL`, then `SWITCHYARD_*` variables
//! (`__` separates sections: `SWITCHYARD_MUTATOR__CONCURRENCY=64`).
//!
//! A value that does not parse, an unknown key, or a value out of range stops
//! start-up with a message naming the key.

use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};
use switchyard_api::ApiConfig;
use switchyard_api::auth::{AuthConfig, MAX_STREAM_TOKEN_TTL};
use switchyard_bus::BusConfig;
use switchyard_bus::jetstream::MAX_REPLICAS;
use switchyard_domain::json::Limits;
use switchyard_workers::forge::{ForgeConfig, RepoName};
use switchyard_workers::migrator::MigratorConfig;
use switchyard_workers::mutator::MutatorConfig;
use switchyard_workers::notifier::NotifierConfig;
use switchyard_workers::reconciler::ReconcilerConfig;
use switchyard_workers::relay::RelayConfig;

/// `SWITCHYARD_*` variables that are not configuration keys: the config file's path
/// (`SWITCHYARD_CONFIG`) and the CLI client's API address and token.
const NOT_CONFIGURATION: &[&str] = &["CONFIG", "URL", "TOKEN"];

/// Keys that were renamed, and their new names; the old ones are refused with a hint.
const MOVED_KEYS: &[(&str, &str)] = &[
    ("http.max_document_bytes", "documents.max_bytes"),
    ("http.max_document_depth", "documents.max_depth"),
];

/// Everything a switchyard process can be told.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub http: ApiConfig,
    pub auth: AuthConfig,
    /// What every stored JSON document keeps to, in the API and the workers alike.
    pub documents: Limits,
    pub database: DatabaseConfig,
    pub bus: BusConfig,
    pub mutator: MutatorConfig,
    pub notifier: NotifierConfig,
    pub migrator: MigratorConfig,
    pub relay: RelayConfig,
    pub reconciler: ReconcilerConfig,
    /// The Gitea the forge metadata cache mirrors.
    pub forge: ForgeConfig,
    pub log: LogConfig,
    pub telemetry: TelemetryConfig,
    pub shutdown: ShutdownConfig,
    /// Where `/metrics` is served.
    pub metrics: MetricsConfig,
}

/// Prometheus metrics (section `metrics`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// A listener of its own for `/metrics`, `host:port` (port 0 picks a free port).
    /// Set, `/metrics` is served only there, by every process (worker-only ones
    /// included); unset, by each API process on its own listener, and by no other.
    #[serde(deserialize_with = "some_listen_address")]
    pub listen: Option<std::net::SocketAddr>,
}

/// `metrics.listen`: read like `http.listen`.
fn some_listen_address<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<std::net::SocketAddr>, D::Error> {
    switchyard_api::listen_address(deserializer).map(Some)
}

/// Postgres settings (section `database`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Connection URL; `DATABASE_URL` sets it too.
    pub url: String,
    /// Pool size of one process.
    pub max_connections: u32,
    /// How long a request waits for a free connection before failing.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// Postgres aborts a transaction idle this long, releasing any row lock (claim)
    /// a hung holder kept.
    #[serde(with = "humantime_serde")]
    pub idle_in_transaction_timeout: Duration,
    /// Postgres cancels any one statement running longer than this.
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/switchyard".to_owned(),
            max_connections: 32,
            acquire_timeout: Duration::from_secs(5),
            idle_in_transaction_timeout: Duration::from_secs(60),
            statement_timeout: Duration::from_secs(30),
        }
    }
}

/// Log settings (section `log`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` for people, `json` for log pipelines.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `switchyard_workers=debug,info`; `RUST_LOG` wins.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            // Postgres notices ("relation … already exists, skipping" on every
            // migrate) are noise at info.
            filter: "info,sqlx::postgres::notice=warn".to_owned(),
        }
    }
}

/// Trace export (section `telemetry`). Spans and trace ids exist whatever is set here
/// (see `crate::telemetry`); this only decides whether they leave the process.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Base URL of an OpenTelemetry collector's OTLP/HTTP receiver, e.g.
    /// `http://127.0.0.1:4318`: spans are POSTed as protobuf to `{url}/v1/traces`.
    /// `None` (the default): nothing is exported.
    pub otlp_endpoint: Option<String>,
}

impl TelemetryConfig {
    /// Where spans are sent: the endpoint with `/v1/traces`, when one is set.
    pub fn traces_url(&self) -> Option<String> {
        let endpoint = self.otlp_endpoint.as_deref()?;
        Some(format!(
            "{}{OTLP_TRACES_PATH}",
            endpoint.trim_end_matches('/')
        ))
    }
}

/// The OTLP/HTTP path of traces, added to `telemetry.otlp_endpoint`.
const OTLP_TRACES_PATH: &str = "/v1/traces";

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Graceful shutdown (section `shutdown`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long in-flight work may take to finish after SIGINT/SIGTERM.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_timeout: Duration::from_secs(20),
        }
    }
}

/// A configuration that cannot be used. The message names the key as the user
/// writes it: `http.listen` in a file, and its variable `SWITCHYARD_HTTP__LISTEN`
/// (or `DATABASE_URL` / `NATS_URL`).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value that does not parse, or an unknown key; `origin` says where it was
    /// set (a file, or the environment variable).
    #[error("configuration key {key} ({origin}): {problem}")]
    Parse {
        key: String,
        origin: String,
        problem: String,
    },
    #[error("configuration file {0} does not exist")]
    MissingFile(String),
    /// A value that parses but is out of range.
    #[error("configuration key {key} ({}): {problem}", env_names(key))]
    Invalid { key: &'static str, problem: String },
}

/// `SWITCHYARD_HTTP__LISTEN` for `http.listen`.
fn prefixed_env_name(key: &str) -> String {
    format!("SWITCHYARD_{}", key.to_ascii_uppercase().replace('.', "__"))
}

/// The environment variables that set `key` (a dotted key such as `http.listen`).
pub fn env_names(key: &str) -> String {
    let prefixed = prefixed_env_name(key);
    match key {
        "database.url" => format!("{prefixed} or DATABASE_URL"),
        "bus.url" => format!("{prefixed} or NATS_URL"),
        _ => prefixed,
    }
}

/// Where the value of `key` was set, as the user wrote it: the file's path, or the
/// environment variable's name.
fn origin(metadata: Option<&figment::Metadata>, key: &str) -> String {
    match metadata {
        Some(md) if md.name.contains("environment") => {
            if md.name.contains("SWITCHYARD_") {
                prefixed_env_name(key)
            } else if key == "bus.url" {
                "NATS_URL".to_owned()
            } else {
                "DATABASE_URL".to_owned()
            }
        }
        Some(md) => match &md.source {
            Some(source) => source.to_string(),
            None => md.name.to_string(),
        },
        None => env_names(key),
    }
}

impl From<figment::Error> for ConfigError {
    /// Names the first fault by its dotted key and where it was set, instead of
    /// figment's internal form (`default.http.listen`, `HTTP.LISTEN`).
    fn from(error: figment::Error) -> Self {
        let error = error.into_iter().next().expect("a figment error holds one");
        let mut path = error.path.clone();
        let problem = match &error.kind {
            figment::error::Kind::UnknownField(field, _) => {
                if path.last() != Some(field) {
                    path.push(field.clone());
                }
                let dotted = path.join(".");
                match MOVED_KEYS
                    .iter()
                    .find(|(old, _)| dotted.eq_ignore_ascii_case(old))
                {
                    Some((_, new)) => format!("unknown key: it is now {new}"),
                    None => "unknown key".to_owned(),
                }
            }
            kind => kind.to_string(),
        };
        let key = path.join(".");
        let origin = origin(error.metadata.as_ref(), &key);
        ConfigError::Parse {
            key,
            origin,
            problem,
        }
    }
}

impl Config {
    /// Loads the layers. `file` defaults to `switchyard.toml` in the working directory,
    /// which may be absent; an explicitly named file must exist.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let toml = match file {
            Some(path) if !path.is_file() => {
                return Err(ConfigError::MissingFile(path.display().to_string()));
            }
            Some(path) => Toml::file_exact(path),
            None => Toml::file("switchyard.toml"),
        };
        Self::from_figment(Figment::new().merge(toml))
    }

    /// Adds the environment layers to `base` and validates.
    pub fn from_figment(base: Figment) -> Result<Self, ConfigError> {
        let figment = base
            .merge(
                Env::raw()
                    .only(&["DATABASE_URL"])
                    .map(|_| "database.url".into()),
            )
            .merge(Env::raw().only(&["NATS_URL"]).map(|_| "bus.url".into()))
            .merge(
                Env::prefixed("SWITCHYARD_")
                    .ignore(NOT_CONFIGURATION)
                    .split("__"),
            );
        let config: Config = figment.extract()?;
        // A value out of range names where it was set, like one that does not parse.
        config.validate().map_err(|error| match error {
            ConfigError::Invalid { key, problem } => ConfigError::Parse {
                key: key.to_owned(),
                origin: origin(figment.find_metadata(key), key),
                problem,
            },
            other => other,
        })?;
        Ok(config)
    }

    /// What the API is told: its `http` and `auth` sections, the `documents` rules and
    /// the forge's webhook secret.
    pub fn api_settings(&self) -> switchyard_api::Settings {
        switchyard_api::Settings {
            http: self.http.clone(),
            auth: self.auth.clone(),
            documents: self.documents,
            webhook_secret: self.forge.webhook_secret.clone(),
        }
    }

    /// The configuration in force as TOML (what `switchyard config check` prints):
    /// every section and key, defaults included, in the form a `switchyard.toml`
    /// takes. Secrets never show: `auth.secret`, `forge.token` and
    /// `forge.webhook_secret` read `***` when set, and so do the credentials in
    /// `database.url`, `bus.url` (each server of a list), `forge.url` and
    /// `telemetry.otlp_endpoint`, a user part
    /// or a `password` parameter. Keys without a value (an unset `forge.url`) are
    /// left out.
    pub fn masked_toml(&self) -> String {
        let mut shown = self.clone();
        for secret in [
            &mut shown.auth.secret,
            &mut shown.forge.token,
            &mut shown.forge.webhook_secret,
        ] {
            if secret.is_some() {
                *secret = Some(MASK.to_owned());
            }
        }
        shown.database.url = masked_url(&shown.database.url);
        shown.bus.url = masked_url(&shown.bus.url);
        shown.forge.url = shown.forge.url.as_deref().map(masked_url);
        shown.telemetry.otlp_endpoint = shown.telemetry.otlp_endpoint.as_deref().map(masked_url);
        toml::to_string(&shown).expect("every configuration value has a TOML form")
    }

    /// Every check; the first failure names its key.
    fn validate(&self) -> Result<(), ConfigError> {
        self.check_counts()?;
        self.check_durations()?;
        self.check_ranges()?;
        self.check_names()
    }

    /// Counts that must be at least 1.
    fn check_counts(&self) -> Result<(), ConfigError> {
        let counts: [(&'static str, u64); 26] = [
            ("forge.page_limit", self.forge.page_limit as u64),
            ("forge.max_attempts", u64::from(self.forge.max_attempts)),
            ("forge.read_concurrency", self.forge.read_concurrency as u64),
            ("forge.max_entry_bytes", self.forge.max_entry_bytes),
            ("forge.concurrency", self.forge.concurrency as u64),
            (
                "forge.max_ack_pending",
                self.forge.max_ack_pending.max(0) as u64,
            ),
            ("http.max_event_streams", self.http.max_event_streams as u64),
            ("http.event_buffer", self.http.event_buffer as u64),
            (
                "http.max_batch_mutations",
                self.http.max_batch_mutations as u64,
            ),
            ("http.group_commit_size", self.http.group_commit_size as u64),
            (
                "http.group_commit_concurrency",
                self.http.group_commit_concurrency as u64,
            ),
            ("http.body_limit_bytes", self.http.body_limit_bytes as u64),
            ("documents.max_bytes", self.documents.max_bytes as u64),
            (
                "http.max_ops_per_mutation",
                self.http.max_ops_per_mutation as u64,
            ),
            (
                "database.max_connections",
                u64::from(self.database.max_connections),
            ),
            ("mutator.concurrency", self.mutator.concurrency as u64),
            ("mutator.batch_size", self.mutator.batch_size as u64),
            (
                "mutator.max_batches_per_message",
                self.mutator.max_batches_per_message as u64,
            ),
            (
                "mutator.max_ack_pending",
                self.mutator.max_ack_pending.max(0) as u64,
            ),
            ("notifier.concurrency", self.notifier.concurrency as u64),
            (
                "notifier.max_ack_pending",
                self.notifier.max_ack_pending.max(0) as u64,
            ),
            ("migrator.concurrency", self.migrator.concurrency as u64),
            ("migrator.batch_size", self.migrator.batch_size as u64),
            (
                "migrator.max_ack_pending",
                self.migrator.max_ack_pending.max(0) as u64,
            ),
            ("relay.batch_size", self.relay.batch_size as u64),
            (
                "reconciler.batch_size",
                self.reconciler.batch_size.max(0) as u64,
            ),
        ];
        if let Some((key, _)) = counts.iter().find(|(_, value)| *value == 0) {
            return Err(invalid(key, "must be at least 1"));
        }
        Ok(())
    }

    /// Durations that must be longer than zero.
    fn check_durations(&self) -> Result<(), ConfigError> {
        let durations: [(&'static str, Duration); 17] = [
            ("forge.reconcile_interval", self.forge.reconcile_interval),
            ("forge.request_timeout", self.forge.request_timeout),
            ("forge.max_retry_delay", self.forge.max_retry_delay),
            ("forge.claim_ttl", self.forge.claim_ttl),
            ("forge.delivery_retention", self.forge.delivery_retention),
            ("http.event_keepalive", self.http.event_keepalive),
            ("http.request_timeout", self.http.request_timeout),
            ("database.acquire_timeout", self.database.acquire_timeout),
            (
                "database.statement_timeout",
                self.database.statement_timeout,
            ),
            ("bus.ack_wait", self.bus.ack_wait),
            ("bus.publish_timeout", self.bus.publish_timeout),
            ("bus.duplicate_window", self.bus.duplicate_window),
            ("mutator.lock_timeout", self.mutator.lock_timeout),
            ("migrator.lease", self.migrator.lease),
            ("relay.sweep_interval", self.relay.sweep_interval),
            ("reconciler.interval", self.reconciler.interval),
            ("shutdown.drain_timeout", self.shutdown.drain_timeout),
        ];
        if let Some((key, _)) = durations.iter().find(|(_, value)| value.is_zero()) {
            return Err(invalid(key, "must be longer than 0s"));
        }
        Ok(())
    }

    /// Values with bounds of their own: the document depth, stream tokens' lifetime,
    /// the secret's length.
    fn check_ranges(&self) -> Result<(), ConfigError> {
        /// Most enqueues in one group commit or one bulk request.
        const MAX_GROUP: usize = 10_000;
        let max_depth = switchyard_domain::json::MAX_CONFIGURABLE_DEPTH;
        if !(1..=max_depth).contains(&self.documents.max_depth) {
            return Err(invalid(
                "documents.max_depth",
                &format!(
                    "must be between 1 and {max_depth} (serde_json reads no deeper than 128 levels, and events wrap documents)"
                ),
            ));
        }
        // Sizes of what one transaction or one queue holds; past these, memory (and a
        // transaction's length) would follow a typo.
        for (key, value) in [
            ("http.group_commit_size", self.http.group_commit_size),
            ("http.max_batch_mutations", self.http.max_batch_mutations),
        ] {
            if value > MAX_GROUP {
                return Err(invalid(key, &format!("must be at most {MAX_GROUP}")));
            }
        }
        let ttl = self.auth.stream_token_ttl;
        if ttl.is_zero() || ttl > MAX_STREAM_TOKEN_TTL {
            return Err(invalid(
                "auth.stream_token_ttl",
                "must be between 1s and 5m",
            ));
        }
        if self.auth.secret.as_ref().is_some_and(|s| s.len() < 32) {
            return Err(invalid("auth.secret", "must be at least 32 characters"));
        }
        // A publish retried after JetStream stored it but its acknowledgement was lost
        // must fall inside the duplicate window, or the event would be stored twice.
        let retried_until = self.relay.retry_for + 2 * self.bus.publish_timeout;
        if self.bus.duplicate_window <= retried_until {
            return Err(invalid(
                "bus.duplicate_window",
                &format!(
                    "must be longer than relay.retry_for plus twice bus.publish_timeout ({}), \
                     so that a retried publish is recognised as a duplicate",
                    humantime::format_duration(retried_until)
                ),
            ));
        }
        if !(1..=MAX_REPLICAS).contains(&self.bus.replicas) {
            return Err(invalid(
                "bus.replicas",
                &format!("must be between 1 and {MAX_REPLICAS} (JetStream's limit)"),
            ));
        }
        Ok(())
    }

    /// Addresses and names: the database URL, CORS origins, the subject prefix, the
    /// stream name, the forge section and the OTLP endpoint.
    fn check_names(&self) -> Result<(), ConfigError> {
        if let Err(error) = switchyard_bus::jetstream::servers(&self.bus.url) {
            return Err(invalid("bus.url", &error.to_string()));
        }
        self.database
            .url
            .parse::<sqlx::postgres::PgConnectOptions>()
            .map_err(|e| invalid("database.url", &format!("not a Postgres URL ({e})")))?;
        if let Some(origin) = self.http.cors_origins.iter().find(|o| !is_origin(o)) {
            return Err(invalid(
                "http.cors_origins",
                &format!("{origin:?} is not an origin: use scheme://host[:port] (no path), or *"),
            ));
        }
        switchyard_bus::Namespace::new(&self.bus.subject_prefix)
            .map_err(|e| invalid("bus.subject_prefix", &e.to_string()))?;
        let stream_ok = !self.bus.stream.is_empty()
            && self
                .bus
                .stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !stream_ok {
            return Err(invalid(
                "bus.stream",
                "use letters, digits, '-' and '_' only",
            ));
        }
        self.check_forge()?;
        self.check_telemetry()
    }

    /// `telemetry.otlp_endpoint`: an `http(s)://` base URL without query, fragment or
    /// the `/v1/traces` switchyard adds.
    fn check_telemetry(&self) -> Result<(), ConfigError> {
        let Some(endpoint) = &self.telemetry.otlp_endpoint else {
            return Ok(());
        };
        let key = "telemetry.otlp_endpoint";
        if endpoint.trim_end_matches('/').ends_with(OTLP_TRACES_PATH) {
            return Err(invalid(
                key,
                &format!(
                    "{endpoint:?} ends with {OTLP_TRACES_PATH}: give the collector's base URL; switchyard adds {OTLP_TRACES_PATH}"
                ),
            ));
        }
        let url = reqwest::Url::parse(endpoint).ok();
        let well_formed = url.is_some_and(|url| {
            matches!(url.scheme(), "http" | "https")
                && url.host().is_some()
                && url.query().is_none()
                && url.fragment().is_none()
        });
        if !well_formed {
            return Err(invalid(
                key,
                &format!(
                    "{endpoint:?} is not an OTLP/HTTP base URL (http(s)://host[:port][/path], e.g. http://127.0.0.1:4318)"
                ),
            ));
        }
        Ok(())
    }

    /// The forge section: a URL and a meta repo together, each well-formed.
    fn check_forge(&self) -> Result<(), ConfigError> {
        let forge = &self.forge;
        if let Some(url) = &forge.url {
            let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
            if url.trim_end_matches('/').ends_with("/api/v1") {
                return Err(invalid(
                    "forge.url",
                    &format!(
                        "{url:?} ends with /api/v1: give Gitea's base URL; switchyard adds /api/v1"
                    ),
                ));
            }
            if !scheme_ok || url.contains(['?', '#', ' ']) {
                return Err(invalid(
                    "forge.url",
                    &format!("{url:?} is not Gitea's base URL (http(s)://host[:port][/path])"),
                ));
            }
            if forge.meta_repo.is_none() {
                return Err(invalid(
                    "forge.meta_repo",
                    "must be set (owner/name) when forge.url is",
                ));
            }
        }
        if let Some(meta) = &forge.meta_repo
            && RepoName::parse(meta).is_none()
        {
            return Err(invalid(
                "forge.meta_repo",
                &format!("{meta:?} is not a Gitea repo (owner/name)"),
            ));
        }
        if forge.webhook_secret.as_ref().is_some_and(|s| s.is_empty()) {
            return Err(invalid(
                "forge.webhook_secret",
                "must not be empty when set",
            ));
        }
        if forge.main_branch.is_empty() {
            return Err(invalid("forge.main_branch", "must not be empty"));
        }
        Ok(())
    }
}

/// What a secret reads as in [`Config::masked_toml`].
const MASK: &str = "***";

/// `url` without its credentials: a user part becomes `***@` (in each URL of a
/// comma-separated list), and a `password=` parameter `password=***`.
fn masked_url(url: &str) -> String {
    let shown = switchyard_bus::jetstream::shown_url(url);
    let Some((base, query)) = shown.split_once('?') else {
        return shown;
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if name.eq_ignore_ascii_case("password") => {
                format!("{name}={MASK}")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

/// `*`, or `http(s)://host[:port]` as a browser sends it in `Origin`.
fn is_origin(origin: &str) -> bool {
    if origin == "*" {
        return true;
    }
    let Some((scheme, host)) = origin.split_once("://") else {
        return false;
    };
    // Lowercase only: browsers send origins lowercased, and they are compared exactly.
    matches!(scheme, "http" | "https")
        && !host.is_empty()
        && host.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | ':' | '[' | ']')
        })
}

fn invalid(key: &'static str, problem: &str) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.to_owned(),
    }
}

#[cfg(test)]
// `Jail` closures return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use figment::Jail;

    use super::*;

    #[test]
    fn layers_apply_in_order() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "switchyard.toml",
                "[mutator]\nconcurrency = 7\nbatch_size = 9",
            )?;
            jail.set_env("SWITCHYARD_MUTATOR__BATCH_SIZE", "11");
            jail.set_env("DATABASE_URL", "postgres://elsewhere/db");
            jail.set_env("SWITCHYARD_RELAY__SWEEP_INTERVAL", "250ms");
            let config = Config::load(None).expect("valid");
            assert_eq!(config.mutator.concurrency, 7);
            assert_eq!(config.mutator.batch_size, 11);
            assert_eq!(config.database.url, "postgres://elsewhere/db");
            assert_eq!(config.relay.sweep_interval, Duration::from_millis(250));
            assert_eq!(
                config.reconciler.interval,
                ReconcilerConfig::default().interval
            );
            Ok(())
        });
    }

    #[test]
    fn a_bad_value_names_its_key() {
        Jail::expect_with(|jail| {
            jail.set_env("SWITCHYARD_MUTATOR__CONCURRENCY", "lots");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.to_lowercase().contains("mutator.concurrency"), "{err}");
            jail.set_env("SWITCHYARD_MUTATOR__CONCURRENCY", "0");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("mutator.concurrency"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn cors_origins_come_from_env_as_a_list_and_must_be_origins() {
        Jail::expect_with(|jail| {
            jail.set_env(
                "SWITCHYARD_HTTP__CORS_ORIGINS",
                r#"["https://editor.example.com", "http://127.0.0.1:5173"]"#,
            );
            let config = Config::load(None).expect("valid");
            assert_eq!(config.http.cors_origins.len(), 2);
            for bad in [
                r#"["https://example.com/app"]"#,
                r#"["example.com"]"#,
                r#"["https://Example.com"]"#,
            ] {
                jail.set_env("SWITCHYARD_HTTP__CORS_ORIGINS", bad);
                let err = Config::load(None).unwrap_err().to_string();
                assert!(err.contains("http.cors_origins"), "{err}");
            }
            Ok(())
        });
    }

    #[test]
    fn the_document_depth_stays_below_what_serde_json_reads() {
        Jail::expect_with(|jail| {
            for bad in ["0", "101"] {
                jail.set_env("SWITCHYARD_DOCUMENTS__MAX_DEPTH", bad);
                let err = Config::load(None).unwrap_err().to_string();
                assert!(err.contains("documents.max_depth"), "{err}");
                assert!(err.contains("between 1 and 100"), "{err}");
            }
            jail.set_env("SWITCHYARD_DOCUMENTS__MAX_DEPTH", "100");
            assert_eq!(Config::load(None).unwrap().documents.max_depth, 100);
            Ok(())
        });
    }

    #[test]
    fn the_bus_section_is_checked_for_a_cluster() {
        Jail::expect_with(|jail| {
            // A cluster's nodes, comma-separated; each must parse.
            jail.set_env("NATS_URL", "nats://127.0.0.1:4222, nats://127.0.0.1:4223");
            assert!(Config::load(None).is_ok());
            jail.set_env("NATS_URL", "nats://127.0.0.1:4222,nats://u:secret@n2:port");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(
                err.starts_with("configuration key bus.url (NATS_URL): "),
                "{err}"
            );
            assert!(
                err.contains("***@n2:port") && !err.contains("secret"),
                "{err}"
            );
            jail.clear_env();
            for bad in ["0", "6"] {
                jail.set_env("SWITCHYARD_BUS__REPLICAS", bad);
                let err = Config::load(None).unwrap_err().to_string();
                assert!(
                    err.contains("bus.replicas") && err.contains("between 1 and 5"),
                    "{err}"
                );
            }
            jail.set_env("SWITCHYARD_BUS__REPLICAS", "3");
            assert_eq!(Config::load(None).unwrap().bus.replicas, 3);
            // Retried publishes must stay inside the duplicate window.
            jail.set_env("SWITCHYARD_RELAY__RETRY_FOR", "2m");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(
                err.starts_with("configuration key bus.duplicate_window (SWITCHYARD_BUS__DUPLICATE_WINDOW): must be longer than"),
                "{err}"
            );
            jail.set_env("SWITCHYARD_BUS__DUPLICATE_WINDOW", "3m");
            assert!(Config::load(None).is_ok());
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_key_as_written_and_where_it_was_set() {
        Jail::expect_with(|jail| {
            jail.set_env("SWITCHYARD_MUTATOR__CONCURRENCY", "lots");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(
                err.starts_with(
                    "configuration key mutator.concurrency (SWITCHYARD_MUTATOR__CONCURRENCY): "
                ),
                "{err}"
            );
            assert!(
                !err.contains("default.") && !err.contains("MUTATOR.CONCURRENCY"),
                "{err}"
            );
            jail.set_env("SWITCHYARD_MUTATOR__CONCURRENCY", "0");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(
                err.starts_with(
                    "configuration key mutator.concurrency (SWITCHYARD_MUTATOR__CONCURRENCY): must be"
                ),
                "{err}"
            );
            jail.clear_env();
            jail.create_file("switchyard.toml", "[mutator]\nconcurrency = 0")?;
            let err = Config::load(None).unwrap_err().to_string();
            assert!(
                err.starts_with("configuration key mutator.concurrency (")
                    && err.contains("switchyard.toml): must be at least 1"),
                "{err}"
            );
            jail.create_file("switchyard.toml", "[http]\ngroup_commit_size = 1000000000")?;
            let err = Config::load(None).unwrap_err().to_string();
            assert!(
                err.starts_with("configuration key http.group_commit_size (")
                    && err.ends_with("must be at most 10000"),
                "{err}"
            );
            jail.create_file("switchyard.toml", "[http]\nlisten = \"nowhere\"")?;
            let err = Config::load(None).unwrap_err().to_string();
            assert!(
                err.starts_with("configuration key http.listen (")
                    && err.contains("switchyard.toml"),
                "{err}"
            );
            assert!(err.contains("is not host:port"), "{err}");
            jail.create_file("switchyard.toml", "")?;
            jail.set_env("SWITCHYARD_HTTP__LISTN", "127.0.0.1:1");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(
                err.starts_with(
                    "configuration key http.listn (SWITCHYARD_HTTP__LISTN): unknown key"
                ),
                "{err}"
            );
            jail.clear_env();
            jail.set_env("NATS_URL", "42");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(
                err.starts_with("configuration key bus.url (NATS_URL): "),
                "{err}"
            );
            jail.clear_env();
            jail.set_env("DATABASE_URL", "postgres://host:port/db");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(
                err.starts_with("configuration key database.url (DATABASE_URL): "),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn localhost_is_a_listen_host_and_client_variables_are_not_configuration() {
        Jail::expect_with(|jail| {
            jail.set_env("SWITCHYARD_HTTP__LISTEN", "localhost:8181");
            jail.set_env("SWITCHYARD_URL", "http://127.0.0.1:8080");
            jail.set_env("SWITCHYARD_TOKEN", "abc");
            let config = Config::load(None).expect("valid");
            assert!(config.http.listen.ip().is_loopback());
            assert_eq!(config.http.listen.port(), 8181);
            for bad in [
                "localhost",
                ":8080",
                "localhost:http",
                "no such host.invalid:80",
            ] {
                jail.set_env("SWITCHYARD_HTTP__LISTEN", bad);
                let err = Config::load(None).unwrap_err().to_string();
                assert!(err.contains("http.listen"), "{bad}: {err}");
            }
            Ok(())
        });
    }

    #[test]
    fn the_forge_section_is_checked_as_a_whole() {
        let cases = [
            (
                "url = \"https://git.example.com/api/v1\"\nmeta_repo = \"a/b\"",
                "forge.url",
                "api/v1",
            ),
            (
                "url = \"git.example.com\"\nmeta_repo = \"a/b\"",
                "forge.url",
                "base URL",
            ),
            (
                "url = \"https://git.example.com\"",
                "forge.meta_repo",
                "must be set",
            ),
            (
                "meta_repo = \"just-a-name\"",
                "forge.meta_repo",
                "owner/name",
            ),
            ("webhook_secret = \"\"", "forge.webhook_secret", "empty"),
        ];
        for (section, key, problem) in cases {
            Jail::expect_with(|jail| {
                jail.create_file("switchyard.toml", &format!("[forge]\n{section}"))?;
                let err = Config::load(None).unwrap_err().to_string();
                assert!(
                    err.contains(key) && err.contains(problem),
                    "{section}: {err}"
                );
                Ok(())
            });
        }
        Jail::expect_with(|jail| {
            let good = "[forge]\nurl = \"https://git.example.com/\"\nmeta_repo = \"Acme/RFCs\"";
            jail.create_file("switchyard.toml", good)?;
            assert!(Config::load(None).is_ok());
            Ok(())
        });
    }

    #[test]
    fn the_printed_configuration_masks_every_secret_and_reads_back() {
        Jail::expect_with(|jail| {
            let secret = "s3cret-s3cret-s3cret-s3cret-s3cret";
            jail.set_env("SWITCHYARD_AUTH__SECRET", secret);
            jail.set_env("SWITCHYARD_FORGE__TOKEN", "gitea-t0ken");
            jail.set_env("SWITCHYARD_FORGE__WEBHOOK_SECRET", "w3bhook");
            jail.set_env(
                "SWITCHYARD_FORGE__URL",
                "https://bot:f0rgepass@git.example.com",
            );
            jail.set_env("SWITCHYARD_FORGE__META_REPO", "acme/rfcs");
            jail.set_env(
                "DATABASE_URL",
                "postgres://app:pgp4ss@db:5432/sy?password=pgp4ss2&sslmode=require",
            );
            jail.set_env("NATS_URL", "nats://u:n4tspass@n1:4222,nats://t0k@n2:4222");
            jail.set_env("SWITCHYARD_BUS__REPLICAS", "3");
            let printed = Config::load(None).expect("valid").masked_toml();
            for leaked in [
                secret,
                "gitea-t0ken",
                "w3bhook",
                "f0rgepass",
                "pgp4ss",
                "n4tspass",
                "t0k@",
            ] {
                assert!(!printed.contains(leaked), "{leaked} shows:\n{printed}");
            }
            for shown in [
                "url = \"postgres://***@db:5432/sy?password=***&sslmode=require\"",
                "url = \"nats://***@n1:4222,nats://***@n2:4222\"",
                "secret = \"***\"",
                "replicas = 3",
                "listen = \"127.0.0.1:8080\"",
            ] {
                assert!(printed.contains(shown), "no `{shown}` in:\n{printed}");
            }
            // Without secrets, what it prints is a configuration file that reads back
            // as the same configuration.
            jail.clear_env();
            jail.set_env("SWITCHYARD_BUS__REPLICAS", "3");
            jail.set_env("SWITCHYARD_HTTP__CORS_ORIGINS", r#"["https://a.example"]"#);
            let printed = Config::load(None).expect("valid").masked_toml();
            jail.clear_env();
            jail.create_file("switchyard.toml", &printed)?;
            let again = Config::load(None).expect("the printed file loads");
            assert_eq!(again.masked_toml(), printed);
            assert_eq!(again.bus.replicas, 3);
            Ok(())
        });
    }

    #[test]
    fn metrics_listen_is_optional_and_read_like_http_listen() {
        Jail::expect_with(|jail| {
            assert_eq!(Config::load(None).expect("valid").metrics.listen, None);
            jail.set_env("SWITCHYARD_METRICS__LISTEN", "127.0.0.1:9100");
            let listen = Config::load(None).expect("valid").metrics.listen;
            assert_eq!(listen, Some("127.0.0.1:9100".parse().unwrap()));
            jail.set_env("SWITCHYARD_METRICS__LISTEN", "nowhere");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(
                err.starts_with("configuration key metrics.listen (SWITCHYARD_METRICS__LISTEN): ")
                    && err.contains("is not host:port"),
                "{err}"
            );
            jail.clear_env();
            jail.create_file("switchyard.toml", "[metrics]\nlisen = \"127.0.0.1:9100\"")?;
            let err = Config::load(None).unwrap_err().to_string();
            assert!(
                err.contains("metrics.lisen") && err.contains("unknown key"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn the_otlp_endpoint_is_an_http_base_url() {
        Jail::expect_with(|jail| {
            assert_eq!(Config::load(None).unwrap().telemetry.traces_url(), None);
            for bad in [
                "127.0.0.1:4318",
                "grpc://collector:4317",
                "http://collector:4318?x=1",
                "http://collector:4318/v1/traces",
                "http://",
            ] {
                jail.set_env("SWITCHYARD_TELEMETRY__OTLP_ENDPOINT", bad);
                let err = Config::load(None).unwrap_err().to_string();
                assert!(
                    err.starts_with(
                        "configuration key telemetry.otlp_endpoint (SWITCHYARD_TELEMETRY__OTLP_ENDPOINT): "
                    ),
                    "{bad}: {err}"
                );
            }
            jail.set_env(
                "SWITCHYARD_TELEMETRY__OTLP_ENDPOINT",
                "https://otel.example.com/",
            );
            let config = Config::load(None).expect("valid");
            assert_eq!(
                config.telemetry.traces_url().as_deref(),
                Some("https://otel.example.com/v1/traces")
            );
            jail.set_env(
                "SWITCHYARD_TELEMETRY__OTLP_ENDPOINT",
                "http://127.0.0.1:4318",
            );
            let config = Config::load(None).expect("valid");
            assert_eq!(
                config.telemetry.traces_url().as_deref(),
                Some("http://127.0.0.1:4318/v1/traces")
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_refused() {
        Jail::expect_with(|jail| {
            jail.create_file("switchyard.toml", "[mutator]\nconcurency = 7")?;
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("concurency"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn a_moved_key_names_its_new_name() {
        Jail::expect_with(|jail| {
            jail.create_file("switchyard.toml", "[http]\nmax_document_bytes = 7")?;
            let err = Config::load(None).unwrap_err().to_string();
            assert!(
                err.contains("http.max_document_bytes")
                    && err.contains("it is now documents.max_bytes"),
                "{err}"
            );
            jail.create_file("switchyard.toml", "")?;
            jail.set_env("SWITCHYARD_HTTP__MAX_DOCUMENT_DEPTH", "7");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("it is now documents.max_depth"), "{err}");
            Ok(())
        });
    }
}
