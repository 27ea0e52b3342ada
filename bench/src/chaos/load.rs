//! The chaos suite's load driver: single-mutation enqueues over HTTP, round robin
//! across every API given, from `concurrency` producers, each awaiting its answer.
//!
//! Each mutation carries an `Idempotency-Key` (`{run}-{i}`), so a request retried after
//! a 503 or a lost connection is enqueued once whatever happened to the first try: a
//! 202 (or the 200 of a replay) is "accepted", and its mutation id recorded. A 503 is
//! "retry later": counted, then retried after its `Retry-After` on the next API; a 503
//! without `Retry-After`, and any other 5xx, is a failure of the scenario (counted,
//! then retried too, so the load goes on). With `once`, nothing is retried: the
//! pool-exhaustion burst counts what each single request got.
//!
//! With a bulk size, each request is a `POST /mutations/batch` of that many mutations
//! (its key `{run}-{i}` too).
//!
//! Where the results go: [`LoadReport`] to the run ([`super::run`]), which checks the
//! accepted ids against Postgres and the stream.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use uuid::Uuid;

/// Longest a mutation is retried before it is given up (counted `abandoned`).
const GIVE_UP_AFTER: Duration = Duration::from_secs(180);

/// What to send.
#[derive(Clone, Debug)]
pub struct LoadPlan {
    /// API base URLs, used in turn.
    pub apis: Vec<String>,
    /// The topologies mutations are spread over (mutation `i` goes to `i % len`).
    pub topologies: Vec<String>,
    /// Most mutations to enqueue.
    pub mutations: usize,
    /// Stop starting new mutations after this long (steady load); `None`: all of them.
    pub duration: Option<Duration>,
    /// Producers, each with one request in flight.
    pub concurrency: usize,
    /// Mutations per `POST /mutations/batch` request; `None`: one request each.
    pub bulk_size: Option<usize>,
    /// Send each request once: no retry of a 503 or an error.
    pub once: bool,
    /// After each enqueue, also read the topology (`GET /topologies/{id}`), a request
    /// that needs a pooled connection of its own.
    pub reads: bool,
    /// Makes the idempotency keys unique to this run.
    pub run_id: String,
    /// Where the number accepted so far is written, every 200 ms.
    pub progress: Option<PathBuf>,
}

/// Answers counted by status.
#[derive(Debug, Default, Clone)]
pub struct Statuses {
    /// HTTP status code → answers.
    pub by_code: BTreeMap<u16, u64>,
    /// 503s without a `Retry-After` header (each a failure).
    pub without_retry_after: u64,
    /// Requests that got no answer (connection refused or reset, timeout).
    pub transport_errors: u64,
}

impl Statuses {
    /// Answers with a 5xx other than 503: each a failure of the scenario.
    pub fn server_errors(&self) -> u64 {
        self.by_code
            .iter()
            .filter(|(code, _)| **code >= 500 && **code != 503)
            .map(|(_, n)| n)
            .sum()
    }

    /// As JSON: `{"codes": {"202": n, …}, "without_retry_after": n, "transport_errors": n}`.
    pub fn to_json(&self) -> Value {
        let codes: serde_json::Map<String, Value> = self
            .by_code
            .iter()
            .map(|(code, n)| (code.to_string(), json!(n)))
            .collect();
        json!({
            "codes": codes,
            "without_retry_after": self.without_retry_after,
            "transport_errors": self.transport_errors,
        })
    }
}

/// What the load did.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Mutation ids answered 202 (or 200, a replay of the same key).
    pub accepted: Vec<Uuid>,
    /// Every enqueue answer, retries included.
    pub enqueues: Statuses,
    /// Every read's answer (with `reads`).
    pub reads: Statuses,
    /// Mutations given up: refused with a 4xx, or still not accepted after
    /// [`GIVE_UP_AFTER`] (without `once`).
    pub abandoned: u64,
    /// From the first request to the last answer.
    pub elapsed: Duration,
}

/// Shared between producers.
struct Shared {
    plan: LoadPlan,
    next: AtomicUsize,
    accepted_count: AtomicUsize,
    report: Mutex<LoadReport>,
    started: Instant,
}

