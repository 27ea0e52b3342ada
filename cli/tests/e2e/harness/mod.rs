//! End-to-end harness: a fleet on port 0 against this test's own database, with its
//! own JetStream stream and subject prefix, so tests share one NATS server safely.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use switchyard::config::Config;
use switchyard::fleet::{Fleet, Roles};
use switchyard_api::auth::{Authenticator, Role};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Installs rustls's `ring` crypto provider in this test process (a second call
/// changes nothing). The `switchyard` crate builds reqwest with TLS but without a
/// default provider (see cli/Cargo.toml), so a reqwest client built before this
/// panics; every function below that a test starts with calls it.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The NATS server the tests use (`scripts/test` starts a pinned one).
pub fn nats_url() -> String {
    install_crypto_provider();
    std::env::var("NATS_URL").unwrap_or_else(|_| switchyard_bus::jetstream::DEFAULT_URL.to_owned())
}

/// A configuration isolated to this test: unique stream and prefix, port 0, and
/// timings short enough for recovery paths to show within seconds. Also gives this
/// test process's spans trace ids, as the binary's have (nothing is exported), so
/// fleets started in process propagate traces as a real process does.
pub fn isolated_config() -> Config {
    install_crypto_provider();
    switchyard::telemetry::init_in_process();
    let tag = Uuid::now_v7().simple().to_string();
    let mut config = Config::default();
    config.bus.url = nats_url();
    config.bus.stream = format!("SYT_{tag}");
    config.bus.subject_prefix = format!("t{tag}");
    config.bus.ack_wait = Duration::from_secs(3);
    config.bus.max_age = Duration::from_secs(3600);
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.database.max_connections = 8;
    config.relay.sweep_interval = Duration::from_millis(200);
    config.relay.sweep_min_age = Duration::from_millis(500);
    config.reconciler.interval = Duration::from_millis(300);
    // Longer than any wait in the tests, so only the reconciler test sees re-announcements.
    config.reconciler.reannounce_after = Duration::from_secs(120);
    config.shutdown.drain_timeout = Duration::from_secs(5);
    config.auth.secret = Some(format!("test-secret-{tag}"));
    config
}

/// A token of `role` signed with `config`'s secret.
pub fn token(config: &Config, role: Role) -> String {
    let secret = config
        .auth
        .secret
        .as_deref()
        .expect("isolated configs have a secret");
    Authenticator::new(secret.as_bytes()).mint("tester", role, Duration::from_secs(600))
}

