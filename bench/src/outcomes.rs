//! When each mutation's events reach this process: on NATS (`topology.*.mutation.*`,
//! one core subscription) or as frames on each topology's SSE stream, which is what a
//! browser sees. Every run measures its latencies against these sightings.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use serde_json::Value;
use switchyard_bus::{Namespace, subjects};
use tokio::sync::Mutex;

/// When each mutation's `enqueued` and outcome events were first seen.
#[derive(Default)]
pub struct Sightings {
    pub enqueued: HashMap<String, Instant>,
    /// `mutation.applied` or `mutation.failed`.
    pub outcome: HashMap<String, Instant>,
    /// Outcomes that were `mutation.failed` (the bench's mutations never should be).
    pub failed: usize,
}

/// Sightings shared between their watcher and the run.
pub type Seen = Arc<Mutex<Sightings>>;

impl Sightings {
    fn record(&mut self, id: &str, kind: &str, arrived: Instant) {
        let sightings = match kind {
            "enqueued" => &mut self.enqueued,
            "applied" | "failed" => &mut self.outcome,
            _ => return,
        };
        if sightings.insert(id.to_owned(), arrived).is_none() && kind == "failed" {
            self.failed += 1;
        }
    }

    /// Sorted latencies from each accepted mutation's instant to its sighting in `to`.
    pub fn latencies(
        accepted: &[(String, Instant)],
        to: &HashMap<String, Instant>,
    ) -> Vec<Duration> {
        let mut all: Vec<Duration> = accepted
            .iter()
            .filter_map(|(id, at)| Some(to.get(id)?.saturating_duration_since(*at)))
            .collect();
        all.sort();
        all
    }

    /// The last outcome among the accepted mutations.
    pub fn last_outcome(&self, accepted: &[(String, Instant)]) -> Option<Instant> {
        accepted
            .iter()
            .filter_map(|(id, _)| self.outcome.get(id))
            .max()
            .copied()
    }
}

/// Tasks watching for sightings; dropping this stops them.
#[derive(Default)]
pub struct Watchers(Vec<tokio::task::AbortHandle>);

impl Watchers {
    /// Adds a watching task.
    pub fn push<T: Send + 'static>(&mut self, task: tokio::task::JoinHandle<T>) {
        self.0.push(task.abort_handle());
    }
}

impl Drop for Watchers {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Subscribes to every mutation event on NATS, then records them in a task of its own.
pub async fn watch_nats(nats: &str, prefix: &str, seen: Seen) -> anyhow::Result<Watchers> {
    let client = async_nats::connect(switchyard_bus::jetstream::servers(nats)?)
        .await
        .with_context(|| format!("connecting to NATS at {nats}"))?;
    let filter = Namespace::new(prefix)?.qualify(subjects::ALL_MUTATION_EVENTS);
    let mut events = client.subscribe(filter).await?;
    // The subscription is in place once the server has answered a round trip.
    client.flush().await?;
    let mut watchers = Watchers::default();
    watchers.push(tokio::spawn(async move {
        // Keeps the connection open as long as the subscription is read.
        let _client = client;
        while let Some(message) = events.next().await {
            let arrived = Instant::now();
            let Ok(event) = serde_json::from_slice::<Value>(&message.payload) else {
                continue;
            };
            let Some(id) = event["data"]["mutation_id"].as_str() else {
                continue;
            };
            let kind = message.subject.rsplit('.').next().unwrap_or_default();
            seen.lock().await.record(id, kind, arrived);
        }
    }));
    Ok(watchers)
}

/// Follows every topology's SSE stream, recording mutation frames, and returns once
/// each has sent its first frame (its snapshot).
pub async fn watch_sse_all(
    http: &reqwest::Client,
    api: &str,
    topologies: &[String],
    seen: &Seen,
) -> anyhow::Result<Watchers> {
    let ready = Arc::new(AtomicUsize::new(0));
    let mut watchers = Watchers::default();
    for topology in topologies {
        watchers.push(tokio::spawn(watch_sse(
            http.clone(),
            api.to_owned(),
            topology.clone(),
            seen.clone(),
            Arc::clone(&ready),
        )));
    }
    await_ready(&ready, topologies.len()).await?;
    Ok(watchers)
}

/// Records the mutation frames of one topology's SSE stream until it ends; `ready` is
/// counted up once the stream's first frame (its snapshot) has arrived.
async fn watch_sse(
    http: reqwest::Client,
    api: String,
    topology: String,
    seen: Seen,
    ready: Arc<AtomicUsize>,
) {
    use eventsource_stream::Eventsource;
    let url = format!("{api}/api/v1/topologies/{topology}/events");
    let Ok(response) = http.get(url).send().await else {
        return;
    };
    let mut frames = response.bytes_stream().eventsource();
    let mut first = true;
    while let Some(Ok(frame)) = frames.next().await {
        let arrived = Instant::now();
        if std::mem::take(&mut first) {
            ready.fetch_add(1, Ordering::SeqCst);
        }
        let Some(kind) = frame.event.strip_prefix("mutation.") else {
            continue;
        };
        let Ok(event) = serde_json::from_str::<Value>(&frame.data) else {
            continue;
        };
        if let Some(id) = event["data"]["mutation_id"].as_str() {
            seen.lock().await.record(id, kind, arrived);
        }
    }
}

/// Waits until every accepted mutation's outcome was seen, or fails after `timeout`.
pub async fn await_outcomes(
    seen: &Seen,
    accepted: &[(String, Instant)],
    timeout: Duration,
    what: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let arrived = {
            let seen = seen.lock().await;
            // Counting is only worth it once there could be enough.
            if seen.outcome.len() < accepted.len() {
                seen.outcome.len()
            } else {
                accepted
                    .iter()
                    .filter(|(id, _)| seen.outcome.contains_key(id))
                    .count()
            }
        };
        if arrived == accepted.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "only {arrived} of {} outcomes arrived {what} within {timeout:?}",
                accepted.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `count` SSE streams have sent their first frame.
async fn await_ready(ready: &AtomicUsize, count: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while ready.load(Ordering::SeqCst) < count {
        if Instant::now() > deadline {
            bail!(
                "only {} of {count} event streams opened within a minute",
                ready.load(Ordering::SeqCst)
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}
