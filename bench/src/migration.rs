//! `--migrate-nodes N`: nodes migrated per second. Registers a plugin, fills a graph
//! with N nodes over HTTP, registers a second plugin version with three steps, asks for
//! the migration, and waits for the run to succeed. The rate is the run's own
//! `total / (finished_at - started_at)`, as the migrator recorded it.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use futures::{StreamExt, stream};
use serde_json::{Value, json};
use switchyard_domain::status::MigrationRunStatus;

/// Nodes per write request (the API's maximum).
const CHUNK: usize = 1000;

pub async fn run(http: &reqwest::Client, api: &str, nodes: usize) -> anyhow::Result<()> {
    let v1 = format!("{api}/api/v1");
    let name = format!("bench-{}", Utc::now().timestamp_millis());
    post(
        http,
        &format!("{v1}/plugins"),
        json!({"name": name, "versions": [{"version": 1, "steps": []}]}),
    )
    .await?;
    post(
        http,
        &format!("{v1}/graphs"),
        json!({"slug": name, "plugin": name}),
    )
    .await?;

    let writing = Instant::now();
    let chunks: Vec<Value> = (0..nodes)
        .collect::<Vec<_>>()
        .chunks(CHUNK)
        .map(|chunk| {
            let nodes: Vec<Value> = chunk
                .iter()
                .map(|i| json!({"id": format!("n{i:08}"), "data": {"colour": "red", "kind": "sw", "i": i}}))
                .collect();
            json!({"nodes": nodes})
        })
        .collect();
    let url = format!("{v1}/graphs/{name}/nodes");
    let results: Vec<anyhow::Result<Value>> = stream::iter(chunks)
        .map(|body| post(http, &url, body))
        .buffer_unordered(4)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let written = writing.elapsed();

    let steps = json!([
        {"op": "rename", "from": "colour", "to": "color"},
        {"op": "set_default", "property": "weight", "value": 1},
        {"op": "map_values", "property": "kind", "mapping": [{"from": "sw", "to": "switch"}]}
    ]);
    post(
        http,
        &format!("{v1}/plugins/{name}/versions"),
        json!({"version": 2, "steps": steps}),
    )
    .await?;
    let requested = Instant::now();
    post(http, &format!("{v1}/graphs/{name}/re-migrate"), json!({})).await?;
    let run = loop {
        let page: Value = http
            .get(format!("{v1}/graphs/{name}/migrations?limit=1"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let run = page["items"][0].clone();
        match serde_json::from_value(run["status"].clone()).ok() {
            Some(MigrationRunStatus::Succeeded) => break run,
            Some(MigrationRunStatus::Failed) => bail!("the migration failed: {}", run["error"]),
            _ if requested.elapsed() > Duration::from_secs(600) => bail!("no result in 10 minutes"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let observed = requested.elapsed();
    let at = |field: &str| -> anyhow::Result<DateTime<Utc>> {
        run[field]
            .as_str()
            .context("timestamp")?
            .parse()
            .context("timestamp")
    };
    let working = (at("finished_at")? - at("started_at")?).to_std()?;
    let total = run["total"].as_i64().unwrap_or(0);
    println!("graph migration: {total} nodes, version 1 -> 2, 3 steps");
    println!(
        "  write:    {nodes} nodes in {:.2}s ({:.0} nodes/s over HTTP)",
        written.as_secs_f64(),
        nodes as f64 / written.as_secs_f64()
    );
    println!(
        "  migrate:  {:.2}s from claim to success: {:.0} nodes/s",
        working.as_secs_f64(),
        total as f64 / working.as_secs_f64()
    );
    println!(
        "  observed: {:.2}s from the 202 to seeing `succeeded` (includes queueing and polling)",
        observed.as_secs_f64()
    );
    Ok(())
}

pub async fn post(http: &reqwest::Client, url: &str, body: Value) -> anyhow::Result<Value> {
    let response = http.post(url).json(&body).send().await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("POST {url}: {status} {body}");
    }
    Ok(body)
}
