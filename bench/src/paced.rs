//! `--rate R --duration D`: latency at a fixed load. Single-mutation requests are
//! started on a fixed schedule, R per second for D over `--topologies` (open loop: a
//! request starts on time whether or not earlier ones were answered, so a slow server
//! meets a growing queue rather than a politely slower client).
//!
//! Each mutation's latency is taken from its 202 twice, in the same run: to its
//! `mutation.applied` on NATS, and to the `mutation.applied` frame on the SSE stream of
//! its topology, which this process follows for every topology used.
//!
//! Record: `latency_at_rate`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::ensure;
use serde_json::json;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::outcomes::{self, Seen, Sightings};
use crate::output::{Output, latency_ms, per_second, percentiles, seconds};
use crate::throughput::enqueue_one;
use crate::{Args, create_topologies};

/// Runs the fixed-rate latency measure against the fleet.
pub async fn run(
    http: &reqwest::Client,
    args: &Args,
    rate: f64,
    duration: Duration,
    out: Output,
) -> anyhow::Result<()> {
    ensure!(rate > 0.0, "--rate must be above 0");
    let topologies = create_topologies(http, &args.api, args.topologies).await?;
    let on_nats: Seen = Arc::default();
    let on_sse: Seen = Arc::default();
    let nats = outcomes::watch_nats(&args.nats, &args.prefix, on_nats.clone()).await?;
    let sse = outcomes::watch_sse_all(http, &args.api, &topologies, &on_sse).await?;

    let count = ((rate * duration.as_secs_f64()).round() as usize).max(1);
    let (accepted, sending) = send_paced(http, &args.api, &topologies, rate, count).await?;
    let timeout = Duration::from_secs(args.timeout);
    let waited = async {
        outcomes::await_outcomes(&on_nats, &accepted, timeout, "on NATS").await?;
        outcomes::await_outcomes(&on_sse, &accepted, timeout, "as SSE frames").await
    }
    .await;
    drop((nats, sse));
    waited?;

    let applied = Sightings::latencies(&accepted, &on_nats.lock().await.outcome);
    let framed = Sightings::latencies(&accepted, &on_sse.lock().await.outcome);
    let failed = on_nats.lock().await.failed;
    out.say(format_args!(
        "paced load:       {count} mutations at {rate:.0}/s over {} topologies (sent at {:.0}/s)",
        topologies.len(),
        per_second(count, sending)
    ));
    if failed > 0 {
        out.say(format_args!("failed:           {failed} mutations"));
    }
    out.say(format_args!(
        "202 → applied (NATS event): {}",
        percentiles(&applied)
    ));
    out.say(format_args!(
        "202 → applied (SSE frame):  {}",
        percentiles(&framed)
    ));
    out.record(
        "latency_at_rate",
        json!({
            "rate": rate,
            "seconds": seconds(duration),
            "mutations": count,
            "topologies": topologies.len(),
            "sent_per_second": per_second(count, sending),
            "failed": failed,
            "applied_ms": latency_ms(&applied),
            "sse_ms": latency_ms(&framed),
        }),
    );
    Ok(())
}

/// Starts `count` requests on a schedule of `rate` per second, each in a task of its
/// own; returns every (mutation id, instant of its 202) and how long sending took.
async fn send_paced(
    http: &reqwest::Client,
    api: &str,
    topologies: &[String],
    rate: f64,
    count: usize,
) -> anyhow::Result<(Vec<(String, Instant)>, Duration)> {
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    // A tick the timer missed is made up at once, so the schedule, not the timer's
    // granularity, sets the load.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut requests = JoinSet::new();
    let started = Instant::now();
    for i in 0..count {
        ticks.tick().await;
        let (http, api) = (http.clone(), api.to_owned());
        let topology = topologies[i % topologies.len()].clone();
        requests.spawn(async move { enqueue_one(&http, &api, &topology, i).await });
    }
    let sending = started.elapsed();
    let mut accepted = Vec::with_capacity(count);
    while let Some(answer) = requests.join_next().await {
        accepted.push(answer??);
    }
    Ok((accepted, sending))
}
