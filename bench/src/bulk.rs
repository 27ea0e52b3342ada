//! `--bulk-size N`: the throughput run with bulk enqueue. `--mutations` mutations
//! over `--topologies` (round-robin, as the single-request run spreads them) are sent in
//! `POST /api/v1/mutations/batch` requests of N, `--concurrency` requests at a time,
//! and every outcome is awaited on NATS.
//!
//! It reports:
//! - throughput, from the first request to the last `mutation.applied`;
//! - the apply rate, from the first outcome to the last: what the worker side drains
//!   while the enqueue side keeps ahead of it (the switchyard figure set against
//!   graphile-worker's burn-down);
//! - how long enqueueing took, and 202 → applied latency (a whole batch shares its 202).
//!
//! Record: `bulk`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use futures::{StreamExt, stream};
use serde_json::{Value, json};

use crate::outcomes::{self, Seen, Sightings};
use crate::output::{Output, latency_ms, per_second, percentiles, seconds};
use crate::{Args, create_topologies};

/// Runs the bulk-enqueue measure against the fleet.
pub async fn run(
    http: &reqwest::Client,
    args: &Args,
    bulk_size: usize,
    out: Output,
) -> anyhow::Result<()> {
    ensure!(bulk_size > 0, "--bulk-size must be at least 1");
    let topologies = create_topologies(http, &args.api, args.topologies).await?;
    let seen: Seen = Arc::default();
    let watchers = outcomes::watch_nats(&args.nats, &args.prefix, seen.clone()).await?;
    let batches: Vec<Vec<Value>> = (0..args.mutations)
        .map(|i| {
            json!({
                "topology_id": topologies[i % topologies.len()],
                "ops": [{"op": "add", "path": "/log/-", "value": i}],
            })
        })
        .collect::<Vec<_>>()
        .chunks(bulk_size)
        .map(<[Value]>::to_vec)
        .collect();

    let started = Instant::now();
    let accepted: Vec<(String, Instant)> = stream::iter(batches)
        .map(|batch| enqueue_batch(http, &args.api, batch))
        .buffer_unordered(args.concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    let enqueue_elapsed = started.elapsed();
    let timeout = Duration::from_secs(args.timeout);
    let waited = outcomes::await_outcomes(&seen, &accepted, timeout, "on NATS").await;
    drop(watchers);
    waited?;
    report(
        args,
        bulk_size,
        &accepted,
        &*seen.lock().await,
        started,
        enqueue_elapsed,
        out,
    );
    Ok(())
}

/// One batch request; returns each created mutation's id with the instant of the 202.
async fn enqueue_batch(
    http: &reqwest::Client,
    api: &str,
    batch: Vec<Value>,
) -> anyhow::Result<Vec<(String, Instant)>> {
    let count = batch.len();
    let response = http
        .post(format!("{api}/api/v1/mutations/batch"))
        .json(&json!({ "mutations": batch }))
        .send()
        .await?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        anyhow::bail!("POST /mutations/batch of {count} answered {status}: {body}");
    }
    let accepted_at = Instant::now();
    let body: Value = response.json().await?;
    let created = body["mutations"]
        .as_array()
        .context("the batch answer's mutations")?;
    ensure!(
        created.len() == count,
        "a batch of {count} created {}",
        created.len()
    );
    created
        .iter()
        .map(|m| {
            Ok((
                m["id"].as_str().context("mutation id")?.to_owned(),
                accepted_at,
            ))
        })
        .collect()
}

fn report(
    args: &Args,
    bulk_size: usize,
    accepted: &[(String, Instant)],
    seen: &Sightings,
    started: Instant,
    enqueue_elapsed: Duration,
    out: Output,
) {
    let n = accepted.len();
    let latencies = Sightings::latencies(accepted, &seen.outcome);
    let last = seen.last_outcome(accepted).unwrap_or(started);
    let first = accepted
        .iter()
        .filter_map(|(id, _)| seen.outcome.get(id))
        .min()
        .copied()
        .unwrap_or(last);
    let (total, applying) = (last - started, last - first);
    out.say(format_args!(
        "mutations:        {n} over {} topologies, in batches of {bulk_size}, {} requests at a time",
        args.topologies, args.concurrency
    ));
    out.say(format_args!(
        "enqueue:          {:.0} mutations/s ({enqueue_elapsed:.2?})",
        per_second(n, enqueue_elapsed)
    ));
    out.say(format_args!(
        "end-to-end:       {:.0} mutations/s (first request to last applied event, {total:.2?})",
        per_second(n, total)
    ));
    out.say(format_args!(
        "apply rate:       {:.0} mutations/s (first applied event to last, {applying:.2?})",
        per_second(n, applying)
    ));
    if seen.failed > 0 {
        out.say(format_args!("failed:           {} mutations", seen.failed));
    }
    out.say(format_args!(
        "202 → applied (NATS event): {}",
        percentiles(&latencies)
    ));
    out.record(
        "bulk",
        json!({
            "mutations": n,
            "topologies": args.topologies,
            "batch_size": bulk_size,
            "concurrency": args.concurrency,
            "seconds": seconds(total),
            "per_second": per_second(n, total),
            "enqueue_seconds": seconds(enqueue_elapsed),
            "apply_seconds": seconds(applying),
            "apply_per_second": per_second(n, applying),
            "failed": seen.failed,
            "latency_ms": latency_ms(&latencies),
        }),
    );
}
