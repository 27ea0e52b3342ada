//! `switchyard-bench`: end-to-end throughput and latency of a running fleet.
//!
//! It creates topologies, subscribes to `topology.*.mutation.applied|failed` on NATS,
//! then enqueues mutations over HTTP with bounded concurrency. Latency is measured
//! per mutation from its HTTP 202 to the moment its outcome event reaches this
//! subscriber; throughput from the first request to the last outcome.
//! `scripts/bench` starts a fleet and runs this against it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures::{StreamExt, stream};
use serde_json::{Value, json};
use tokio::sync::Mutex;

#[derive(Parser, Debug)]
#[command(about = "Measure enqueue→applied throughput and latency of a running switchyard")]
struct Args {
    /// Base URL of the API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    api: String,
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
}

type Seen = Arc<Mutex<HashMap<String, Instant>>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let http = reqwest::Client::new();
    let topologies = create_topologies(&http, &args).await?;
    let seen: Seen = Arc::default();
    let listener = tokio::spawn(collect_outcomes(
        args.nats.clone(),
        args.prefix.clone(),
        seen.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    let accepted = enqueue_all(&http, &args, &topologies).await?;
    let enqueue_elapsed = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    while seen.lock().await.len() < accepted.len() {
        if Instant::now() > deadline {
            bail!(
                "only {} of {} outcomes arrived in time",
                seen.lock().await.len(),
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
    let dot = if prefix.is_empty() { "" } else { "." };
    let mut outcomes = client
        .subscribe(format!("{prefix}{dot}topology.*.mutation.*"))
        .await?;
    while let Some(message) = outcomes.next().await {
        let arrived = Instant::now();
        if message.subject.ends_with(".enqueued") {
            continue;
        }
        let event: Value = serde_json::from_slice(&message.payload)?;
        if let Some(id) = event["data"]["mutation_id"].as_str() {
            seen.lock().await.entry(id.to_owned()).or_insert(arrived);
        }
    }
    Ok(())
}

fn report(
    args: &Args,
    accepted: &[(String, Instant)],
    seen: &HashMap<String, Instant>,
    started: Instant,
    enqueue_elapsed: Duration,
) {
    let mut latencies: Vec<Duration> = accepted
        .iter()
        .map(|(id, at)| seen[id].saturating_duration_since(*at))
        .collect();
    latencies.sort();
    let last = accepted
        .iter()
        .map(|(id, _)| seen[id])
        .max()
        .unwrap_or(started);
    let total = last - started;
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "mutations:        {} over {} topologies, {} concurrent requests",
        accepted.len(),
        args.topologies,
        args.concurrency
    );
    println!(
        "enqueue:          {:.0} req/s ({:.2?})",
        accepted.len() as f64 / enqueue_elapsed.as_secs_f64(),
        enqueue_elapsed
    );
    println!(
        "end-to-end:       {:.0} mutations/s (first request to last applied event, {:.2?})",
        accepted.len() as f64 / total.as_secs_f64(),
        total
    );
    println!(
        "202 → applied:    p50 {:.1?}  p90 {:.1?}  p99 {:.1?}  max {:.1?}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    );
}
