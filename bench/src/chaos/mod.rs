//! `chaos-run` and `chaos-check`: the load driver and checker scripts/chaos runs on
//! scripts/cluster while it kills processes.
//!
//! ## `chaos-run`
//! Creates `--topologies`, optionally starts `--sse-clients` resuming SSE clients
//! ([`sse`]), enqueues over HTTP to every `--api` ([`load`]), then waits until every
//! accepted mutation is applied or failed and the relay has published everything, reads
//! the whole stream ([`stream`]) and checks ([`check`]). It prints one JSON line of
//! figures on stdout (words on stderr) and exits 1 when a guarantee failed:
//! anything lost, an outcome doubled, an audit row missing or out of seq order, a
//! committed event not on the stream exactly once, an SSE client that missed or
//! doubled an event, a 5xx other than 503, or a 503 without `Retry-After`.
//!
//! ## `chaos-check`
//! The same checks on everything the database holds, with no load: every mutation
//! finished, every topology in seq order, every committed event on the stream once.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};
use uuid::Uuid;

mod check;
mod load;
mod sse;
mod stream;

/// Where Postgres and the stream are.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// The deployment's database.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// NATS: one URL or a comma-separated list of a cluster's servers.
    #[arg(long, env = "NATS_URL")]
    nats: String,
    /// The deployment's `bus.stream`.
    #[arg(long, default_value = "SWITCHYARD")]
    stream: String,
    /// Longest wait for every accepted mutation to finish, in seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

/// `chaos-run`: load, wait, check.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Report events an SSE client never saw in the figures without failing the run:
    /// a known, open fault of SSE resumption across NATS faults, so that CI's short
    /// suite keeps proving the other guarantees meanwhile.
    #[arg(long, env = "CHAOS_SSE_MISSES_KNOWN")]
    sse_misses_known: bool,
    /// The scenario's name, carried into the JSON line.
    #[arg(long, default_value = "load")]
    scenario: String,
    /// API base URLs, used in turn (repeat the flag).
    #[arg(long = "api", required = true)]
    apis: Vec<String>,
    /// Bearer token with the operator role.
    #[arg(long, env = "SWITCHYARD_TOKEN")]
    token: String,
    /// Mutations to enqueue (with --duration: at most this many).
    #[arg(long, default_value_t = 50_000)]
    mutations: usize,
    /// Topologies they are spread over.
    #[arg(long, default_value_t = 200)]
    topologies: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Send the mutations in `POST /mutations/batch` requests of this many (at most
    /// the fleet's http.max_batch_mutations) instead of one request each.
    #[arg(long)]
    bulk_size: Option<usize>,
    /// Stop starting mutations after this long (a steady load): `90s`, `2m`.
    #[arg(long, value_parser = crate::parse_duration)]
    duration: Option<Duration>,
    /// Send each request once, counting what it got, instead of retrying 503s.
    #[arg(long)]
    once: bool,
    /// After each enqueue also read the topology: requests that each need a pooled
    /// connection.
    #[arg(long)]
    reads: bool,
    /// SSE clients (one per topology, the first ones) that disconnect every few
    /// seconds and resume with Last-Event-ID.
    #[arg(long, default_value_t = 0)]
    sse_clients: usize,
    /// File the number of mutations accepted so far is written to, every 200 ms.
    #[arg(long)]
    progress: Option<PathBuf>,
    /// File of time windows written during the run, one `NAME START END` a line (Unix
    /// seconds); each is reported as mutations finished per second within it.
    #[arg(long)]
    windows: Option<PathBuf>,
    /// File created once every accepted mutation is applied or failed (or the wait
    /// ran out): a script injecting faults stops there.
    #[arg(long)]
    settled: Option<PathBuf>,
    #[command(flatten)]
    target: Target,
}

/// `chaos-check`: the checks on everything in the database, with no load.
#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    #[command(flatten)]
    target: Target,
}

