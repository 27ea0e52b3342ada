//! Assembling a process: which roles run, wired to one pool, one bus connection, one
//! doorbell and one shutdown token; and where `/metrics` is served (on
//! `metrics.listen` in any process, else by the API, else nowhere).
//!
//! ## Shutdown order
//! When the token fires, the API stops accepting connections and finishes open
//! requests (event streams end), the metrics listener stops, every worker role
//! (mutator, notifier, migrator, forge) stops pulling and drains its in-flight
//! messages within `shutdown.drain_timeout`, and the reconciler stops. Only then is the relay stopped, after publishing what
//! they committed, so a clean shutdown leaves nothing for the next process's sweep.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use switchyard_api::AppState;
use switchyard_api::routes::metrics::MetricsEndpoint;
use switchyard_bus::{Bus, BusError, ConsumerRole, Doorbell};
use switchyard_workers::consumer::{self, PullSettings, Source};
use switchyard_workers::consumer::{Envelopes, EventHandler};
use switchyard_workers::forge::Forge;
use switchyard_workers::migrator::Migrator;
use switchyard_workers::mutator::Mutator;
use switchyard_workers::notifier::Notifier;
use switchyard_workers::reconciler::Reconciler;
use switchyard_workers::relay::Relay;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DatabaseConfig};

/// Which roles a process runs. The relay and reconciler run in every process.
#[derive(Clone, Copy, Debug)]
pub struct Roles {
    pub api: bool,
    pub mutator: bool,
    pub notifier: bool,
    pub migrator: bool,
    /// The forge role and its sweeps; skipped (with a log line) while `forge.url` is
    /// not set.
    pub forge: bool,
}

impl Roles {
    /// Only the relay and the reconciler.
    pub const NONE: Roles = Roles {
        api: false,
        mutator: false,
        notifier: false,
        migrator: false,
        forge: false,
    };
    /// What `up` runs.
    pub const ALL: Roles = Roles {
        api: true,
        mutator: true,
        notifier: true,
        migrator: true,
        forge: true,
    };
    /// Every worker role, no API.
    pub const WORKERS: Roles = Roles {
        api: false,
        ..Self::ALL
    };
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "auth.secret is not set; every API process needs the same secret (SWITCHYARD_AUTH__SECRET)"
    )]
    NoSecret,
    #[error(transparent)]
    Forge(#[from] switchyard_workers::forge::ForgeSetupError),
    #[error("{role} stopped unexpectedly: {reason}")]
    RoleDied { role: &'static str, reason: String },
}

/// A running process's roles.
pub struct Fleet {
    /// Where the API listens, when it runs.
    pub api_addr: Option<SocketAddr>,
    /// Where `/metrics` has a listener of its own (`metrics.listen`), when it does.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    roles: JoinSet<(&'static str, Result<(), String>)>,
    relay_stop: CancellationToken,
    relay: tokio::task::JoinHandle<()>,
    drain_timeout: Duration,
}

/// Connection options for `config`, with the server-side timeouts every switchyard
/// session runs under.
pub fn connect_options(config: &DatabaseConfig, base: PgConnectOptions) -> PgConnectOptions {
    let idle = format!("{}ms", config.idle_in_transaction_timeout.as_millis());
    let statement = format!("{}ms", config.statement_timeout.as_millis());
    base.options([
        ("idle_in_transaction_session_timeout", idle.as_str()),
        ("statement_timeout", statement.as_str()),
    ])
}

/// A pool for `config`, waiting (with backoff) for Postgres to come up.
pub async fn connect_pool(config: &DatabaseConfig) -> Result<PgPool, sqlx::Error> {
    let options = connect_options(config, config.url.parse::<PgConnectOptions>()?);
    let connect = || {
        PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options.clone())
    };
    connect
        .retry(startup_backoff())
        .notify(|error, delay| tracing::warn!(%error, ?delay, "Postgres not reachable yet"))
        .await
}

/// Connects to NATS and declares the stream, waiting (with backoff) for NATS.
pub async fn connect_bus(config: &Config, name: &str) -> Result<Bus, BusError> {
    (|| Bus::connect(&config.bus, name))
        .retry(startup_backoff())
        .when(|e| !e.is_permanent())
        .notify(|error, delay| tracing::warn!(%error, ?delay, "NATS not ready yet"))
        .await
}

/// Retries for reaching Postgres and NATS at start-up (about half a minute in all).
pub fn startup_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(10)
}