/// Runs the load; returns once every producer is done.
pub async fn run(http: &reqwest::Client, plan: LoadPlan) -> anyhow::Result<LoadReport> {
    anyhow::ensure!(!plan.apis.is_empty(), "no --api to send to");
    anyhow::ensure!(!plan.topologies.is_empty(), "no topologies to mutate");
    let shared = Arc::new(Shared {
        next: AtomicUsize::new(0),
        accepted_count: AtomicUsize::new(0),
        report: Mutex::new(LoadReport::default()),
        started: Instant::now(),
        plan,
    });
    let progress = shared.plan.progress.clone().map(|path| {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            loop {
                write_progress(&path, shared.accepted_count.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    });
    let producers = (0..shared.plan.concurrency.max(1)).map(|_| produce(http, &shared));
    join_all(producers).await;
    if let Some(task) = progress {
        task.abort();
        // Aborted, the task lets go of its handle on the load only once it has ended.
        let _ = task.await;
    }
    let shared = Arc::into_inner(shared).context("producers still hold the load")?;
    if let Some(path) = &shared.plan.progress {
        write_progress(path, shared.accepted_count.load(Ordering::Relaxed));
    }
    let mut report = shared.report.into_inner();
    report.elapsed = shared.started.elapsed();
    Ok(report)
}

/// The number accepted, replaced atomically so a reader never sees half a number.
fn write_progress(path: &PathBuf, accepted: usize) {
    let partial = path.with_extension("partial");
    if std::fs::write(&partial, format!("{accepted}\n")).is_ok() {
        let _ = std::fs::rename(&partial, path);
    }
}

/// One producer: takes the next request's mutations until there are none left or
/// time is up.
async fn produce(http: &reqwest::Client, shared: &Shared) {
    let plan = &shared.plan;
    let per_request = plan.bulk_size.unwrap_or(1).max(1);
    loop {
        if plan
            .duration
            .is_some_and(|limit| shared.started.elapsed() >= limit)
        {
            return;
        }
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        let first = i * per_request;
        if first >= plan.mutations {
            return;
        }
        let mutations = first..(first + per_request).min(plan.mutations);
        let wanted = mutations.len();
        match enqueue(http, shared, i, mutations).await {
            Some(ids) => {
                shared
                    .accepted_count
                    .fetch_add(ids.len(), Ordering::Relaxed);
                shared.report.lock().await.accepted.extend(ids);
            }
            None => shared.report.lock().await.abandoned += wanted as u64,
        }
        if plan.reads {
            let api = &plan.apis[i % plan.apis.len()];
            let topology = &plan.topologies[first % plan.topologies.len()];
            let answer = http
                .get(format!("{api}/api/v1/topologies/{topology}"))
                .send()
                .await;
            count(&mut shared.report.lock().await.reads, &answer);
        }
    }
}

/// Request `i`'s path and body: mutation `j` appends `j` to the `/log` of topology
/// `j % topologies`; several go in one `POST /mutations/batch` with `bulk_size`.
fn request(plan: &LoadPlan, mutations: Range<usize>) -> (String, Value) {
    let topology = |j: usize| &plan.topologies[j % plan.topologies.len()];
    let ops = |j: usize| json!([{"op": "add", "path": "/log/-", "value": j}]);
    if plan.bulk_size.is_none() {
        let j = mutations.start;
        return (
            format!("/api/v1/topologies/{}/mutations", topology(j)),
            json!({"ops": ops(j)}),
        );
    }
    let batch: Vec<Value> = mutations
        .map(|j| json!({"topology_id": topology(j), "ops": ops(j)}))
        .collect();
    (
        "/api/v1/mutations/batch".to_owned(),
        json!({"mutations": batch}),
    )
}

/// The mutation ids of an accepted answer: one, or a batch's in request order.
fn accepted_ids(body: &Value) -> Option<Vec<Uuid>> {
    match body["mutations"].as_array() {
        Some(batch) => batch
            .iter()
            .map(|m| m["id"].as_str()?.parse().ok())
            .collect(),
        None => Some(vec![body["id"].as_str()?.parse().ok()?]),
    }
}

/// Enqueues request `i` (its `mutations`) until it is accepted; `None` when it is
/// given up.
async fn enqueue(
    http: &reqwest::Client,
    shared: &Shared,
    i: usize,
    mutations: Range<usize>,
) -> Option<Vec<Uuid>> {
    let plan = &shared.plan;
    let (path, body) = request(plan, mutations);
    let key = format!("{}-{i}", plan.run_id);
    let first = Instant::now();
    for attempt in 0.. {
        let api = &plan.apis[(i + attempt) % plan.apis.len()];
        let answer = http
            .post(format!("{api}{path}"))
            .header("Idempotency-Key", &key)
            .json(&body)
            .send()
            .await;
        let wait = count(&mut shared.report.lock().await.enqueues, &answer);
        match answer {
            Ok(response) if response.status().is_success() => {
                return accepted_ids(&response.json().await.ok()?);
            }
            // A refusal that would be the same again; a request timeout (408) is not.
            Ok(response)
                if response.status().is_client_error()
                    && response.status() != StatusCode::REQUEST_TIMEOUT =>
            {
                return None;
            }
            _ => {}
        }
        if plan.once || first.elapsed() > GIVE_UP_AFTER {
            return None;
        }
        tokio::time::sleep(wait).await;
    }
    None
}

/// Counts an answer; returns how long to wait before retrying it.
fn count(statuses: &mut Statuses, answer: &reqwest::Result<reqwest::Response>) -> Duration {
    let response = match answer {
        Ok(response) => response,
        Err(_) => {
            statuses.transport_errors += 1;
            return Duration::from_millis(250);
        }
    };
    let status = response.status();
    *statuses.by_code.entry(status.as_u16()).or_default() += 1;
    if status != StatusCode::SERVICE_UNAVAILABLE {
        return Duration::from_millis(250);
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok()?.trim().parse::<u64>().ok());
    match retry_after {
        Some(seconds) => Duration::from_secs(seconds.clamp(1, 5)),
        None => {
            statuses.without_retry_after += 1;
            Duration::from_secs(1)
        }
    }
}
