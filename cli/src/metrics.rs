//! The process's Prometheus metrics: the recorder, installed once per process, and
//! what `/metrics` renders ([`endpoint`]).
//!
//! ## One recorder per process
//! The `metrics` facade has one global recorder, installed at most once, so
//! [`recorder`] installs it on first use and every fleet of the process shares it
//! (the end-to-end tests start many fleets in one process). What the API and the
//! workers count (requests, work, nodes, streams) goes there. A process that serves no
//! `/metrics` (a worker without `metrics.listen`) installs nothing, and its counts cost
//! nothing. A thread drains histogram samples into their buckets every few seconds,
//! so memory stays bounded however rarely Prometheus scrapes.
//!
//! ## Read at scrape time
//! The outbox backlog (Postgres), each durable consumer's pending and ack-pending
//! (JetStream) and the pool's connections are read when scraped, into a recorder of
//! that scrape alone, so a value is never older than the scrape and each fleet shows
//! its own pool. Each source is bounded by [`SOURCE_TIMEOUT`]; one that fails or is
//! slow is left out, `switchyard_scrape_source_up{source}` says 0 and
//! `switchyard_scrape_errors_total{source}` counts it. The scrape itself still
//! answers 200.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;
use switchyard_api::routes::metrics::MetricsEndpoint;
use switchyard_bus::outbox::{self, Backlog};
use switchyard_bus::{Bus, ConsumerBacklog, ConsumerRole};
use switchyard_domain::metrics::{self as catalogue, Kind, Metric};

/// Longest a scrape waits for Postgres, and for NATS (both are asked at once).
pub const SOURCE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often histogram samples are drained into their buckets.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Metrics the API and the workers record into the process's recorder.
const RECORDED: &[Metric] = &[
    catalogue::HTTP_REQUESTS,
    catalogue::HTTP_DURATION,
    catalogue::WORK,
    catalogue::MIGRATION_NODES,
    catalogue::EVENT_STREAMS,
    catalogue::SCRAPE_ERRORS,
];

/// The scrape-time sources, as `source` labels.
const POSTGRES: &str = "postgres";
const NATS: &str = "nats";

/// The process's recorder, installed on the first call. Should another recorder be
/// installed already (nothing in switchyard does), `/metrics` still renders its
/// scrape-time gauges, and says so once in the log.
pub fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(catalogue::HTTP_DURATION.name.to_owned()),
                catalogue::HTTP_DURATION_BUCKETS,
            )
            .expect("the buckets are not empty");
        let handle = builder.install_recorder().unwrap_or_else(|error| {
            tracing::warn!(%error, "a metrics recorder was installed already; /metrics shows only what it reads at scrape time");
            PrometheusBuilder::new().build_recorder().handle()
        });
        RECORDED.iter().for_each(describe);
        register_zeros();
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".to_owned())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                }
            })
            .expect("starting the metrics upkeep thread");
        handle
    })
}

/// Gives `metric` its help text in the current recorder.
fn describe(metric: &Metric) {
    let (name, help) = (metric.name, metric.help);
    match metric.kind {
        Kind::Counter => metrics::describe_counter!(name, help),
        Kind::Gauge => metrics::describe_gauge!(name, help),
        Kind::Histogram => metrics::describe_histogram!(name, metrics::Unit::Seconds, help),
    }
}

/// Series that exist from the start, at 0: every kind of work, nodes, open streams
/// and scrape errors, so dashboards and alerts have them before anything happens.
fn register_zeros() {
    for (resource, outcome) in catalogue::WORK_KINDS {
        metrics::counter!(
            catalogue::WORK.name,
            "resource" => resource.as_str(),
            "outcome" => outcome.as_str(),
        )
        .increment(0);
    }
    metrics::counter!(catalogue::MIGRATION_NODES.name).increment(0);
    metrics::gauge!(catalogue::EVENT_STREAMS.name).increment(0.0);
    for source in [POSTGRES, NATS] {
        metrics::counter!(catalogue::SCRAPE_ERRORS.name, "source" => source).increment(0);
    }
}

/// What `/metrics` renders for a process on `pool` and `bus`: the process's recorder
/// (installed now if it is not yet) and the scrape-time reads.
pub fn endpoint(pool: PgPool, bus: Bus) -> MetricsEndpoint {
    recorder();
    let scrape = Arc::new(Scrape { pool, bus });
    MetricsEndpoint::new(move || {
        let scrape = scrape.clone();
        Box::pin(async move { scrape.render().await })
    })
}

/// The sources one process's scrape reads.
struct Scrape {
    pool: PgPool,
    bus: Bus,
}

