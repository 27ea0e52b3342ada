//! `switchyard-bench`: end-to-end throughput and latency of a running fleet.
//!
//! It creates topologies, subscribes to `topology.*.mutation.applied|failed` on NATS,
//! then enqueues mutations over HTTP with bounded concurrency. Latency is measured
//! per mutation from its HTTP 202 to the moment its outcome event reaches this
//! subscriber; throughput from the first request to the last outcome.
//! `scripts/bench` starts a fleet and runs this against it.
//!
//! `switchyard-bench forge-sweep` ([`forge`]) needs no fleet: it measures the forge
//! role's sweep in this process, against the Gitea stand-in (`scripts/bench forge`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use futures::{StreamExt, stream};
use serde_json::{Value, json};
use switchyard_bus::{Namespace, subjects};
use tokio::sync::Mutex;

mod amplification;
mod forge;
mod migration;

#[derive(Parser, Debug, Clone)]
#[command(
    about = "Measure enqueue→applied throughput and latency of a running switchyard",
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
struct Args {
    /// A benchmark of its own instead of the throughput run against a fleet.
    #[command(subcommand)]
    command: Option<Command>,
    /// Base URL of the API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    api: String,
    /// Bearer token: the operator role enqueues mutations; `--migrate-nodes` registers a
    /// plugin, which needs admin (`switchyard token --role admin`).
    #[arg(long, env = "SWITCHYARD_TOKEN", required = true)]
    token: Option<String>,
    /// NATS server the fleet publishes to.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// The fleet's `bus.subject_prefix`.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Mutations to enqueue.
    #[arg(long, default_value_t = 5000)]
    mutations: usize,
    /// Topologies they are spread over.
    #[arg(long, default_value_t = 50)]
    topologies: usize,
    /// Concurrent HTTP requests.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Give up waiting for outcomes after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Watch outcomes on each topology's SSE stream instead of on NATS, so latency
    /// is measured to the frame a browser would see.
    #[arg(long)]
    sse: bool,
    /// Instead of the throughput run: open this many idle SSE streams and report the
    /// server's resident memory before and after (needs --server-pid).
    #[arg(long)]
    idle_streams: Option<usize>,
    /// Instead of the throughput run: fill a graph with this many nodes, migrate it to
    /// a new plugin version, and report nodes migrated per second.
    #[arg(long)]
    migrate_nodes: Option<usize>,
    /// Instead of the throughput run: the server's peak memory while it applies a
    /// mutation of this many `copy` operations of a document into itself, against a
    /// one-copy mutation (needs --server-pid).
    #[arg(long)]
    self_copies: Option<usize>,
    /// The fleet's process id, for --idle-streams and --self-copies.
    #[arg(long)]
    server_pid: Option<u32>,
}

/// Benchmarks that need no running fleet.
#[derive(Subcommand, Debug, Clone)]
enum Command {
    /// The forge role's sweep over a meta repo and RFC repos on the Gitea stand-in:
    /// duration and Gitea calls, cold, warm and after a few changes.
    ForgeSweep(forge::SweepArgs),
}

/// When each mutation's `enqueued` and outcome events reached this subscriber.
#[derive(Default)]
struct Sightings {
    enqueued: HashMap<String, Instant>,
    outcome: HashMap<String, Instant>,
}