impl Fleet {
    /// Starts `roles` against `pool`; they run until `shutdown` fires.
    pub async fn start(
        config: &Config,
        pool: PgPool,
        roles: Roles,
        shutdown: CancellationToken,
    ) -> Result<Self, FleetError> {
        let bus = connect_bus(config, "switchyard").await?;
        let info = bus.client.server_info();
        tracing::info!(
            nats = %switchyard_bus::jetstream::shown_url(&config.bus.url),
            server = %switchyard_bus::jetstream::describe_server(&info),
            stream = %config.bus.stream,
            "connected to NATS"
        );
        let (doorbell, doorbell_rx) = Doorbell::channel(4096);
        let mut fleet = Self::with_relay(config, &bus, pool.clone(), doorbell_rx, shutdown);
        // Before any role runs, so the recorder sees everything they count.
        let metrics = fleet.start_metrics(config, &bus, &pool, roles).await?;
        fleet.start_reconciler(config, pool.clone(), doorbell.clone());
        fleet
            .start_workers(config, &bus, &pool, &doorbell, roles)
            .await?;
        if roles.api {
            fleet
                .start_api(config, &bus, pool, doorbell, metrics)
                .await?;
        }
        Ok(fleet)
    }

    /// `/metrics`: on a listener of its own when `metrics.listen` is set (whatever the
    /// roles); else the API's to serve, returned, when this process runs the API; else
    /// nowhere, and no recorder is installed.
    async fn start_metrics(
        &mut self,
        config: &Config,
        bus: &Bus,
        pool: &PgPool,
        roles: Roles,
    ) -> Result<Option<MetricsEndpoint>, FleetError> {
        let Some(addr) = config.metrics.listen else {
            return Ok(roles
                .api
                .then(|| crate::metrics::endpoint(pool.clone(), bus.clone())));
        };
        let endpoint = crate::metrics::endpoint(pool.clone(), bus.clone());
        let (listener, local) = bind(addr).await?;
        tracing::info!(addr = %local, "metrics listening");
        let app = switchyard_api::routes::metrics::router(endpoint);
        let shutdown = self.shutdown.clone();
        self.spawn("metrics", async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
                .map_err(|e| e.to_string())
        });
        self.metrics_addr = Some(local);
        Ok(None)
    }

    /// A fleet with only its relay running: it publishes what the roles commit,
    /// woken by the doorbell, until [`Fleet::wait`] stops it after the roles.
    fn with_relay(
        config: &Config,
        bus: &Bus,
        pool: PgPool,
        doorbell_rx: switchyard_bus::DoorbellReceiver,
        shutdown: CancellationToken,
    ) -> Self {
        let relay_stop = CancellationToken::new();
        let relay = Relay {
            pool,
            bus: bus.clone(),
            config: config.relay.clone(),
        };
        let relay = tokio::spawn(relay.run(doorbell_rx, relay_stop.clone()));
        Self {
            api_addr: None,
            metrics_addr: None,
            shutdown,
            roles: JoinSet::new(),
            relay_stop,
            relay,
            drain_timeout: config.shutdown.drain_timeout,
        }
    }

    /// The reconciler, which every process runs.
    fn start_reconciler(&mut self, config: &Config, pool: PgPool, doorbell: Doorbell) {
        let reconciler = Reconciler {
            pool,
            doorbell,
            config: config.reconciler.clone(),
        };
        let shutdown = self.shutdown.clone();
        tracing::info!("relay and reconciler started");
        self.spawn("reconciler", async move {
            reconciler.run(shutdown).await;
            Ok(())
        });
    }

    /// The worker roles `roles` asks for, each on its durable consumer.
    async fn start_workers(
        &mut self,
        config: &Config,
        bus: &Bus,
        pool: &PgPool,
        doorbell: &Doorbell,
        roles: Roles,
    ) -> Result<(), FleetError> {
        if roles.mutator {
            let mutator = Mutator {
                pool: pool.clone(),
                doorbell: doorbell.clone(),
                config: config.mutator.clone(),
                limits: config.documents,
                finished: Default::default(),
            };
            let settings = (config.mutator.concurrency, config.mutator.max_ack_pending);
            self.start_worker(config, bus, ConsumerRole::Mutator, settings, mutator)
                .await?;
        }
        if roles.notifier {
            let notifier = Notifier {
                pool: pool.clone(),
                doorbell: doorbell.clone(),
                config: config.notifier.clone(),
            };
            let settings = (config.notifier.concurrency, config.notifier.max_ack_pending);
            self.start_worker(config, bus, ConsumerRole::Notifier, settings, notifier)
                .await?;
        }
        if roles.migrator {
            let migrator = Migrator {
                pool: pool.clone(),
                doorbell: doorbell.clone(),
                config: config.migrator.clone(),
                name: format!("migrator-{}-{}", std::process::id(), uuid::Uuid::now_v7()),
                shutdown: self.shutdown.clone(),
                limits: config.documents,
            };
            let settings = (config.migrator.concurrency, config.migrator.max_ack_pending);
            self.start_worker(config, bus, ConsumerRole::Migrator, settings, migrator)
                .await?;
        }
        if roles.forge {
            self.start_forge(config, bus, pool, doorbell).await?;
        }
        Ok(())
    }

    /// The forge role on its durable consumer, and its sweeps; nothing while
    /// `forge.url` is not set.
    async fn start_forge(
        &mut self,
        config: &Config,
        bus: &Bus,
        pool: &PgPool,
        doorbell: &Doorbell,
    ) -> Result<(), FleetError> {
        if config.forge.url.is_none() {
            tracing::info!("forge role off: forge.url is not set");
            return Ok(());
        }
        let forge = Forge::new(pool.clone(), doorbell.clone(), config.forge.clone())?;
        let sweeps = forge.clone();
        let shutdown = self.shutdown.clone();
        self.spawn("forge sweeps", async move {
            sweeps.run_sweeps(shutdown).await;
            Ok(())
        });
        let settings = (config.forge.concurrency, config.forge.max_ack_pending);
        self.start_worker(config, bus, ConsumerRole::Forge, settings, forge)
            .await
    }

    /// Runs `handler` on the role's durable consumer: `settings` is its
    /// (concurrency, max_ack_pending).
    async fn start_worker<H: EventHandler>(
        &mut self,
        config: &Config,
        bus: &Bus,
        role: ConsumerRole,
        (concurrency, max_ack_pending): (usize, i64),
        handler: H,
    ) -> Result<(), FleetError> {
        let consumer = bus.consumer(role, max_ack_pending).await?;
        tracing::info!(
            role = role.durable_name(),
            consumer = role.durable_name(),
            concurrency,
            "worker role started"
        );
        let settings = PullSettings {
            concurrency,
            drain_timeout: config.shutdown.drain_timeout,
        };
        let shutdown = self.shutdown.clone();
        let handler = Arc::new(Envelopes(Arc::new(handler)));
        let bus = bus.clone();
        let declare = move || {
            let bus = bus.clone();
            async move { bus.consumer(role, max_ack_pending).await }
        };
        self.spawn(role.durable_name(), async move {
            consumer::run(Source { consumer, declare }, handler, settings, shutdown).await;
            Ok(())
        });
        Ok(())
    }

    async fn start_api(
        &mut self,
        config: &Config,
        bus: &Bus,
        pool: PgPool,
        doorbell: Doorbell,
        metrics: Option<MetricsEndpoint>,
    ) -> Result<(), FleetError> {
        let addr = config.http.listen;
        let (listener, local) = bind(addr).await?;
        let secret = config.auth.secret.as_deref().ok_or(FleetError::NoSecret)?;
        let state = AppState::new(
            pool,
            bus,
            doorbell,
            config.api_settings(),
            secret.as_bytes(),
            self.shutdown.clone(),
        );
        let state = match metrics {
            Some(endpoint) => state.with_metrics(endpoint),
            None => state,
        };
        let app = switchyard_api::router(state);
        let drain_timeout = config.shutdown.drain_timeout;
        let shutdown = self.shutdown.clone();
        // Logged before serving starts, so the line precedes any request's.
        tracing::info!(role = "api", addr = %local, "api listening");
        self.spawn("api", async move {
            // Explained: hyper's own answers to requests it cannot parse get a JSON body.
            let listener = switchyard_api::listener::ExplainedListener(listener);
            let serve = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.clone().cancelled_owned());
            // Graceful, but bounded: a client that stopped reading must not hold shutdown.
            let deadline = async {
                shutdown.cancelled().await;
                tokio::time::sleep(drain_timeout).await;
            };
            tokio::select! {
                served = serve => served.map_err(|e| e.to_string()),
                () = deadline => {
                    tracing::warn!("closing connections still open after the drain timeout");
                    Ok(())
                }
            }
        });
        self.api_addr = Some(local);
        Ok(())
    }

    fn spawn(
        &mut self,
        role: &'static str,
        task: impl Future<Output = Result<(), String>> + Send + 'static,
    ) {
        self.roles.spawn(async move { (role, task.await) });
    }

    /// Waits for every role to stop (after `shutdown` fires), then lets the relay
    /// publish what they committed. A role that stops on its own before shutdown
    /// brings the whole process down with an error.
    pub async fn wait(mut self) -> Result<(), FleetError> {
        let mut first_error = None;
        while let Some(joined) = self.roles.join_next().await {
            let (role, result) = joined.unwrap_or(("task", Err("panicked".to_owned())));
            let early = !self.shutdown.is_cancelled();
            if let Err(reason) = result {
                first_error.get_or_insert(FleetError::RoleDied { role, reason });
            } else if early {
                first_error.get_or_insert(FleetError::RoleDied {
                    role,
                    reason: "exited".into(),
                });
            }
            self.shutdown.cancel();
        }
        self.relay_stop.cancel();
        // Bounded: with NATS down the relay gives up and leaves rows to the next sweep.
        let relay_bound = self.drain_timeout + Duration::from_secs(5);
        if tokio::time::timeout(relay_bound, self.relay).await.is_err() {
            tracing::warn!("relay did not finish in time; unpublished rows stay in the outbox");
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// A listener on `addr` and the address it got (port 0 picks a free one).
async fn bind(
    addr: std::net::SocketAddr,
) -> Result<(tokio::net::TcpListener, std::net::SocketAddr), FleetError> {
    let failed = |source| FleetError::Listen { addr, source };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(failed)?;
    let local = listener.local_addr().map_err(failed)?;
    Ok((listener, local))
}
