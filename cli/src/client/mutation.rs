//! `switchyard mutation enqueue|show`: `POST /topologies/{id}/mutations` and
//! `GET /mutations/{id}`. `--wait` polls the mutation, with backoff, until it is
//! applied (exit 0) or failed (exit 3), or `--timeout` passes (exit 4). An outage
//! while waiting (no answer, a 503) is waited out until then.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use clap::{Args, Subcommand};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;
use switchyard_domain::status::MutationStatus;
use tokio::time::{Instant, sleep, timeout_at};
use uuid::Uuid;

use super::api::{Answer, Api};
use super::output;
use super::{ClientError, read_json};

/// The `mutation` subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Enqueue RFC 6902 operations on a topology (operator).
    Enqueue(EnqueueArgs),
    /// Show a mutation: its status, its error, the version it produced.
    Show {
        /// The mutation's id.
        id: Uuid,
        #[command(flatten)]
        wait: Wait,
    },
}

/// `switchyard mutation enqueue`'s arguments.
#[derive(Args, Debug)]
pub struct EnqueueArgs {
    /// The topology's id.
    topology: Uuid,
    /// A file holding a JSON array of RFC 6902 operations, or `-` for stdin.
    #[arg(long, value_name = "FILE|-", default_value = "-")]
    ops: String,
    /// Apply only if the topology is at exactly this version when the mutation's turn comes.
    #[arg(long, value_name = "N")]
    if_version: Option<i64>,
    /// Sent as `Idempotency-Key`: a retry with the same key returns the original mutation.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    #[command(flatten)]
    wait: Wait,
}

/// `--wait [--timeout]`.
#[derive(Args, Debug)]
pub struct Wait {
    /// Wait until the mutation is applied (exit 0) or failed (exit 3).
    #[arg(long)]
    wait: bool,
    /// How long --wait waits before giving up (exit 4), e.g. 30s, 5m.
    #[arg(
        long,
        value_name = "DURATION",
        value_parser = humantime::parse_duration,
        default_value = "30s"
    )]
    timeout: Duration,
}

/// What the human-readable output shows of a mutation.
#[derive(Deserialize)]
struct Mutation {
    id: Uuid,
    topology_id: Uuid,
    seq: i64,
    /// As sent: a status this build does not know (from a newer server) is shown
    /// as it is, not refused.
    status: String,
    error: Option<String>,
    applied_version: Option<i64>,
}

/// Runs one `mutation` subcommand; with `--wait` it returns when the mutation is
/// done or the timeout runs out.
pub async fn run(command: Command, api: &Api) -> Result<(), ClientError> {
    match command {
        Command::Enqueue(args) => enqueue(args, api).await,
        Command::Show { id, wait } if wait.wait => {
            let answer = wait_for(api, id, wait.timeout).await?;
            report(api, &answer)
        }
        Command::Show { id, .. } => {
            let answer = api.get(api.url(&["mutations", &id.to_string()])).await?;
            output::answer(api, &answer, || Ok(describe(&answer.parse()?)))
        }
    }
}

async fn enqueue(args: EnqueueArgs, api: &Api) -> Result<(), ClientError> {
    let ops = read_json("--ops", &args.ops).await?;
    if !ops.is_array() {
        return Err(ClientError::Usage(format!(
            "--ops {}: expected a JSON array of RFC 6902 operations, like [{{\"op\": \"add\", \"path\": \"/a\", \"value\": 1}}]",
            args.ops
        )));
    }
    let mut body = json!({ "ops": ops });
    if let Some(version) = args.if_version {
        body["if_version"] = json!(version);
    }
    let url = api.url(&["topologies", &args.topology.to_string(), "mutations"]);
    let mut request = api.request(Method::POST, url).json(&body);
    if let Some(key) = &args.idempotency_key {
        request = request.header("idempotency-key", key);
    }
    let answer = api.send(request).await?;
    let mutation: Mutation = answer.parse()?;
    if !api.json {
        let how = if answer.status == StatusCode::OK {
            "was already enqueued with this idempotency key"
        } else {
            "enqueued"
        };
        output::line(format!(
            "mutation {} {how}: seq {} on topology {}",
            mutation.id, mutation.seq, mutation.topology_id
        ))?;
    }
    if args.wait.wait {
        let answer = wait_for(api, mutation.id, args.wait.timeout).await?;
        report(api, &answer)
    } else if api.json {
        output::line(answer.text.trim_end())
    } else {
        Ok(())
    }
}

/// Prints a finished mutation; a failed one is [`ClientError::WorkFailed`] (exit 3),
/// its error printed once, on stderr.
fn report(api: &Api, answer: &Answer) -> Result<(), ClientError> {
    let mutation: Mutation = answer.parse()?;
    let failed = MutationStatus::parse(&mutation.status) == Some(MutationStatus::Failed);
    if api.json {
        output::line(answer.text.trim_end())?;
    } else if !failed {
        output::line(describe(&mutation))?;
    }
    if failed {
        Err(ClientError::WorkFailed(describe(&mutation)))
    } else {
        Ok(())
    }
}

/// One line: the outcome, and the error of a failed mutation.
fn describe(mutation: &Mutation) -> String {
    let (id, seq, topology) = (mutation.id, mutation.seq, mutation.topology_id);
    match (
        MutationStatus::parse(&mutation.status),
        mutation.applied_version,
    ) {
        (Some(MutationStatus::Applied), Some(version)) => {
            format!(
                "mutation {id} applied: it made version {version} of topology {topology} (seq {seq})"
            )
        }
        (Some(MutationStatus::Failed), _) => format!(
            "mutation {id} failed (seq {seq} on topology {topology}): {}",
            mutation.error.as_deref().unwrap_or("no reason given")
        ),
        (_, _) => format!(
            "mutation {id} {} (seq {seq} on topology {topology})",
            mutation.status
        ),
    }
}

/// The mutation once it is no longer pending: polled with backoff, outages waited out,
/// until `timeout` (exit 4).
async fn wait_for(api: &Api, id: Uuid, timeout: Duration) -> Result<Answer, ClientError> {
    let url = api.url(&["mutations", &id.to_string()]);
    let deadline = Instant::now() + timeout;
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
        .with_factor(1.5)
        .without_max_times()
        .build();
    let mut outage = None;
    loop {
        match timeout_at(deadline, api.get(url.clone())).await {
            Ok(Ok(answer))
                if MutationStatus::parse(&answer.parse::<Mutation>()?.status)
                    != Some(MutationStatus::Pending) =>
            {
                return Ok(answer);
            }
            Ok(Ok(_)) => outage = None,
            Ok(Err(error)) if error.is_transient() => outage = Some(error),
            Ok(Err(error)) => return Err(error),
            Err(_) => {}
        }
        let now = Instant::now();
        if now >= deadline {
            let why = match outage {
                Some(error) => format!("; the last attempt: {error}"),
                None => String::new(),
            };
            return Err(ClientError::TimedOut(format!(
                "mutation {id} was still pending after {}{why}; `switchyard mutation show {id} --wait` waits again",
                humantime::format_duration(timeout)
            )));
        }
        let delay = delays.next().unwrap_or(Duration::from_secs(2));
        sleep(delay.min(deadline - now)).await;
    }
}
