//! `switchyard-bench`: end-to-end throughput and latency of a running fleet.
//!
//! Every mode creates its own topologies on the fleet, enqueues mutations over HTTP and
//! watches their outcome events: on NATS (`topology.*.mutation.applied|failed`, one
//! subscription) or on each topology's SSE stream. `scripts/bench` starts a fleet and
//! runs this against it; `scripts/bench compare` runs the modes one after another next
//! to graphile-worker and pgbench, and ends with `compare-table`.
//!
//! ## Modes against a fleet
//! - the throughput run ([`throughput`], the default): single-mutation requests from
//!   `--concurrency` producers; with `--row-writes`, Postgres rows written per mutation
//!   ([`row_writes`]);
//! - `--bulk-size N` ([`bulk`]): the same mutations in `POST /mutations/batch` requests;
//! - `--rate R --duration D` ([`paced`]): latency at a fixed load, to NATS and to SSE;
//! - `--idle-streams N` ([`idle`]): resident memory at rest and with N idle streams;
//! - `--migrate-nodes N` ([`migration`]) and `--self-copies N` ([`amplification`]).
//!
//! With `--json` each mode also prints one JSON line per measure on stdout ([`output`]).
//!
//! ## Subcommands that need no fleet
//! `forge-sweep` ([`forge`]) measures the forge role's sweep against the Gitea stand-in
//! (`scripts/bench forge`); `compare-table` ([`table`]) turns the JSON lines of a
//! comparison into its table; `drop-stream` deletes a JetStream stream, so each fleet
//! of a comparison starts on an empty one.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

mod amplification;
mod bulk;
mod chaos;
mod forge;
mod idle;
mod migration;
mod outcomes;
mod output;
mod paced;
mod row_writes;
mod table;
mod throughput;

use output::Output;

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
    /// Concurrent HTTP requests (producers, each awaiting its own 202; with
    /// --bulk-size, batch requests in flight).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Give up waiting for outcomes after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Watch outcomes on each topology's SSE stream instead of on NATS, so latency
    /// is measured to the frame a browser would see.
    #[arg(long)]
    sse: bool,
    /// Also print one JSON line per measure on stdout (the words then go to stderr).
    #[arg(long)]
    json: bool,
    /// With --row-writes, list the rows written per table.
    #[arg(long)]
    verbose: bool,
    /// Read the Postgres rows written per mutation (pg_stat_user_tables of
    /// --database-url) before and after the throughput run; each reading waits 11 s
    /// for Postgres to publish its counters.
    #[arg(long, requires = "database_url")]
    row_writes: bool,
    /// The fleet's database, for --row-writes.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Instead of single-mutation requests: bulk enqueue, this many mutations per
    /// `POST /mutations/batch` (at most the fleet's http.max_batch_mutations).
    #[arg(long)]
    bulk_size: Option<usize>,
    /// Instead of the throughput run: start this many single-mutation requests per
    /// second (open loop) for --duration, and report 202 → applied latency on NATS and
    /// on SSE.
    #[arg(long)]
    rate: Option<f64>,
    /// How long --rate runs: `10s`, `500ms`, or seconds.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    duration: Duration,
    /// Instead of the throughput run: report the server's resident memory at rest, then
    /// open this many idle SSE streams and report it again (needs --server-pid).
    #[arg(long)]
    idle_streams: Option<usize>,
    /// With --idle-streams: open the streams over HTTP/2 (cleartext, prior knowledge),
    /// many per connection, instead of one HTTP/1.1 connection each.
    #[arg(long)]
    http2: bool,
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