/// Runs `chaos-run`.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let http = crate::bearer_client(&args.token)?;
    let pool = check::pool(&args.target.database_url)?;
    let topologies = crate::create_topologies(&http, &args.apis[0], args.topologies).await?;
    let topology_ids: Vec<Uuid> = topologies
        .iter()
        .map(|t| t.parse())
        .collect::<Result<_, _>>()?;
    let sse_topologies = &topologies[..args.sse_clients.min(topologies.len())];
    let clients = match sse_topologies.is_empty() {
        true => None,
        false => Some(sse::SseClients::start(&http, &args.apis, sse_topologies).await?),
    };
    let run_id = Uuid::now_v7().to_string();
    eprintln!(
        "chaos: {}: {} mutations over {} topologies, {} in flight, to {}",
        args.scenario,
        args.mutations,
        topologies.len(),
        args.concurrency,
        args.apis.join(" ")
    );
    let report = load::run(
        &http,
        load::LoadPlan {
            apis: args.apis.clone(),
            topologies,
            mutations: args.mutations,
            duration: args.duration,
            concurrency: args.concurrency,
            bulk_size: args.bulk_size,
            once: args.once,
            reads: args.reads,
            run_id,
            progress: args.progress.clone(),
        },
    )
    .await?;
    eprintln!(
        "chaos: {} accepted in {:.1?}; waiting for every outcome",
        report.accepted.len(),
        report.elapsed
    );
    let timeout = Duration::from_secs(args.target.timeout);
    let finish = check::await_finished(&pool, &report.accepted, timeout).await;
    if let Some(path) = &args.settled {
        std::fs::write(path, "settled\n").with_context(|| format!("writing {}", path.display()))?;
    }
    let unpublished = check::await_published(&pool, Duration::from_secs(120)).await;
    let nats = stream::connect(&args.target.nats).await?;
    let entries = stream::read_all(&nats, &args.target.stream).await?;
    let committed = check::committed_events(&pool).await?;
    let sse = match clients {
        Some(clients) => {
            let ids: HashSet<Uuid> = committed.iter().map(|(id, _)| *id).collect();
            clients
                .finish(&entries, &ids, Duration::from_secs(60))
                .await
        }
        None => Value::Null,
    };
    let mut figures = json!({
        "scenario": args.scenario,
        "accepted": report.accepted.len(),
        "abandoned": report.abandoned,
        "lost": finish.missing + finish.unfinished,
        "missing": finish.missing,
        "unfinished": finish.unfinished,
        "unpublished_commits": unpublished,
        "enqueues": report.enqueues.to_json(),
        "enqueue_per_second": crate::output::per_second(report.accepted.len(), report.elapsed),
        "throughput": check::throughput(&pool, &report.accepted).await?,
        "audit": check::audit(&pool, &report.accepted).await?,
        "seq_order": check::seq_order(&pool, &topology_ids).await?,
        "stream": check::compare_stream(&committed, &entries, &report.accepted),
        "sse": sse,
    });
    if args.reads {
        figures["reads"] = report.reads.to_json();
    }
    if let Some(path) = &args.windows {
        figures["windows"] = windows(&pool, &report.accepted, path).await?;
    }
    figures["doubled"] = figures["stream"]["outcome_events_doubled"].clone();
    let mut failures = failures(&figures, &report, args.once);
    if args.sse_misses_known {
        // Known and open: an SSE client resuming across a NATS fault sometimes misses
        // events (see the issue tracker); reported in the figures, not failed here.
        let (known, rest): (Vec<String>, Vec<String>) = failures
            .into_iter()
            .partition(|f| f.starts_with("events an SSE client never saw"));
        for known in &known {
            eprintln!("chaos: known open fault, not failed (--sse-misses-known): {known}");
        }
        figures["tolerated"] = json!(known);
        failures = rest;
    }
    conclude(figures, failures)
}

/// Runs `chaos-check`.
pub async fn check_all(args: CheckArgs) -> anyhow::Result<()> {
    let pool = check::pool(&args.target.database_url)?;
    let everything: Vec<Uuid> = sqlx::query_scalar("select id from mutations")
        .fetch_all(&pool)
        .await?;
    let topologies: Vec<Uuid> = sqlx::query_scalar("select id from topologies")
        .fetch_all(&pool)
        .await?;
    let timeout = Duration::from_secs(args.target.timeout);
    let finish = check::await_finished(&pool, &everything, timeout).await;
    let unpublished = check::await_published(&pool, Duration::from_secs(120)).await;
    let nats = stream::connect(&args.target.nats).await?;
    let entries = stream::read_all(&nats, &args.target.stream).await?;
    let committed = check::committed_events(&pool).await?;
    let mut figures = json!({
        "scenario": "check",
        "mutations": everything.len(),
        "lost": finish.missing + finish.unfinished,
        "unfinished": finish.unfinished,
        "unpublished_commits": unpublished,
        "audit": check::audit(&pool, &everything).await?,
        "seq_order": check::seq_order(&pool, &topologies).await?,
        "stream": check::compare_stream(&committed, &entries, &everything),
    });
    figures["doubled"] = figures["stream"]["outcome_events_doubled"].clone();
    let failures = failures(&figures, &load::LoadReport::default(), false);
    conclude(figures, failures)
}