type Seen = Arc<Mutex<Sightings>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Built with the `switchyard` crate (scripts/bench), reqwest has TLS without a
    // default crypto provider, and building a client without one panics.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if let Some(Command::ForgeSweep(sweep)) = args.command {
        return forge::run(sweep).await;
    }
    let token = args.token.as_deref().context("--token is required")?;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse()?,
    );
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()?;
    if let Some(nodes) = args.migrate_nodes {
        return migration::run(&http, &args.api, nodes).await;
    }
    if let Some(copies) = args.self_copies {
        let pid = args
            .server_pid
            .context("--self-copies needs --server-pid")?;
        return amplification::run(&http, &args.api, pid, copies).await;
    }
    if let Some(streams) = args.idle_streams {
        return idle_streams(&http, &args, streams).await;
    }
    let topologies = create_topologies(&http, &args).await?;
    let seen: Seen = Arc::default();
    let listener = if args.sse {
        let watchers: Vec<_> = topologies
            .iter()
            .map(|t| {
                tokio::spawn(watch_sse(
                    http.clone(),
                    args.api.clone(),
                    t.clone(),
                    seen.clone(),
                ))
            })
            .collect();
        tokio::spawn(async move {
            futures::future::join_all(watchers).await;
            Ok(())
        })
    } else {
        tokio::spawn(collect_outcomes(
            args.nats.clone(),
            args.prefix.clone(),
            seen.clone(),
        ))
    };
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    let accepted = enqueue_all(&http, &args, &topologies).await?;
    let enqueue_elapsed = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    while seen.lock().await.outcome.len() < accepted.len() {
        if Instant::now() > deadline {
            bail!(
                "only {} of {} outcomes arrived in time",
                seen.lock().await.outcome.len(),
                accepted.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    listener.abort();
    report(
        &args,
        &accepted,
        &*seen.lock().await,
        started,
        enqueue_elapsed,
    );
    Ok(())
}

async fn create_topologies(http: &reqwest::Client, args: &Args) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(args.topologies);
    for i in 0..args.topologies {
        let body: Value = http
            .post(format!("{}/api/v1/topologies", args.api))
            .json(&json!({"name": format!("bench-{i}"), "document": {"log": []}}))
            .send()
            .await
            .context("is the fleet up? (scripts/up)")?
            .error_for_status()?
            .json()
            .await?;
        ids.push(body["id"].as_str().context("topology id")?.to_owned());
    }
    Ok(ids)
}

/// Enqueues every mutation; returns (mutation id, instant of its 202).
async fn enqueue_all(
    http: &reqwest::Client,
    args: &Args,
    topologies: &[String],
) -> anyhow::Result<Vec<(String, Instant)>> {
    let requests = (0..args.mutations).map(|i| {
        let url = format!(
            "{}/api/v1/topologies/{}/mutations",
            args.api,
            topologies[i % topologies.len()]
        );
        let body = json!({"ops": [{"op": "add", "path": "/log/-", "value": i}]});
        let http = http.clone();
        async move {
            let response = http
                .post(url)
                .json(&body)
                .send()
                .await?
                .error_for_status()?;
            let accepted_at = Instant::now();
            let body: Value = response.json().await?;
            let id = body["id"].as_str().context("mutation id")?.to_owned();
            anyhow::Ok((id, accepted_at))
        }
    });
    stream::iter(requests)
        .buffer_unordered(args.concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

async fn collect_outcomes(nats: String, prefix: String, seen: Seen) -> anyhow::Result<()> {
    let client = async_nats::connect(&nats).await?;
    let filter = Namespace::new(&prefix)?.qualify(subjects::ALL_MUTATION_EVENTS);
    let mut outcomes = client.subscribe(filter).await?;
    while let Some(message) = outcomes.next().await {
        let arrived = Instant::now();
        let event: Value = serde_json::from_slice(&message.payload)?;
        let Some(id) = event["data"]["mutation_id"].as_str() else {
            continue;
        };
        let mut seen = seen.lock().await;
        let sightings = if message.subject.ends_with(".enqueued") {
            &mut seen.enqueued
        } else {
            &mut seen.outcome
        };
        sightings.entry(id.to_owned()).or_insert(arrived);
    }
    Ok(())
}

/// Records when each mutation's enqueued and outcome frames arrive on a topology's stream.
async fn watch_sse(http: reqwest::Client, api: String, topology: String, seen: Seen) {
    use eventsource_stream::Eventsource;
    let url = format!("{api}/api/v1/topologies/{topology}/events");
    let Ok(response) = http.get(url).send().await else {
        return;
    };
    let mut frames = response.bytes_stream().eventsource();
    while let Some(Ok(frame)) = frames.next().await {
        let arrived = Instant::now();
        let Ok(event) = serde_json::from_str::<Value>(&frame.data) else {
            continue;
        };
        let Some(id) = event["data"]["mutation_id"].as_str() else {
            continue;
        };
        let mut seen = seen.lock().await;
        let sightings = match frame.event.as_str() {
            "mutation.enqueued" => &mut seen.enqueued,
            "mutation.applied" | "mutation.failed" => &mut seen.outcome,
            _ => continue,
        };
        sightings.entry(id.to_owned()).or_insert(arrived);
    }
}

/// Opens `count` SSE streams on one topology and reports the server's memory growth.
async fn idle_streams(http: &reqwest::Client, args: &Args, count: usize) -> anyhow::Result<()> {
    let pid = args
        .server_pid
        .context("--idle-streams needs --server-pid")?;
    let one = Args {
        topologies: 1,
        ..args.clone()
    };
    let topology = create_topologies(http, &one).await?.remove(0);
    let before = resident_kib(pid)?;
    let url = format!("{}/api/v1/topologies/{topology}/events", args.api);
    let mut open = Vec::with_capacity(count);
    for _ in 0..count {
        let response = http.get(&url).send().await?.error_for_status()?;
        open.push(response.bytes_stream());
    }
    // Every stream has sent its snapshot; then let the server settle.
    for stream in &mut open {
        stream.next().await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = resident_kib(pid)?;
    let per_stream = after.saturating_sub(before) as f64 / count as f64;
    println!("idle SSE streams: {count} open");
    println!(
        "server RSS:       {:.1} MiB before, {:.1} MiB with them open ({per_stream:.1} KiB per stream)",
        before as f64 / 1024.0,
        after as f64 / 1024.0
    );
    Ok(())
}

fn resident_kib(pid: u32) -> anyhow::Result<u64> {
    amplification::kib(pid, "VmRSS:")
}

fn report(
    args: &Args,
    accepted: &[(String, Instant)],
    seen: &Sightings,
    started: Instant,
    enqueue_elapsed: Duration,
) {
    let latencies = |from: &dyn Fn(&str, Instant) -> Option<Instant>,
                     to: &HashMap<String, Instant>| {
        let mut all: Vec<Duration> = accepted
            .iter()
            .filter_map(|(id, at)| Some(to.get(id)?.saturating_duration_since(from(id, *at)?)))
            .collect();
        all.sort();
        all
    };
    let end_to_end = latencies(&|_, at| Some(at), &seen.outcome);
    let relay = latencies(&|_, at| Some(at), &seen.enqueued);
    let apply = latencies(&|id, _| seen.enqueued.get(id).copied(), &seen.outcome);
    let last = accepted
        .iter()
        .map(|(id, _)| seen.outcome[id])
        .max()
        .unwrap_or(started);
    let total = last - started;
    let n = accepted.len() as f64;
    println!(
        "mutations:        {} over {} topologies, {} concurrent requests",
        accepted.len(),
        args.topologies,
        args.concurrency
    );
    println!(
        "enqueue:          {:.0} req/s ({:.2?})",
        n / enqueue_elapsed.as_secs_f64(),
        enqueue_elapsed
    );
    println!(
        "end-to-end:       {:.0} mutations/s (first request to last applied event, {:.2?})",
        n / total.as_secs_f64(),
        total
    );
    let watched = if args.sse { "SSE frame" } else { "NATS event" };
    println!("202 → applied ({watched}): {}", percentiles(&end_to_end));
    println!(
        "  202 → enqueued: {}   (commit to announcement: relay)",
        percentiles(&relay)
    );
    println!(
        "  enqueued → applied: {}   (delivery, apply, announcement: mutator + relay)",
        percentiles(&apply)
    );
}

fn percentiles(sorted: &[Duration]) -> String {
    if sorted.is_empty() {
        return "no samples".to_owned();
    }
    let at = |p: f64| sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)];
    format!(
        "p50 {:.1?}  p90 {:.1?}  p99 {:.1?}  max {:.1?}",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    )
}