/// Benchmarks and tools that need no running fleet.
#[derive(Subcommand, Debug, Clone)]
enum Command {
    /// The forge role's sweep over a meta repo and RFC repos on the Gitea stand-in:
    /// duration and Gitea calls, cold, warm and after a few changes.
    ForgeSweep(forge::SweepArgs),
    /// The comparison table from the JSON lines of `scripts/bench compare`.
    CompareTable(table::TableArgs),
    /// The chaos suite's load driver and checker (scripts/chaos): enqueue over HTTP to
    /// every --api, wait for every outcome, then check Postgres and the stream; one
    /// JSON line of figures, exit 1 when a guarantee failed.
    ChaosRun(Box<chaos::RunArgs>),
    /// The chaos suite's checks on everything the database and the stream hold.
    ChaosCheck(chaos::CheckArgs),
    /// Delete a JetStream stream (nothing to do when it does not exist).
    DropStream {
        /// NATS server holding the stream.
        #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
        nats: String,
        /// The stream's name (the fleet's `bus.stream`).
        stream: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Built with the `switchyard` crate (scripts/bench), reqwest has TLS without a
    // default crypto provider, and building a client without one panics.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match args.command.clone() {
        Some(Command::ForgeSweep(sweep)) => return forge::run(sweep).await,
        Some(Command::CompareTable(table)) => return table::run(table),
        Some(Command::DropStream { nats, stream }) => return drop_stream(&nats, &stream).await,
        Some(Command::ChaosRun(run)) => return chaos::run(*run).await,
        Some(Command::ChaosCheck(check)) => return chaos::check_all(check).await,
        None => {}
    }
    let http = client(&args)?;
    let out = Output { json: args.json };
    if let Some(nodes) = args.migrate_nodes {
        return migration::run(&http, &args.api, nodes).await;
    }
    if let Some(copies) = args.self_copies {
        let pid = server_pid(&args, "--self-copies")?;
        return amplification::run(&http, &args.api, pid, copies).await;
    }
    if let Some(streams) = args.idle_streams {
        let pid = server_pid(&args, "--idle-streams")?;
        let opener = if args.http2 {
            let args = args.clone();
            idle::Opener::Http2(Box::new(move || client_with(&args, true)))
        } else {
            idle::Opener::Http1
        };
        return idle::run(&http, &args.api, pid, streams, opener, out).await;
    }
    if let Some(rate) = args.rate {
        return paced::run(&http, &args, rate, args.duration, out).await;
    }
    if let Some(size) = args.bulk_size {
        return bulk::run(&http, &args, size, out).await;
    }
    throughput::run(&http, &args, out).await
}

/// An HTTP client that sends the bearer token with every request.
fn client(args: &Args) -> anyhow::Result<reqwest::Client> {
    client_with(args, false)
}

/// A client carrying the bearer token; `http2`: HTTP/2 without TLS (prior knowledge).
fn client_with(args: &Args, http2: bool) -> anyhow::Result<reqwest::Client> {
    let token = args.token.as_deref().context("--token is required")?;
    let builder = bearer_builder(token)?;
    let builder = if http2 {
        builder.http2_prior_knowledge()
    } else {
        builder
    };
    Ok(builder.build()?)
}

/// A client builder whose requests carry `Authorization: Bearer {token}`.
fn bearer_builder(token: &str) -> anyhow::Result<reqwest::ClientBuilder> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse()?,
    );
    Ok(reqwest::Client::builder().default_headers(headers))
}

/// An HTTP/1.1 client carrying the bearer token, giving up on a connection after 5 s.
fn bearer_client(token: &str) -> anyhow::Result<reqwest::Client> {
    Ok(bearer_builder(token)?
        .connect_timeout(Duration::from_secs(5))
        .build()?)
}

fn server_pid(args: &Args, mode: &str) -> anyhow::Result<u32> {
    args.server_pid
        .with_context(|| format!("{mode} needs --server-pid"))
}

/// Creates `count` topologies of `{"log": []}`; returns their ids.
async fn create_topologies(
    http: &reqwest::Client,
    api: &str,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    if count == 0 {
        bail!("--topologies must be at least 1");
    }
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let body: Value = http
            .post(format!("{api}/api/v1/topologies"))
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

/// Deletes the stream `name`, if there is one.
async fn drop_stream(nats: &str, name: &str) -> anyhow::Result<()> {
    let client = async_nats::connect(switchyard_bus::jetstream::servers(nats)?)
        .await
        .with_context(|| format!("connecting to NATS at {nats}"))?;
    let jetstream = async_nats::jetstream::new(client);
    use async_nats::jetstream::{ErrorCode, context::DeleteStreamErrorKind};
    match jetstream.delete_stream(name).await {
        Ok(_) => Ok(()),
        Err(error) => match error.kind() {
            DeleteStreamErrorKind::JetStream(e)
                if e.error_code() == ErrorCode::STREAM_NOT_FOUND =>
            {
                Ok(())
            }
            _ => Err(error).with_context(|| format!("deleting stream {name}")),
        },
    }
}

/// `10s`, `500ms`, `2m` or a number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("not a duration: {text:?} (try 10s or 500ms)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit in {text:?} (ms, s or m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn modes_parse_next_to_the_old_ones() {
        let args = Args::try_parse_from([
            "switchyard-bench",
            "--token",
            "t",
            "--rate",
            "1000",
            "--duration",
            "5s",
            "--json",
        ])
        .unwrap();
        assert_eq!(args.rate, Some(1000.0));
        assert_eq!(args.duration, Duration::from_secs(5));
        let table = Args::try_parse_from(["switchyard-bench", "compare-table", "x.jsonl"]).unwrap();
        assert!(matches!(table.command, Some(Command::CompareTable(_))));
    }
}
