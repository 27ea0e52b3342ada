//! `switchyard failed`: the work that ended `failed`, to look into.
//!
//! - Failed mutations of every topology, newest first: `GET /mutations?status=failed`.
//! - Failed migration runs: every graph whose status is `migration_failed` (from
//!   `GET /graphs`), with the failed run from its history (`GET
//!   /graphs/{slug}/migrations`). A failed run the graph has since left behind (retried
//!   or cancelled) is no longer work to do, so it is not listed.

use serde_json::value::RawValue;
use serde_json::{Value, json};
use switchyard_domain::status::{GraphStatus, MigrationRunStatus, MutationStatus};

use super::ClientError;
use super::api::Api;
use super::output::{self, cut};
use super::topology::Page;

/// How many runs of one graph's history are searched for its failed run; a graph
/// that is `migration_failed` has it among the newest.
const HISTORY_DEPTH: &str = "20";

/// `switchyard failed`'s options: paging through the failed mutations.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Failed mutations per page, 1 to 500.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Where to go on: the `next_cursor` a previous page of failed mutations ended with.
    #[arg(long)]
    cursor: Option<String>,
}

/// Lists the failed mutations (one page) and every failed migration run.
pub async fn run(args: Args, api: &Api) -> Result<(), ClientError> {
    let mut url = api.url(&["mutations"]);
    url.query_pairs_mut()
        .append_pair("status", MutationStatus::Failed.as_str())
        .append_pair("limit", &args.limit.to_string());
    if let Some(cursor) = &args.cursor {
        url.query_pairs_mut().append_pair("cursor", cursor);
    }
    let mutations = api.get(url).await?;
    let runs = failed_runs(api).await?;
    if api.json {
        let page: Box<RawValue> = mutations.parse()?;
        return output::line(json!({ "mutations": page, "migration_runs": runs }));
    }
    let page: Page<Value> = mutations.parse()?;
    output::line(describe(&page, &runs))
}

/// `{"graph", "run"}` for every graph whose last migration run failed.
async fn failed_runs(api: &Api) -> Result<Vec<Value>, ClientError> {
    let mut found = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = api.url(&["graphs"]);
        url.query_pairs_mut().append_pair("limit", "500");
        if let Some(cursor) = &cursor {
            url.query_pairs_mut().append_pair("cursor", cursor);
        }
        let page: Page<Value> = api.get(url).await?.parse()?;
        for graph in page.items {
            if graph["status"] == GraphStatus::MigrationFailed.as_str() {
                let slug = graph["slug"].as_str().unwrap_or_default().to_owned();
                let run = failed_run_of(api, &slug).await?;
                found.push(json!({ "graph": graph, "run": run }));
            }
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(found),
        }
    }
}

/// The newest failed run in the graph's history, or null.
async fn failed_run_of(api: &Api, slug: &str) -> Result<Value, ClientError> {
    let mut url = api.url(&["graphs", slug, "migrations"]);
    url.query_pairs_mut().append_pair("limit", HISTORY_DEPTH);
    let history: Value = api.get(url).await?.parse()?;
    // The runs, newest first: a list, or a page of them.
    let runs = history.get("items").unwrap_or(&history);
    let failed = runs.as_array().and_then(|runs| {
        runs.iter()
            .find(|run| run["status"] == MigrationRunStatus::Failed.as_str())
    });
    Ok(failed.cloned().unwrap_or(Value::Null))
}

fn describe(mutations: &Page<Value>, runs: &[Value]) -> String {
    let text = |value: &Value| value.as_str().unwrap_or("?").to_owned();
    let mut lines = vec!["failed mutations, newest first:".to_owned()];
    for m in &mutations.items {
        lines.push(format!(
            "  {}  topology {} seq {}  {}",
            text(&m["id"]),
            text(&m["topology_id"]),
            m["seq"],
            text(&m["finished_at"])
        ));
        lines.push(format!("      {}", cut(&text(&m["error"]), 300)));
    }
    if mutations.items.is_empty() {
        lines.push("  none".to_owned());
    }
    if let Some(next) = &mutations.next_cursor {
        lines.push(format!("  more: switchyard failed --cursor {next}"));
    }
    lines.push("failed migration runs:".to_owned());
    for entry in runs {
        let (graph, run) = (&entry["graph"], &entry["run"]);
        lines.push(format!(
            "  graph {}  run {}  version {} → {}  {}",
            text(&graph["slug"]),
            text(&run["id"]),
            run["from_version"],
            run["to_version"],
            text(&run["finished_at"])
        ));
        lines.push(format!("      {}", cut(&text(&run["error"]), 300)));
    }
    if runs.is_empty() {
        lines.push("  none".to_owned());
    }
    lines.join("\n")
}
