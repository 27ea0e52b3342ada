//! `switchyard graph show|migrate`: `GET /graphs/{slug}`, and a migration run
//! requested with `POST /graphs/{slug}/re-migrate` and followed to its end.
//!
//! ## Following a run
//! The graph's event stream is opened, and its snapshot read, before the run is
//! requested: every event of the run comes after that position, so none is missed.
//! Each `migration.*` event of the run moves a progress bar (processed of total; with
//! `--json`, the events are printed as lines instead). `succeeded` ends it (exit 0),
//! `failed` or `cancelled` too (exit 3). If the stream resets (the events were no
//! longer retained), the run's row in the history says where it is.

use std::time::Duration;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_bus::Event;
use switchyard_bus::payloads::{MigrationChanged, MigrationPhase};
use switchyard_domain::status::{MigrationRunStatus, StreamFrame};
use uuid::Uuid;

use super::ClientError;
use super::api::Api;
use super::output::{self, fields};
use super::stream::{Follower, Frame};

/// The `graph` subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show a graph: plugin, schema version, status, node count.
    Show {
        /// The graph's slug.
        slug: String,
    },
    /// Migrate a graph (operator) and follow the run to its end with a progress bar.
    Migrate {
        /// The graph's slug.
        slug: String,
        /// The plugin version to migrate to; the plugin's current one by default.
        #[arg(long, value_name = "N")]
        to_version: Option<i32>,
        /// Stop following after this long (exit 4); the run goes on without you.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        timeout: Option<Duration>,
    },
}

/// What the human-readable output shows of a graph.
#[derive(Deserialize)]
struct Graph {
    slug: String,
    plugin: String,
    schema_version: i32,
    status: String,
    read_only_reason: Option<String>,
    node_count: i64,
    created_at: String,
    updated_at: String,
}

/// A migration run, as `re-migrate` and the history return it.
#[derive(Deserialize)]
struct Run {
    id: Uuid,
    from_version: i32,
    to_version: i32,
    /// As sent: a status this build does not know (from a newer server) is shown as
    /// it is, not refused.
    status: String,
    error: Option<String>,
    processed: i64,
    total: i64,
}

/// Runs one `graph` subcommand; `migrate` returns when the run ends or `--timeout`
/// runs out.
pub async fn run(command: Command, api: &Api) -> Result<(), ClientError> {
    match command {
        Command::Show { slug } => {
            let answer = api.get(api.url(&["graphs", &slug])).await?;
            output::answer(api, &answer, || Ok(describe(&answer.parse()?)))
        }
        Command::Migrate {
            slug,
            to_version,
            timeout,
        } => migrate(api, &slug, to_version, timeout).await,
    }
}

fn describe(graph: &Graph) -> String {
    fields(&[
        ("slug", graph.slug.clone()),
        ("plugin", graph.plugin.clone()),
        ("schema version", graph.schema_version.to_string()),
        ("status", graph.status.clone()),
        (
            "read-only",
            graph
                .read_only_reason
                .clone()
                .unwrap_or_else(|| "no".to_owned()),
        ),
        ("nodes", graph.node_count.to_string()),
        ("created", graph.created_at.clone()),
        ("updated", graph.updated_at.clone()),
    ])
}

async fn migrate(
    api: &Api,
    slug: &str,
    to_version: Option<i32>,
    timeout: Option<Duration>,
) -> Result<(), ClientError> {
    let mut follower = Follower::new(api, api.url(&["graphs", slug, "events"]), None);
    // The opening snapshot marks the stream's position (see the module docs).
    follower.next().await?;
    let body = match to_version {
        Some(version) => json!({ "target_version": version }),
        None => json!({}),
    };
    let run: Run = api
        .post(api.url(&["graphs", slug, "re-migrate"]), &body)
        .await?
        .parse()?;
    if !api.json {
        output::line(format!(
            "migration run {} requested: graph {slug}, version {} → {}",
            run.id, run.from_version, run.to_version
        ))?;
    }
    let bar = progress_bar(api, slug, &run);
    let follow = follow(api, &mut follower, slug, &run, &bar);
    let ended = match timeout {
        Some(limit) => tokio::time::timeout(limit, follow).await.map_err(|_| {
            ClientError::TimedOut(format!(
                "migration run {} of graph {slug} had not ended after {}; it goes on (`switchyard graph show {slug}`)",
                run.id,
                humantime::format_duration(limit)
            ))
        })?,
        None => follow.await,
    };
    bar.finish_and_clear();
    conclude(api, slug, &ended?)
}