/// Prints the figures (and the failures among them); exits 1 when there are any.
fn conclude(mut figures: Value, failures: Vec<String>) -> anyhow::Result<()> {
    figures["passed"] = json!(failures.is_empty());
    figures["failures"] = json!(failures);
    println!("{figures}");
    if failures.is_empty() {
        return Ok(());
    }
    eprintln!("chaos: guarantees failed: {}", failures.join("; "));
    std::process::exit(1)
}

/// Every guarantee the figures show broken, in words.
fn failures(figures: &Value, report: &load::LoadReport, once: bool) -> Vec<String> {
    let count = |pointer: &str| {
        figures
            .pointer(pointer)
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let mut failed = Vec::new();
    let mut expect_zero = |pointer: &str, what: &str| {
        let n = count(pointer);
        if n > 0 {
            failed.push(format!("{what}: {n}"));
        }
    };
    expect_zero("/lost", "accepted mutations lost");
    expect_zero("/unpublished_commits", "commits the relay never published");
    expect_zero(
        "/audit/finished_without_audit",
        "finished mutations without an audit row",
    );
    expect_zero(
        "/audit/audit_outcome_differs",
        "audit rows whose outcome differs from the mutation's",
    );
    expect_zero("/audit/audit_rows_doubled", "mutations audited twice");
    expect_zero("/seq_order/out_of_order", "topologies out of seq order");
    expect_zero(
        "/stream/missing_from_stream",
        "committed events missing from the stream",
    );
    expect_zero(
        "/stream/doubled_on_stream",
        "events on the stream more than once",
    );
    expect_zero(
        "/stream/never_committed",
        "stream messages that were never committed",
    );
    expect_zero(
        "/stream/outcome_events_doubled",
        "mutations with more than one outcome event",
    );
    expect_zero(
        "/stream/outcome_events_missing",
        "mutations without an outcome event",
    );
    expect_zero("/sse/missing", "events an SSE client never saw");
    expect_zero("/sse/doubled", "events an SSE client saw twice");
    expect_zero(
        "/sse/resets",
        "SSE resumes the server could not serve (reset)",
    );
    expect_zero("/sse/lagged", "SSE clients that fell behind (lagged)");
    for (statuses, what) in [(&report.enqueues, "enqueues"), (&report.reads, "reads")] {
        if statuses.server_errors() > 0 {
            failed.push(format!(
                "{what} answered 5xx other than 503: {}",
                statuses.server_errors()
            ));
        }
        if statuses.without_retry_after > 0 {
            failed.push(format!(
                "{what} answered 503 without Retry-After: {}",
                statuses.without_retry_after
            ));
        }
    }
    if !once && report.abandoned > 0 {
        failed.push(format!("mutations never accepted: {}", report.abandoned));
    }
    failed
}

/// Figures for the windows in `path`: mutations finished per second in each.
async fn windows(pool: &sqlx::PgPool, accepted: &[Uuid], path: &PathBuf) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = serde_json::Map::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [name, start, end] = parts[..] else {
            bail!(
                "{}: expected `NAME START END`, got {line:?}",
                path.display()
            );
        };
        let (start, end): (f64, f64) = (start.parse()?, end.parse()?);
        let rate = check::finished_per_second(pool, accepted, start, end).await?;
        out.insert(
            name.to_owned(),
            json!({"seconds": ((end - start) * 10.0).round() / 10.0, "per_second": rate}),
        );
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_broken_guarantee_is_named() {
        let figures = json!({"lost": 2, "stream": {"doubled_on_stream": 0}, "sse": {"missing": 1}});
        let mut report = load::LoadReport::default();
        report.enqueues.by_code.insert(202, 10);
        report.enqueues.by_code.insert(503, 4);
        assert_eq!(
            failures(&figures, &report, false),
            [
                "accepted mutations lost: 2",
                "events an SSE client never saw: 1"
            ]
        );
        report.enqueues.by_code.insert(500, 1);
        report.reads.without_retry_after = 3;
        report.abandoned = 5;
        let named = failures(&json!({}), &report, false);
        assert_eq!(
            named,
            [
                "enqueues answered 5xx other than 503: 1",
                "reads answered 503 without Retry-After: 3",
                "mutations never accepted: 5"
            ]
        );
        // A burst sent once gives up what was refused: not a failure.
        assert_eq!(failures(&json!({}), &report, true).len(), 2);
    }
}
