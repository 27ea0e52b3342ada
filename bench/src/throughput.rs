//! The throughput run (the default mode): `--mutations` single-mutation requests over
//! `--topologies`, `--concurrency` at a time (each producer awaits its own 202), then
//! every outcome awaited on NATS, or with `--sse` on each topology's event stream.
//!
//! Throughput runs from the first request to the last outcome; latency from each 202 to
//! its outcome, and split in two legs by the `mutation.enqueued` event (the relay, then
//! the mutator). With `--row-writes`, the Postgres rows written per mutation are read
//! around the run ([`crate::row_writes`]). Record: `end_to_end` (and `row_writes`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{StreamExt, stream};
use serde_json::{Value, json};

use crate::outcomes::{self, Seen, Sightings, Watchers};
use crate::output::{Output, latency_ms, per_second, percentiles, seconds};
use crate::{Args, create_topologies, row_writes};

/// Runs the throughput measure against the fleet.
pub async fn run(http: &reqwest::Client, args: &Args, out: Output) -> anyhow::Result<()> {
    let topologies = create_topologies(http, &args.api, args.topologies).await?;
    let database = match (&args.row_writes, &args.database_url) {
        (false, _) => None,
        (true, Some(url)) => Some(row_writes::connect(url).await?),
        (true, None) => anyhow::bail!("--row-writes needs --database-url (or DATABASE_URL)"),
    };
    let before = match &database {
        Some(pool) => Some(row_writes::read(pool).await?),
        None => None,
    };
    let seen: Seen = Arc::default();
    let watchers = listen(http, args, &topologies, &seen).await?;

    let started = Instant::now();
    let accepted = enqueue_all(http, args, &topologies).await?;
    let enqueue_elapsed = started.elapsed();
    let waited = outcomes::await_outcomes(
        &seen,
        &accepted,
        Duration::from_secs(args.timeout),
        if args.sse { "as SSE frames" } else { "on NATS" },
    )
    .await;
    drop(watchers);
    waited?;
    report(
        args,
        &accepted,
        &*seen.lock().await,
        started,
        enqueue_elapsed,
        out,
    );
    if let (Some(pool), Some(before)) = (&database, before) {
        let delta = row_writes::delta(&before, &row_writes::read(pool).await?);
        report_row_writes(&delta, accepted.len(), args.verbose, out);
    }
    Ok(())
}

/// Starts watching outcomes: on NATS, or with `--sse` on every topology's stream.
async fn listen(
    http: &reqwest::Client,
    args: &Args,
    topologies: &[String],
    seen: &Seen,
) -> anyhow::Result<Watchers> {
    if args.sse {
        outcomes::watch_sse_all(http, &args.api, topologies, seen).await
    } else {
        outcomes::watch_nats(&args.nats, &args.prefix, seen.clone()).await
    }
}

/// Enqueues every mutation; returns (mutation id, instant of its 202).
async fn enqueue_all(
    http: &reqwest::Client,
    args: &Args,
    topologies: &[String],
) -> anyhow::Result<Vec<(String, Instant)>> {
    let requests = (0..args.mutations).map(|i| {
        let topology = &topologies[i % topologies.len()];
        enqueue_one(http, &args.api, topology, i)
    });
    stream::iter(requests)
        .buffer_unordered(args.concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Enqueues the `i`th mutation (an append to the topology's `/log`) on one topology;
/// returns its id and the instant its 202 arrived.
pub async fn enqueue_one(
    http: &reqwest::Client,
    api: &str,
    topology: &str,
    i: usize,
) -> anyhow::Result<(String, Instant)> {
    let response = http
        .post(format!("{api}/api/v1/topologies/{topology}/mutations"))
        .json(&json!({"ops": [{"op": "add", "path": "/log/-", "value": i}]}))
        .send()
        .await?
        .error_for_status()?;
    let accepted_at = Instant::now();
    let body: Value = response.json().await?;
    let id = body["id"].as_str().context("mutation id")?.to_owned();
    Ok((id, accepted_at))
}

fn report(
    args: &Args,
    accepted: &[(String, Instant)],
    seen: &Sightings,
    started: Instant,
    enqueue_elapsed: Duration,
    out: Output,
) {
    let end_to_end = Sightings::latencies(accepted, &seen.outcome);
    let relay = Sightings::latencies(accepted, &seen.enqueued);
    let mut apply: Vec<Duration> = accepted
        .iter()
        .filter_map(|(id, _)| {
            Some(
                seen.outcome
                    .get(id)?
                    .saturating_duration_since(*seen.enqueued.get(id)?),
            )
        })
        .collect();
    apply.sort();
    let total = seen.last_outcome(accepted).unwrap_or(started) - started;
    let n = accepted.len();
    out.say(format_args!(
        "mutations:        {n} over {} topologies, {} concurrent requests",
        args.topologies, args.concurrency
    ));
    out.say(format_args!(
        "enqueue:          {:.0} req/s ({enqueue_elapsed:.2?})",
        per_second(n, enqueue_elapsed)
    ));
    out.say(format_args!(
        "end-to-end:       {:.0} mutations/s (first request to last applied event, {total:.2?})",
        per_second(n, total)
    ));
    if seen.failed > 0 {
        out.say(format_args!("failed:           {} mutations", seen.failed));
    }
    let watched = if args.sse { "SSE frame" } else { "NATS event" };
    out.say(format_args!(
        "202 → applied ({watched}): {}",
        percentiles(&end_to_end)
    ));
    out.say(format_args!(
        "  202 → enqueued: {}   (commit to announcement: relay)",
        percentiles(&relay)
    ));
    out.say(format_args!(
        "  enqueued → applied: {}   (delivery, apply, announcement: mutator + relay)",
        percentiles(&apply)
    ));
    out.record(
        "end_to_end",
        json!({
            "mutations": n,
            "topologies": args.topologies,
            "producers": args.concurrency,
            "watched": if args.sse { "sse" } else { "nats" },
            "seconds": seconds(total),
            "per_second": per_second(n, total),
            "enqueue_per_second": per_second(n, enqueue_elapsed),
            "failed": seen.failed,
            "latency_ms": latency_ms(&end_to_end),
        }),
    );
}

fn report_row_writes(
    delta: &row_writes::TableWrites,
    mutations: usize,
    verbose: bool,
    out: Output,
) {
    let record = row_writes::record(delta, mutations);
    out.say(format_args!(
        "Postgres rows written: {} ({} per mutation; pg_stat_user_tables inserts + updates + deletes)",
        record["rows"], record["per_mutation"]
    ));
    if verbose {
        for (table, rows) in delta {
            out.say(format_args!("  {table:<40} {rows:>9}"));
        }
    }
    out.record("row_writes", record);
}
