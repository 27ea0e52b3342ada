//! `/metrics`: Prometheus text without credentials, on the API's listener or on one of
//! its own (`metrics.listen`, worker processes included); requests counted by route
//! template, work counted at commit, and the outbox, consumers and pool read at scrape
//! time, with a scrape that still answers 200 when Postgres or NATS does not.
//!
//! Counters belong to the process. Under nextest each test is a process of its own,
//! so the counts of an in-process fleet are exact; under `cargo test`, fleets of other
//! tests count into the same recorder, and those checks become lower bounds. A child
//! `switchyard` process counts alone whatever the runner.

use crate::harness;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use harness::{PrivateNats, Process, TestFleet, add, eventually};
use prom_text_format_parser::{Scrape, Type, ValueType};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use switchyard::fleet::Roles;
use switchyard_domain::metrics::{self as catalogue, Kind};

/// Whether this test runs alone in its process (nextest), so process-wide counters
/// hold only what it did.
fn alone_in_process() -> bool {
    std::env::var("NEXTEST_EXECUTION_MODE").is_ok_and(|mode| mode == "process-per-test")
}

/// Asserts a counter's value: exactly `want` when the test is alone in its process,
/// else at least `want`.
fn assert_count(got: f64, want: f64, what: &str) {
    if alone_in_process() {
        assert_eq!(got, want, "{what}");
    } else {
        assert!(got >= want, "{what}: {got} < {want}");
    }
}

/// One scrape, parsed: each family's kind, and its samples by name (`_count` and
/// `_sum` of a histogram, or its `_bucket`s with `le`) and sorted labels.
struct Metrics {
    text: String,
    kinds: BTreeMap<String, Type>,
    samples: BTreeMap<(String, Vec<(String, String)>), f64>,
}

impl Metrics {
    /// Parses Prometheus text strictly: a line the parser cannot read, or a family
    /// whose samples do not follow its `# TYPE`, fails the test.
    fn parse(text: String) -> Self {
        let scrape = Scrape::parse(&text)
            .unwrap_or_else(|error| panic!("not Prometheus text ({error:?}):\n{text}"));
        let mut kinds = BTreeMap::new();
        let mut samples = BTreeMap::new();
        for metric in scrape.metrics {
            assert!(
                kinds.insert(metric.name.clone(), metric.kind).is_none(),
                "{} twice",
                metric.name
            );
            for sample in &metric.samples {
                let suffix = match (metric.kind, sample.value.value_type) {
                    (Type::Histogram, ValueType::Sample) => "_bucket",
                    (_, ValueType::Sum) => "_sum",
                    (_, ValueType::Count) => "_count",
                    _ => "",
                };
                let mut labels: Vec<(String, String)> = sample
                    .labels
                    .iter()
                    .map(|l| (l.key.clone(), l.value.clone()))
                    .collect();
                labels.sort();
                let key = (format!("{}{suffix}", metric.name), labels);
                let value = sample.value.value.as_f64();
                assert!(
                    samples.insert(key, value).is_none(),
                    "{} twice",
                    metric.name
                );
            }
        }
        Self {
            text,
            kinds,
            samples,
        }
    }

    /// The value of the sample `name` with exactly `labels`, if the scrape has it; for
    /// a histogram, its count.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let name = match self.kinds.get(name) {
            Some(Type::Histogram) => format!("{name}_count"),
            _ => name.to_owned(),
        };
        let mut key: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        key.sort();
        self.samples.get(&(name, key)).copied()
    }

    /// Like [`Metrics::get`], for a sample that must be there.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{}", self.text))
    }

    /// Every label set the sample `name` has.
    fn series(&self, name: &str) -> Vec<&Vec<(String, String)>> {
        self.samples
            .keys()
            .filter(|(metric, _)| metric == name)
            .map(|(_, labels)| labels)
            .collect()
    }

    /// The kind `# TYPE` gave `name`.
    fn kind(&self, name: &str) -> Option<Type> {
        self.kinds.get(name).copied()
    }
}

/// GETs `url` without credentials: 200 with Prometheus text, parsed.
async fn scrape(url: &str) -> Metrics {
    let response = reqwest::Client::new()
        .get(url)
        // A guard against a hang, not a timing assertion.
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Metrics::parse(response.text().await.unwrap())
}

