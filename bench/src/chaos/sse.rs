//! SSE clients that come and go across a fault, as a browser's `EventSource` does:
//! each follows one topology's `/events`, drops the connection every few seconds (or
//! when the server ends it), and resumes with `Last-Event-ID` on the next API. Every
//! frame's id and event id are recorded, so the run can tell whether a client saw each
//! committed event of its topology exactly once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::stream::StreamEntry;

/// What one client saw.
#[derive(Debug, Default)]
pub struct ClientLog {
    /// The topology it follows.
    pub topology: String,
    /// The id of its first snapshot: every event of the topology after it is due.
    pub first_snapshot: Option<u64>,
    /// The last frame id it saw (what it resumes from).
    pub last_id: Option<u64>,
    /// Event ids of the frames it got, in order.
    pub events: Vec<Uuid>,
    /// Connections opened, the first included.
    pub connections: u32,
    /// Connections refused (a status other than 200, or no answer).
    pub refused: u32,
    /// `reset` frames: the server could not resume from the id sent.
    pub resets: u32,
    /// `lagged` frames: the client fell too far behind.
    pub lagged: u32,
}

/// Running clients; [`SseClients::finish`] stops them.
pub struct SseClients {
    logs: Vec<Arc<Mutex<ClientLog>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SseClients {
    /// Starts one client per topology, spread over `apis`, and waits (up to 60 s)
    /// until each has its first snapshot.
    pub async fn start(
        http: &reqwest::Client,
        apis: &[String],
        topologies: &[String],
    ) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut logs = Vec::new();
        let mut tasks = Vec::new();
        for (k, topology) in topologies.iter().enumerate() {
            let log = Arc::new(Mutex::new(ClientLog {
                topology: topology.clone(),
                ..ClientLog::default()
            }));
            logs.push(Arc::clone(&log));
            tasks.push(tokio::spawn(follow(
                http.clone(),
                apis.to_vec(),
                k,
                log,
                Arc::clone(&stop),
            )));
        }
        let clients = Self { logs, stop, tasks };
        let deadline = Instant::now() + Duration::from_secs(60);
        for log in &clients.logs {
            while log.lock().await.first_snapshot.is_none() {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "an SSE client got no snapshot in 60 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(clients)
    }

    /// Waits (up to `timeout`) until every client has seen its topology's last event
    /// on the stream, stops them, and compares what each saw with what was due: the
    /// committed events of its topology after its first snapshot.
    pub async fn finish(
        self,
        entries: &[StreamEntry],
        committed: &HashSet<Uuid>,
        timeout: Duration,
    ) -> Value {
        let mut due: Vec<Vec<&StreamEntry>> = Vec::new();
        for log in &self.logs {
            let log = log.lock().await;
            let prefix = format!("topology.{}.", log.topology);
            let after = log.first_snapshot.unwrap_or(u64::MAX);
            due.push(
                entries
                    .iter()
                    .filter(|e| e.seq > after && e.subject.starts_with(&prefix))
                    .filter(|e| e.event_id.is_some_and(|id| committed.contains(&id)))
                    .collect(),
            );
        }
        let deadline = Instant::now() + timeout;
        for (log, due) in self.logs.iter().zip(&due) {
            let last_due = due.last().map_or(0, |e| e.seq);
            while log.lock().await.last_id.unwrap_or(0) < last_due && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        self.stop.store(true, Ordering::SeqCst);
        for task in &self.tasks {
            task.abort();
        }
        let mut figures = Figures::default();
        for (log, due) in self.logs.iter().zip(&due) {
            figures.add(&*log.lock().await, due);
        }
        figures.to_json()
    }
}

/// Totals over every client.
#[derive(Default)]
struct Figures {
    clients: usize,
    due: usize,
    seen: usize,
    missing: usize,
    doubled: usize,
    connections: u32,
    refused: u32,
    resets: u32,
    lagged: u32,
}

impl Figures {
    fn add(&mut self, log: &ClientLog, due: &[&StreamEntry]) {
        let mut seen: HashMap<Uuid, u32> = HashMap::new();
        for id in &log.events {
            *seen.entry(*id).or_default() += 1;
        }
        self.clients += 1;
        self.due += due.len();
        self.seen += log.events.len();
        self.missing += due
            .iter()
            .filter(|e| e.event_id.is_some_and(|id| !seen.contains_key(&id)))
            .count();
        self.doubled += seen.values().filter(|n| **n > 1).count();
        self.connections += log.connections;
        self.refused += log.refused;
        self.resets += log.resets;
        self.lagged += log.lagged;
    }

    fn to_json(&self) -> Value {
        json!({
            "clients": self.clients,
            "events_due": self.due,
            "frames_seen": self.seen,
            "missing": self.missing,
            "doubled": self.doubled,
            "connections": self.connections,
            "refused": self.refused,
            "resets": self.resets,
            "lagged": self.lagged,
        })
    }
}

/// One client: connect (resuming from the last id seen), read for a few seconds or
/// until the server ends the stream, disconnect, and again, on the next API each time.
async fn follow(
    http: reqwest::Client,
    apis: Vec<String>,
    k: usize,
    log: Arc<Mutex<ClientLog>>,
    stop: Arc<AtomicBool>,
) {
    let topology = log.lock().await.topology.clone();
    for attempt in 0.. {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let api = &apis[(k + attempt) % apis.len()];
        let mut request = http.get(format!("{api}/api/v1/topologies/{topology}/events"));
        if let Some(last) = log.lock().await.last_id {
            request = request.header("Last-Event-ID", last.to_string());
        }
        log.lock().await.connections += 1;
        let response = match request.send().await {
            Ok(response) if response.status().is_success() => response,
            _ => {
                log.lock().await.refused += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        // Between 1 and 3 s per connection, so resumes land before, in and after a fault.
        let until = tokio::time::Instant::now()
            + Duration::from_millis(1000 + 700 * ((k + attempt) % 4) as u64);
        let mut frames = response.bytes_stream().eventsource();
        while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(until, frames.next()).await {
            record(&mut *log.lock().await, &frame);
        }
    }
}

fn record(log: &mut ClientLog, frame: &eventsource_stream::Event) {
    let id = frame.id.parse::<u64>().ok();
    match frame.event.as_str() {
        "snapshot" => {
            if log.first_snapshot.is_none() {
                log.first_snapshot = id;
            }
        }
        "reset" => log.resets += 1,
        "lagged" => log.lagged += 1,
        _ => {
            let event: Option<Value> = serde_json::from_str(&frame.data).ok();
            if let Some(event_id) = event.and_then(|e| e["id"].as_str()?.parse().ok()) {
                log.events.push(event_id);
            }
        }
    }
    if id.is_some() {
        log.last_id = id;
    }
}