/// An HTTP client that sends `token` on every request.
pub fn client_with(token: &str) -> reqwest::Client {
    install_crypto_provider();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// A separate pool on the same test database, with the session settings production
/// pools get: each fleet gets its own, like a process would.
pub async fn own_pool(pool: &PgPool) -> PgPool {
    let defaults = switchyard::config::DatabaseConfig::default();
    let options =
        switchyard::fleet::connect_options(&defaults, pool.connect_options().as_ref().clone());
    PgPoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await
        .expect("connecting to the test database")
}

/// The URL of this test's database, for child processes.
pub fn database_url(pool: &PgPool) -> String {
    install_crypto_provider();
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set by scripts/test");
    let server = &base[..base.rfind('/').expect("DATABASE_URL has a database path")];
    let name = pool
        .connect_options()
        .get_database()
        .expect("test pool names its database")
        .to_owned();
    format!("{server}/{name}")
}

/// A running test fleet: one process's worth of roles, plus more mutators on demand.
pub struct TestFleet {
    pub config: Config,
    pub pool: PgPool,
    pub base: String,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    fleets: Vec<Fleet>,
}

impl TestFleet {
    /// API + mutator + relay + reconciler in one fleet, like `switchyard up`.
    pub async fn up(pool: &PgPool) -> Self {
        Self::start(pool, isolated_config(), Roles::ALL).await
    }

    /// Only the API (plus relay and reconciler): tests drive workers themselves.
    pub async fn api_only(pool: &PgPool) -> Self {
        let roles = Roles {
            api: true,
            ..Roles::NONE
        };
        Self::start(pool, isolated_config(), roles).await
    }

    pub async fn start(pool: &PgPool, config: Config, roles: Roles) -> Self {
        let shutdown = CancellationToken::new();
        let fleet = Fleet::start(&config, own_pool(pool).await, roles, shutdown.clone())
            .await
            .expect("starting the fleet");
        let base = fleet
            .api_addr
            .map(|addr| format!("http://{addr}"))
            .unwrap_or_default();
        let http = client_with(&token(&config, Role::Admin));
        Self {
            config,
            pool: pool.clone(),
            base,
            http,
            shutdown,
            fleets: vec![fleet],
        }
    }

    /// Starts `n` more mutator-only fleets, each with its own pool and NATS connection.
    pub async fn add_mutators(&mut self, n: usize) {
        for _ in 0..n {
            self.add_workers(Roles {
                mutator: true,
                ..Roles::NONE
            })
            .await;
        }
    }

    /// Starts one more fleet of `roles`, with its own pool and NATS connection.
    pub async fn add_workers(&mut self, roles: Roles) {
        let fleet = Fleet::start(
            &self.config,
            own_pool(&self.pool).await,
            roles,
            self.shutdown.clone(),
        )
        .await
        .expect("starting more workers");
        self.fleets.push(fleet);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    /// Where the first fleet serves `/metrics` on a listener of its own
    /// (`metrics.listen`); `None` when it has none.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.fleets[0].metrics_addr
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("POST");
        read(response).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .patch(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("PATCH");
        read(response).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self.http.get(self.url(path)).send().await.expect("GET");
        read(response).await
    }

    /// Creates a topology and returns its id.
    pub async fn create_topology(&self, name: &str, document: Value) -> Uuid {
        let (status, body) = self
            .post("/topologies", json!({"name": name, "document": document}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().parse().unwrap()
    }

    /// Enqueues a mutation and returns its id; the API must accept it with 202.
    pub async fn enqueue(&self, topology: Uuid, ops: Value) -> Uuid {
        let (status, body) = self
            .post(
                &format!("/topologies/{topology}/mutations"),
                json!({"ops": ops}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body["id"].as_str().unwrap().parse().unwrap()
    }

    /// Waits until no mutation is pending.
    pub async fn settle(&self, within: Duration) {
        eventually(within, || async {
            let pending: i64 = sqlx::query_scalar!(
                r#"select count(*) as "count!" from mutations where status = 'pending'"#
            )
            .fetch_one(&self.pool)
            .await
            .unwrap();
            pending == 0
        })
        .await;
    }

    /// Stops every fleet (graceful) and deletes the test's stream.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for fleet in self.fleets {
            fleet.wait().await.expect("fleet stopped cleanly");
        }
        let client = async_nats::connect(nats_url()).await.unwrap();
        let _ = async_nats::jetstream::new(client)
            .delete_stream(&self.config.bus.stream)
            .await;
    }
}

pub async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Outbox rows committed but not yet published.
pub async fn unpublished(pool: &PgPool) -> i64 {
    sqlx::query_scalar!(r#"select count(*) as "count!" from outbox where published_at is null"#)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Polls `condition` until it holds; panics after `within`.
pub async fn eventually<F, Fut>(within: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "condition not met within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `add` operation setting `/key` to `value`.
pub fn add(key: &str, value: Value) -> Value {
    json!([{"op": "add", "path": format!("/{key}"), "value": value}])
}

impl TestFleet {
    /// Messages in this test's stream whose subject matches the logical `filter`.
    pub async fn stream_count(&self, filter: &str) -> usize {
        use futures::TryStreamExt;
        let client = async_nats::connect(nats_url()).await.unwrap();
        let stream = async_nats::jetstream::new(client)
            .get_stream(&self.config.bus.stream)
            .await
            .unwrap();
        let wire = format!("{}.{filter}", self.config.bus.subject_prefix);
        let counts: Vec<(String, usize)> = stream
            .info_with_subjects(wire)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        counts.iter().map(|(_, n)| n).sum()
    }

    /// A JetStream context for the test's own NATS connection.
    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(async_nats::connect(nats_url()).await.unwrap())
    }

    /// Waits until the role's durable consumer (`mutator`, `notifier`) has nothing
    /// pending or unacked.
    pub async fn consumer_idle(&self, role: &str, within: Duration) {
        let js = self.jetstream().await;
        eventually(within, || async {
            let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
                .get_consumer_from_stream(role, &self.config.bus.stream)
                .await
                .unwrap();
            let info = consumer.info().await.unwrap();
            info.num_pending == 0 && info.num_ack_pending == 0
        })
        .await;
    }
}

/// Audit rows in seq order, one per mutation; version = applied count; the document
/// log lists the values in seq order.
pub async fn assert_applied_in_seq_order(pool: &PgPool, topology: Uuid, count: i64) {
    let audit: Vec<(i64, i64, i64)> = sqlx::query!(
        "select seq, before_version, after_version from mutation_audit where topology_id = $1 order by id",
        topology,
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|row| (row.seq, row.before_version, row.after_version))
    .collect();
    let expected: Vec<(i64, i64, i64)> = (1..=count).map(|seq| (seq, seq - 1, seq)).collect();
    assert_eq!(audit, expected, "audit of {topology} out of seq order");
    let topology_row = sqlx::query!(
        "select version, document from topologies where id = $1",
        topology,
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let (version, document) = (topology_row.version, topology_row.document);
    assert_eq!(version, count);
    let by_seq: Vec<Value> = sqlx::query_scalar!(
        r#"select ops->0->'value' as "value!" from mutations where topology_id = $1 order by seq"#,
        topology,
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        document["log"],
        Value::Array(by_seq),
        "document of {topology} not in seq order"
    );
}

/// A `switchyard` child process, killed when dropped.
pub struct Process {
    pub child: std::process::Child,
    pub base: String,
}

impl Process {
    /// Starts `switchyard <args>` on this test's database, stream and prefix.
    pub fn spawn(pool: &PgPool, config: &Config, args: &[&str]) -> Self {
        Self::spawn_with(pool, config, args, &[], std::process::Stdio::inherit())
    }

    /// Like [`Process::spawn`], with extra environment and its stderr (the log) sent to `log`.
    pub fn spawn_with(
        pool: &PgPool,
        config: &Config,
        args: &[&str],
        env: &[(&str, &str)],
        log: impl Into<std::process::Stdio>,
    ) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(args)
            .env("DATABASE_URL", database_url(pool))
            .env("NATS_URL", nats_url())
            .env("SWITCHYARD_HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .env("SWITCHYARD_BUS__STREAM", &config.bus.stream)
            .env("SWITCHYARD_BUS__SUBJECT_PREFIX", &config.bus.subject_prefix)
            .env("SWITCHYARD_BUS__ACK_WAIT", "2s")
            .env(
                "SWITCHYARD_AUTH__SECRET",
                config.auth.secret.as_deref().unwrap_or_default(),
            )
            .env("SWITCHYARD_DATABASE__MAX_CONNECTIONS", "8")
            .env("SWITCHYARD_SHUTDOWN__DRAIN_TIMEOUT", "10s")
            .env("SWITCHYARD_LOG__FILTER", "warn")
            .envs(env.iter().copied())
            .stderr(log)
            .spawn()
            .expect("spawning switchyard");
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Sends SIGTERM (graceful) or SIGKILL (crash).
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its exit code.
    pub async fn exit_code(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `/readyz` answers 200.
    pub async fn ready(&self, within: Duration) {
        let url = format!("{}/readyz", self.base);
        eventually(within, || async {
            matches!(reqwest::get(&url).await, Ok(r) if r.status() == StatusCode::OK)
        })
        .await;
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A nats-server of the test's own, which the test may stop and start again.
pub struct PrivateNats {
    pub port: u16,
    store: tempfile::TempDir,
    child: Option<std::process::Child>,
    /// The server binary, and whether JetStream is on.
    bin: String,
    jetstream: bool,
    /// A configuration file's text (`-c`), when given.
    config: Option<String>,
}

impl PrivateNats {
    /// Starts the pinned nats-server (`NATS_SERVER_BIN`, set by `scripts/test`) with
    /// JetStream on a free port.
    pub async fn start() -> Self {
        let bin = std::env::var("NATS_SERVER_BIN").expect("NATS_SERVER_BIN is set by scripts/test");
        Self::start_with(&bin, true).await
    }

    /// Starts `bin` (any nats-server) on a free port, with or without JetStream.
    pub async fn start_with(bin: &str, jetstream: bool) -> Self {
        Self::start_full(bin, jetstream, None).await
    }

    /// Starts the pinned server with JetStream and `config` as its configuration file
    /// (accounts, `no_header_support`, ...).
    pub async fn start_configured(config: &str) -> Self {
        let bin = std::env::var("NATS_SERVER_BIN").expect("NATS_SERVER_BIN is set by scripts/test");
        Self::start_full(&bin, true, Some(config.to_owned())).await
    }

    async fn start_full(bin: &str, jetstream: bool, config: Option<String>) -> Self {
        let port = free_port();
        let mut nats = Self {
            port,
            store: tempfile::tempdir().unwrap(),
            child: None,
            bin: bin.to_owned(),
            jetstream,
            config,
        };
        nats.restart().await;
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// A JetStream cluster of `size` pinned servers on loopback, named `n1`, `n2`, …,
    /// each routed to all the others. Started together; JetStream answers once they
    /// have elected a meta leader (a few seconds), which `Bus::connect`'s start-up
    /// retries wait out.
    pub async fn cluster(size: usize) -> Vec<Self> {
        let route_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let routes = route_ports
            .iter()
            .map(|port| format!("\"nats-route://127.0.0.1:{port}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let mut nodes = Vec::new();
        for (i, port) in route_ports.iter().enumerate() {
            let config = format!(
                "server_name: n{n}\ncluster {{\n  name: switchyard-test\n  listen: 127.0.0.1:{port}\n  routes: [{routes}]\n}}\n",
                n = i + 1
            );
            nodes.push(Self::start_configured(&config).await);
        }
        nodes
    }

    /// The client URLs of `nodes`, comma-separated, as `bus.url` takes them.
    pub fn cluster_url(nodes: &[Self]) -> String {
        nodes.iter().map(Self::url).collect::<Vec<_>>().join(",")
    }

    /// Starts it again on the same port and store (streams survive).
    pub async fn restart(&mut self) {
        let mut command = std::process::Command::new(&self.bin);
        command.args(["-a", "127.0.0.1", "-p", &self.port.to_string()]);
        if self.jetstream {
            command.arg("-js").arg("-sd").arg(self.store.path());
        }
        if let Some(config) = &self.config {
            let file = self.store.path().join("nats.conf");
            std::fs::write(&file, config).unwrap();
            command.arg("-c").arg(file);
        }
        let child = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting nats-server");
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port);
        eventually(Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(&addr).await.is_ok()
        })
        .await;
    }

    /// Kills it outright, as a crash or a network loss would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A loopback port free at the time of asking.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
    }
}