/// Scrapes until `check` holds (work is counted just after its commit, which others
/// may see first).
async fn scrape_until(url: &str, check: impl Fn(&Metrics) -> bool) -> Metrics {
    eventually(Duration::from_secs(20), || async {
        check(&scrape(url).await)
    })
    .await;
    scrape(url).await
}

const ENQUEUE_ROUTE: &str = "/api/v1/topologies/{id}/mutations";

#[sqlx::test(migrations = "../migrations")]
async fn metrics_count_requests_and_work_and_read_the_backlogs(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let url = format!("{}/metrics", fleet.base);
    let topology = fleet.create_topology("m", json!({})).await;
    for i in 0..5 {
        fleet
            .enqueue(topology, add(&format!("k{i}"), json!(i)))
            .await;
    }
    // One that cannot apply: it fails, with a reason.
    fleet
        .enqueue(topology, json!([{"op": "remove", "path": "/missing"}]))
        .await;
    let items: Vec<_> = (0..3)
        .map(|i| json!({"topology_id": topology, "ops": add(&format!("b{i}"), json!(i))}))
        .collect();
    let (status, body) = fleet
        .post("/mutations/batch", json!({"mutations": items}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    fleet.settle(Duration::from_secs(20)).await;
    let (status, _) = fleet.get("/no-such-route").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Routes outside /api/v1: the probes, and the dashboard's (a router of its own).
    for path in ["/healthz", "/ui/sign-in"] {
        let answer = reqwest::get(format!("{}{path}", fleet.base)).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{path}");
    }

    let work = |outcome: &'static str| {
        move |m: &Metrics| {
            m.get(
                catalogue::WORK.name,
                &[("resource", "mutation"), ("outcome", outcome)],
            )
        }
    };
    let metrics = scrape_until(&url, |m| {
        work("applied")(m) >= Some(8.0)
            && work("failed")(m) >= Some(1.0)
            && m.get(catalogue::CONSUMER_PENDING.name, &[("consumer", "mutator")]) == Some(0.0)
            && m.get(
                catalogue::CONSUMER_ACK_PENDING.name,
                &[("consumer", "mutator")],
            ) == Some(0.0)
            && m.get(catalogue::OUTBOX_COMMITS.name, &[]) == Some(0.0)
    })
    .await;

    // Requests: by route template, never by path, and a fixed label for no route.
    let enqueues = [
        ("route", ENQUEUE_ROUTE),
        ("method", "POST"),
        ("status", "202"),
    ];
    assert_count(
        metrics.value(catalogue::HTTP_REQUESTS.name, &enqueues),
        6.0,
        "single enqueues",
    );
    assert_count(
        metrics.value(catalogue::HTTP_DURATION.name, &enqueues),
        6.0,
        "single enqueues timed",
    );
    let batch = [
        ("route", "/api/v1/mutations/batch"),
        ("method", "POST"),
        ("status", "202"),
    ];
    assert_count(
        metrics.value(catalogue::HTTP_REQUESTS.name, &batch),
        1.0,
        "batches",
    );
    let unmatched = [("route", "unmatched"), ("method", "GET"), ("status", "404")];
    assert!(metrics.value(catalogue::HTTP_REQUESTS.name, &unmatched) >= 1.0);
    for route in ["/healthz", "/ui/sign-in"] {
        let labels = [("route", route), ("method", "GET"), ("status", "200")];
        assert_count(
            metrics.value(catalogue::HTTP_REQUESTS.name, &labels),
            1.0,
            route,
        );
    }
    let topology_id = topology.to_string();
    assert!(
        !metrics.text.contains(&topology_id) && !metrics.text.contains("no-such-route"),
        "a raw path became a label:\n{}",
        metrics.text
    );

    // Work, counted at commit: enqueued by the API, applied or failed by the mutator.
    assert_count(work("enqueued")(&metrics).unwrap(), 9.0, "enqueued");
    assert_count(work("applied")(&metrics).unwrap(), 8.0, "applied");
    assert_count(work("failed")(&metrics).unwrap(), 1.0, "failed");
    let untouched = [
        ("migration_run", "requested"),
        ("interface_change", "published"),
    ];
    for (resource, outcome) in untouched {
        let labels = [("resource", resource), ("outcome", outcome)];
        assert_count(metrics.value(catalogue::WORK.name, &labels), 0.0, resource);
    }

    // Read at scrape time: the outbox, every existing consumer, the pool.
    assert_eq!(metrics.value(catalogue::OUTBOX_EVENTS.name, &[]), 0.0);
    assert_eq!(metrics.value(catalogue::OUTBOX_OLDEST_AGE.name, &[]), 0.0);
    for consumer in ["mutator", "notifier", "migrator"] {
        let labels = [("consumer", consumer)];
        assert_eq!(
            metrics.value(catalogue::CONSUMER_ACK_PENDING.name, &labels),
            0.0
        );
        assert!(
            metrics
                .get(catalogue::CONSUMER_PENDING.name, &labels)
                .is_some()
        );
    }
    // No forge process has created its consumer (forge.url is not set): skipped.
    assert!(
        metrics
            .series(catalogue::CONSUMER_PENDING.name)
            .iter()
            .all(|labels| labels[0].1 != "forge"),
        "{}",
        metrics.text
    );
    let in_use = metrics.value(catalogue::POOL_CONNECTIONS.name, &[("state", "in_use")]);
    let idle = metrics.value(catalogue::POOL_CONNECTIONS.name, &[("state", "idle")]);
    let max = metrics.value(catalogue::POOL_MAX.name, &[]);
    assert_eq!(max, f64::from(fleet.config.database.max_connections));
    assert!(
        in_use + idle <= max && idle >= 0.0,
        "{in_use} + {idle} > {max}"
    );
    for source in ["postgres", "nats"] {
        let labels = [("source", source)];
        assert_eq!(metrics.value(catalogue::SCRAPE_UP.name, &labels), 1.0);
        assert_count(
            metrics.value(catalogue::SCRAPE_ERRORS.name, &labels),
            0.0,
            "scrape errors",
        );
    }
    assert_count(
        metrics.value(catalogue::EVENT_STREAMS.name, &[]),
        0.0,
        "streams",
    );

    // Every metric of the catalogue is there, described, with its kind.
    for metric in catalogue::ALL {
        let want = match metric.kind {
            Kind::Counter => Type::Counter,
            Kind::Gauge => Type::Gauge,
            Kind::Histogram => Type::Histogram,
        };
        assert_eq!(metrics.kind(metric.name), Some(want), "{}", metric.name);
        assert!(
            metrics.text.contains(&format!("# HELP {} ", metric.name)),
            "{} is not described:\n{}",
            metric.name,
            metrics.text
        );
    }
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn open_event_streams_and_migration_work_are_counted(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let url = format!("{}/metrics", fleet.base);
    let streams = |m: &Metrics| m.get(catalogue::EVENT_STREAMS.name, &[]);
    let topology = fleet.create_topology("s", json!({})).await;
    let stream = fleet
        .http
        .get(fleet.url(&format!("/topologies/{topology}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    scrape_until(&url, |m| streams(m) >= Some(1.0)).await;
    drop(stream);
    // Other tests' streams would count too when they share the process.
    if alone_in_process() {
        scrape_until(&url, |m| streams(m) == Some(0.0)).await;
    }

    let (status, body) = fleet
        .post(
            "/plugins",
            json!({"name": "p", "versions": [{"version": 1, "steps": []}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = fleet
        .post("/graphs", json!({"slug": "g", "plugin": "p"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let nodes: Vec<_> = (0..7)
        .map(|i| json!({"id": format!("n{i}"), "data": {"v": i}}))
        .collect();
    let (status, body) = fleet.post("/graphs/g/nodes", json!({"nodes": nodes})).await;
    assert!(status.is_success(), "{status} {body}");
    let version =
        json!({"version": 2, "steps": [{"op": "set_default", "property": "w", "value": 1}]});
    let (status, body) = fleet
        .post("/plugins/p/versions?migrate_graphs=true", version)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let run = |outcome: &'static str| {
        move |m: &Metrics| {
            m.get(
                catalogue::WORK.name,
                &[("resource", "migration_run"), ("outcome", outcome)],
            )
        }
    };
    let metrics = scrape_until(&url, |m| run("succeeded")(m) >= Some(1.0)).await;
    assert_count(run("requested")(&metrics).unwrap(), 1.0, "runs requested");
    assert_count(run("succeeded")(&metrics).unwrap(), 1.0, "runs succeeded");
    assert_count(run("failed")(&metrics).unwrap(), 0.0, "runs failed");
    assert_count(
        metrics.value(catalogue::MIGRATION_NODES.name, &[]),
        7.0,
        "nodes migrated",
    );
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn with_metrics_listen_metrics_are_served_there_and_not_by_the_api(pool: PgPool) {
    let mut config = harness::isolated_config();
    config.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    let fleet = TestFleet::start(&pool, config, Roles::ALL).await;
    let own = fleet.metrics_addr().expect("a listener of its own");
    assert_ne!(
        Some(own),
        fleet
            .base
            .strip_prefix("http://")
            .and_then(|a| a.parse().ok())
    );
    let on_api = reqwest::get(format!("{}/metrics", fleet.base))
        .await
        .unwrap();
    assert_eq!(on_api.status(), StatusCode::NOT_FOUND);
    let elsewhere = reqwest::get(format!("http://{own}/healthz")).await.unwrap();
    assert_eq!(elsewhere.status(), StatusCode::NOT_FOUND);

    let topology = fleet.create_topology("l", json!({})).await;
    fleet.enqueue(topology, add("k", json!(1))).await;
    let metrics = scrape_until(&format!("http://{own}/metrics"), |m| {
        m.get(
            catalogue::WORK.name,
            &[("resource", "mutation"), ("outcome", "applied")],
        ) >= Some(1.0)
    })
    .await;
    let labels = [
        ("route", ENQUEUE_ROUTE),
        ("method", "POST"),
        ("status", "202"),
    ];
    assert_count(
        metrics.value(catalogue::HTTP_REQUESTS.name, &labels),
        1.0,
        "the API's requests, on the metrics listener",
    );
    let unmatched = [("route", "unmatched"), ("method", "GET"), ("status", "404")];
    assert!(metrics.value(catalogue::HTTP_REQUESTS.name, &unmatched) >= 1.0);
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_worker_process_serves_metrics_on_metrics_listen(pool: PgPool) {
    let fleet = TestFleet::api_only(&pool).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let _worker = Process::spawn_with(
        &pool,
        &fleet.config,
        &["worker", "--role", "mutator"],
        &[("SWITCHYARD_METRICS__LISTEN", &listen)],
        std::process::Stdio::inherit(),
    );
    let url = format!("http://{listen}/metrics");
    eventually(Duration::from_secs(30), || async {
        matches!(reqwest::get(&url).await, Ok(r) if r.status() == StatusCode::OK)
    })
    .await;
    let topology = fleet.create_topology("w", json!({})).await;
    for i in 0..4 {
        fleet
            .enqueue(topology, add(&format!("k{i}"), json!(i)))
            .await;
    }
    let applied = [("resource", "mutation"), ("outcome", "applied")];
    let metrics = scrape_until(&url, |m| m.get(catalogue::WORK.name, &applied) >= Some(4.0)).await;
    // The worker counts alone in its process: exact, whatever the test runner.
    assert_eq!(metrics.value(catalogue::WORK.name, &applied), 4.0);
    let enqueued = [("resource", "mutation"), ("outcome", "enqueued")];
    assert_eq!(metrics.value(catalogue::WORK.name, &enqueued), 0.0);
    assert!(
        metrics
            .get(catalogue::CONSUMER_PENDING.name, &[("consumer", "mutator")])
            .is_some()
    );
    assert!(metrics.get(catalogue::POOL_MAX.name, &[]).is_some());
    // The worker serves no API: only /metrics was requested of it.
    let routes: BTreeSet<String> = metrics
        .series(catalogue::HTTP_REQUESTS.name)
        .iter()
        .flat_map(|labels| {
            labels
                .iter()
                .filter(|(k, _)| k == "route")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert_eq!(routes, BTreeSet::from(["/metrics".to_owned()]));
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_scrape_answers_while_nats_is_down_with_what_postgres_says(pool: PgPool) {
    let mut nats = PrivateNats::start().await;
    let mut config = harness::isolated_config();
    config.bus.url = nats.url();
    config.bus.publish_timeout = Duration::from_millis(500);
    let fleet = TestFleet::start(&pool, config, Roles::ALL).await;
    let url = format!("{}/metrics", fleet.base);
    let topology = fleet.create_topology("o", json!({})).await;
    scrape_until(&url, |m| {
        m.get(catalogue::CONSUMER_PENDING.name, &[("consumer", "mutator")]) == Some(0.0)
    })
    .await;

    nats.kill();
    for i in 0..3 {
        fleet
            .enqueue(topology, add(&format!("k{i}"), json!(i)))
            .await;
    }
    let metrics = scrape_until(&url, |m| {
        m.get(catalogue::SCRAPE_UP.name, &[("source", "nats")]) == Some(0.0)
            && m.get(catalogue::OUTBOX_COMMITS.name, &[]) >= Some(3.0)
    })
    .await;
    assert!(metrics.series(catalogue::CONSUMER_PENDING.name).is_empty());
    assert_eq!(
        metrics.value(catalogue::SCRAPE_UP.name, &[("source", "postgres")]),
        1.0
    );
    assert!(metrics.value(catalogue::SCRAPE_ERRORS.name, &[("source", "nats")]) >= 1.0);
    assert!(metrics.value(catalogue::OUTBOX_EVENTS.name, &[]) >= 3.0);
    assert!(metrics.value(catalogue::OUTBOX_OLDEST_AGE.name, &[]) > 0.0);

    nats.restart().await;
    fleet.settle(Duration::from_secs(30)).await;
    scrape_until(&url, |m| {
        m.get(catalogue::SCRAPE_UP.name, &[("source", "nats")]) == Some(1.0)
            && m.get(catalogue::OUTBOX_COMMITS.name, &[]) == Some(0.0)
    })
    .await;
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_scrape_answers_while_postgres_is_unreachable(pool: PgPool) {
    let config = harness::isolated_config();
    let bus = switchyard::fleet::connect_bus(&config, "metrics-test")
        .await
        .unwrap();
    // A pool whose every acquire fails, as while Postgres is down.
    let unreachable = harness::own_pool(&pool).await;
    unreachable.close().await;
    let endpoint = switchyard::metrics::endpoint(unreachable, bus);
    let app = switchyard_api::routes::metrics::router(endpoint);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, app).into_future());

    let metrics = scrape(&format!("http://{addr}/metrics")).await;
    assert_eq!(
        metrics.value(catalogue::SCRAPE_UP.name, &[("source", "postgres")]),
        0.0
    );
    assert_eq!(
        metrics.value(catalogue::SCRAPE_UP.name, &[("source", "nats")]),
        1.0
    );
    assert!(metrics.value(catalogue::SCRAPE_ERRORS.name, &[("source", "postgres")]) >= 1.0);
    for absent in [
        catalogue::OUTBOX_COMMITS,
        catalogue::OUTBOX_EVENTS,
        catalogue::OUTBOX_OLDEST_AGE,
    ] {
        assert!(metrics.series(absent.name).is_empty(), "{}", absent.name);
    }
    assert!(metrics.get(catalogue::POOL_MAX.name, &[]).is_some());
    server.abort();
    let _ = async_nats::jetstream::new(async_nats::connect(harness::nats_url()).await.unwrap())
        .delete_stream(&config.bus.stream)
        .await;
}

#[test]
fn the_readme_lists_every_metric() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md next to the workspace");
    let section = readme
        .split("\n### ")
        .find(|s| s.starts_with("Metrics"))
        .expect("README has a Metrics section");
    for metric in catalogue::ALL {
        assert!(
            section.contains(&format!("`{}`", metric.name)),
            "README's Metrics section does not list {}",
            metric.name
        );
        for label in metric.labels {
            assert!(
                section.contains(&format!("`{label}`")),
                "README's Metrics section does not name the label {label} of {}",
                metric.name
            );
        }
    }
}