/// What one scrape read; `None` where a source could not be read.
struct Reads {
    outbox: Option<Backlog>,
    consumers: Option<Vec<(ConsumerRole, ConsumerBacklog)>>,
}

impl Scrape {
    /// The recorder's text, then this scrape's reads. Never fails.
    async fn render(&self) -> String {
        let (outbox, consumers) = tokio::join!(self.outbox(), self.consumers());
        let reads = Reads { outbox, consumers };
        for (source, read) in [
            (POSTGRES, reads.outbox.is_some()),
            (NATS, reads.consumers.is_some()),
        ] {
            if !read {
                metrics::counter!(catalogue::SCRAPE_ERRORS.name, "source" => source).increment(1);
            }
        }
        let mut text = recorder().render();
        text.push_str(&self.gauges(&reads));
        text
    }

    /// The outbox backlog, or `None` (logged) when Postgres does not answer in time.
    async fn outbox(&self) -> Option<Backlog> {
        match tokio::time::timeout(SOURCE_TIMEOUT, outbox::backlog(&self.pool)).await {
            Ok(Ok(backlog)) => Some(backlog),
            Ok(Err(error)) => {
                tracing::warn!(%error, "metrics: cannot read the outbox");
                None
            }
            Err(_) => {
                tracing::warn!(timeout = ?SOURCE_TIMEOUT, "metrics: the outbox read timed out");
                None
            }
        }
    }

    /// Every existing durable consumer's backlog, or `None` (logged) when JetStream
    /// does not answer for one of them in time.
    async fn consumers(&self) -> Option<Vec<(ConsumerRole, ConsumerBacklog)>> {
        let reads = futures::future::join_all(ConsumerRole::ALL.map(|role| async move {
            self.bus
                .consumer_backlog(role)
                .await
                .map(|backlog| backlog.map(|b| (role, b)))
        }));
        match tokio::time::timeout(SOURCE_TIMEOUT, reads).await {
            Ok(results) => match results.into_iter().collect::<Result<Vec<_>, _>>() {
                Ok(found) => Some(found.into_iter().flatten().collect()),
                Err(error) => {
                    tracing::warn!(%error, "metrics: cannot read the consumers");
                    None
                }
            },
            Err(_) => {
                tracing::warn!(timeout = ?SOURCE_TIMEOUT, "metrics: reading the consumers timed out");
                None
            }
        }
    }

    /// This scrape's gauges, rendered from a recorder of their own.
    fn gauges(&self, reads: &Reads) -> String {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            [
                catalogue::OUTBOX_COMMITS,
                catalogue::OUTBOX_EVENTS,
                catalogue::OUTBOX_OLDEST_AGE,
                catalogue::CONSUMER_PENDING,
                catalogue::CONSUMER_ACK_PENDING,
                catalogue::POOL_CONNECTIONS,
                catalogue::POOL_MAX,
                catalogue::SCRAPE_UP,
            ]
            .iter()
            .for_each(describe);
            self.record(reads);
        });
        handle.render()
    }

    /// Sets this scrape's gauges in the current (local) recorder.
    fn record(&self, reads: &Reads) {
        use metrics::gauge;
        let up = |read: bool| if read { 1.0 } else { 0.0 };
        gauge!(catalogue::SCRAPE_UP.name, "source" => POSTGRES).set(up(reads.outbox.is_some()));
        gauge!(catalogue::SCRAPE_UP.name, "source" => NATS).set(up(reads.consumers.is_some()));
        if let Some(backlog) = reads.outbox {
            gauge!(catalogue::OUTBOX_COMMITS.name).set(backlog.commits as f64);
            gauge!(catalogue::OUTBOX_EVENTS.name).set(backlog.events as f64);
            gauge!(catalogue::OUTBOX_OLDEST_AGE.name).set(backlog.oldest_age_seconds);
        }
        for (role, backlog) in reads.consumers.iter().flatten() {
            let consumer = role.durable_name();
            gauge!(catalogue::CONSUMER_PENDING.name, "consumer" => consumer)
                .set(backlog.pending as f64);
            gauge!(catalogue::CONSUMER_ACK_PENDING.name, "consumer" => consumer)
                .set(backlog.ack_pending as f64);
        }
        let size = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        gauge!(catalogue::POOL_CONNECTIONS.name, "state" => "in_use")
            .set(f64::from(size.saturating_sub(idle)));
        gauge!(catalogue::POOL_CONNECTIONS.name, "state" => "idle").set(f64::from(idle));
        gauge!(catalogue::POOL_MAX.name).set(f64::from(self.pool.options().get_max_connections()));
    }
}