/// The bar, drawn on stderr when it is a terminal; none with `--json`.
fn progress_bar(api: &Api, slug: &str, run: &Run) -> ProgressBar {
    if api.json {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(
        "{msg} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} nodes ({eta} left)",
    )
    .expect("the template is valid");
    ProgressBar::new(run.total.max(0) as u64)
        .with_style(style)
        .with_message(format!(
            "{slug} v{} → v{}",
            run.from_version, run.to_version
        ))
}

/// Reads the stream until the run ends, moving the bar (or printing the events).
async fn follow(
    api: &Api,
    follower: &mut Follower<'_>,
    slug: &str,
    run: &Run,
    bar: &ProgressBar,
) -> Result<Run, ClientError> {
    loop {
        let frame = follower.next().await?;
        if matches!(
            StreamFrame::parse(&frame.event),
            Some(StreamFrame::Snapshot | StreamFrame::Reset)
        ) {
            // Events may have been lost: the history says whether the run ended.
            match ended_run(api, slug, run.id).await? {
                Some(ended) => return Ok(ended),
                None => continue,
            }
        }
        let Some(change) = migration_change(&frame).filter(|c| c.run_id == run.id) else {
            continue;
        };
        if api.json {
            output::line(frame.json_line())?;
        }
        bar.set_length(change.total.max(0) as u64);
        bar.set_position(change.processed.max(0) as u64);
        let status = match change.phase {
            MigrationPhase::Succeeded => MigrationRunStatus::Succeeded,
            MigrationPhase::Failed => MigrationRunStatus::Failed,
            MigrationPhase::Cancelled => MigrationRunStatus::Cancelled,
            _ => continue,
        };
        return Ok(Run {
            id: change.run_id,
            from_version: change.from_version,
            to_version: change.to_version,
            status: status.as_str().to_owned(),
            error: change.error,
            processed: change.processed,
            total: change.total,
        });
    }
}

/// The `migration.*` payload a frame carries, if any.
fn migration_change(frame: &Frame) -> Option<MigrationChanged> {
    if !frame.event.starts_with("migration.") {
        return None;
    }
    let event: Event = serde_json::from_str(&frame.data).ok()?;
    serde_json::from_value(event.data).ok()
}

/// The run from the graph's history, if it has ended.
async fn ended_run(api: &Api, slug: &str, id: Uuid) -> Result<Option<Run>, ClientError> {
    let history: Value = api
        .get(api.url(&["graphs", slug, "migrations"]))
        .await?
        .parse()?;
    // The runs, newest first: a list, or a page of them.
    let runs = history.get("items").cloned().unwrap_or(history);
    let runs: Vec<Run> = serde_json::from_value(runs)
        .map_err(|error| ClientError::Unexpected(format!("reading the run history: {error}")))?;
    Ok(runs
        .into_iter()
        .find(|run| run.id == id)
        .filter(|run| MigrationRunStatus::parse(&run.status).is_some_and(|s| !s.is_open())))
}

/// Exit 0 for a run that succeeded; [`ClientError::WorkFailed`] otherwise.
fn conclude(api: &Api, slug: &str, run: &Run) -> Result<(), ClientError> {
    let (id, from, to) = (run.id, run.from_version, run.to_version);
    let (status, known) = (&run.status, MigrationRunStatus::parse(&run.status));
    match known {
        Some(MigrationRunStatus::Succeeded) if api.json => Ok(()),
        Some(MigrationRunStatus::Succeeded) => output::line(format!(
            "migration run {id} succeeded: graph {slug} is at version {to} ({} of {} nodes migrated)",
            run.processed, run.total
        )),
        Some(MigrationRunStatus::Failed) => Err(ClientError::WorkFailed(format!(
            "migration run {id} of graph {slug} (version {from} → {to}) failed: {}. \
             Repair the data and run `switchyard graph migrate {slug}` again, or cancel the run",
            run.error.as_deref().unwrap_or("no reason given")
        ))),
        _ => Err(ClientError::WorkFailed(format!(
            "migration run {id} of graph {slug} (version {from} → {to}) was {status} after {} of {} nodes",
            run.processed, run.total
        ))),
    }
}
