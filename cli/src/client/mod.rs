//! The client commands: everyday work against a running API, over HTTP.
//!
//! `topology`, `mutation`, `tail`, `failed` and `graph` speak to the API at
//! `SWITCHYARD_URL` (`--url`) with the bearer token in `SWITCHYARD_TOKEN` (`--token`).
//! They never read the server's configuration: a client machine has none.
//!
//! ## Layout
//! - [`api`]: the connection, and how an answer becomes output or a [`ClientError`].
//! - [`stream`]: an event stream (SSE) that reconnects after a drop and resumes after
//!   the last id it saw, so nothing is lost or repeated.
//! - one module per command: [`topology`], [`mutation`], [`tail`], [`failed`],
//!   [`graph`].
//!
//! ## Output
//! Short human-readable text by default. `--json` prints the API's JSON as it came:
//! one document, or for streams one object per line (`{"id", "event", "data"}`).
//! Errors and notices go to stderr, as `switchyard: …`.
//!
//! ## Exit codes
//! See [`EXIT_CODES`]; [`ClientError::exit_code`] maps each error to one.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::Value;
use tokio::io::AsyncReadExt;

mod api;
mod failed;
mod graph;
mod mutation;
mod output;
mod stream;
mod tail;
mod topology;

pub use api::Api;

/// What each exit code means, for `--help` and the README.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  an error: the API answered with an error (its message and status are printed),
     the API could not be reached, or a server command failed
  2  bad usage or configuration: arguments, an unreadable input file, settings
  3  the work failed: a mutation ended `failed`, a migration run failed or was cancelled
  4  gave up waiting: --wait or --timeout ran out before the work finished";

/// Where the API is and who speaks to it; shared by every client command.
#[derive(Args, Debug)]
#[command(next_help_heading = "Client options (topology, mutation, tail, failed, graph)")]
pub struct ClientArgs {
    /// Base URL of the API, http:// or https://; `/api/v1` is added.
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// Bearer token (`switchyard token --role …`, or the one `switchyard up` prints).
    #[arg(long, global = true, env = "SWITCHYARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the API's JSON as is: one document, or one object per line for streams.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The client commands, flattened into the binary's own.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create, show and list topologies.
    #[command(subcommand, after_help = EXIT_CODES)]
    Topology(topology::Command),
    /// Enqueue a mutation, or show one (and wait for its outcome).
    #[command(subcommand, after_help = EXIT_CODES)]
    Mutation(mutation::Command),
    /// Follow an event stream, reconnecting and resuming after a drop.
    #[command(after_help = EXIT_CODES)]
    Tail(tail::Args),
    /// List failed work: failed mutations and failed migration runs.
    #[command(after_help = EXIT_CODES)]
    Failed(failed::Args),
    /// Show a graph, or migrate it and follow the run with a progress bar.
    #[command(subcommand, after_help = EXIT_CODES)]
    Graph(graph::Command),
}

/// Why a client command did not succeed; each kind has its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API answered with an error status.
    #[error("{method} {path}: {status}: {message}")]
    Api {
        /// The request's method.
        method: reqwest::Method,
        /// The request's path and query, without the host.
        path: String,
        /// The answer's status.
        status: reqwest::StatusCode,
        /// The API's `error.message`, or an excerpt of a body that has none.
        message: String,
    },
    /// No answer at all: connection refused, DNS, a failed TLS handshake, a timeout.
    #[error("cannot reach the API at {url}: {reason} (check --url or SWITCHYARD_URL)")]
    Unreachable {
        /// The URL that was tried, without any credentials it carried.
        url: String,
        /// Why there was no answer, from the innermost cause.
        reason: String,
    },
    /// The API answered 2xx with something this client cannot read.
    #[error("{0}")]
    Unexpected(String),
    /// Bad arguments or input (exit 2, like clap's own usage errors).
    #[error("{0}")]
    Usage(String),
    /// The work ended without success: a failed mutation or migration run.
    #[error("{0}")]
    WorkFailed(String),
    /// `--wait` or `--timeout` ran out first.
    #[error("{0}")]
    TimedOut(String),
    /// Writing to stdout failed (other than its reader going away).
    #[error("writing to stdout: {0}")]
    Output(std::io::Error),
    /// Stdout's reader went away (`| head`): stop quietly.
    #[error("stdout was closed")]
    StdoutClosed,
}

impl ClientError {
    /// Whether trying again later may succeed: no answer, a 5xx, a 408 or a 429.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Api { status, .. } => {
                status.is_server_error()
                    || *status == reqwest::StatusCode::REQUEST_TIMEOUT
                    || *status == reqwest::StatusCode::TOO_MANY_REQUESTS
            }
            _ => false,
        }
    }

    /// The process exit code for this error (see [`EXIT_CODES`]).
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::StdoutClosed => ExitCode::SUCCESS,
            Self::Usage(_) => ExitCode::from(2),
            Self::WorkFailed(_) => ExitCode::from(3),
            Self::TimedOut(_) => ExitCode::from(4),
            Self::Api { .. } | Self::Unreachable { .. } | Self::Unexpected(_) | Self::Output(_) => {
                ExitCode::FAILURE
            }
        }
    }
}

/// Runs one client command and turns its outcome into the exit code.
pub async fn run(command: Command, args: ClientArgs) -> ExitCode {
    let result = match Api::new(&args) {
        Ok(api) => dispatch(command, &api).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(ClientError::StdoutClosed) => ExitCode::SUCCESS,
        Err(error) => {
            output::notice(&error);
            error.exit_code()
        }
    }
}

async fn dispatch(command: Command, api: &Api) -> Result<(), ClientError> {
    match command {
        Command::Topology(command) => topology::run(command, api).await,
        Command::Mutation(command) => mutation::run(command, api).await,
        Command::Tail(args) => tail::run(args, api).await,
        Command::Failed(args) => failed::run(args, api).await,
        Command::Graph(command) => graph::run(command, api).await,
    }
}

/// JSON from the file `source`, or from stdin for `-`; `flag` names the option in
/// errors (exit 2).
async fn read_json(flag: &str, source: &str) -> Result<Value, ClientError> {
    let unreadable = |error: &dyn std::fmt::Display| {
        ClientError::Usage(format!("{flag} {source}: cannot read it: {error}"))
    };
    let text = if source == "-" {
        if std::io::stdin().is_terminal() {
            output::notice(format!("reading {flag} from stdin; end it with Ctrl-D"));
        }
        let mut text = String::new();
        tokio::io::stdin()
            .read_to_string(&mut text)
            .await
            .map_err(|error| unreadable(&error))?;
        text
    } else {
        tokio::fs::read_to_string(source)
            .await
            .map_err(|error| unreadable(&error))?
    };
    serde_json::from_str(&text)
        .map_err(|error| ClientError::Usage(format!("{flag} {source}: not JSON: {error}")))
}
