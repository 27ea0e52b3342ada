//! `--self-copies N`: the server's peak memory while it applies a mutation of N
//! `copy` operations that each copy `/a` into itself (more than doubling it), against
//! a one-copy mutation, side by side in one run. The document limit
//! (`documents.max_bytes`) must stop the mutation at the first copy that passes it,
//! so the peak stays near the limit however large N is.
//!
//! Each round creates a fresh topology `{"a": [0, …, 7]}`, resets the server's peak
//! resident set (`/proc/PID/clear_refs`), enqueues, waits for the outcome, and reads
//! the peak (`VmHWM`) against the resident set just before (`VmRSS`). The one-copy
//! rounds run first, so memory kept after a large mutation cannot inflate them.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use switchyard_domain::status::MutationStatus;

use crate::migration::post;

/// Rounds of each mutation; the median is reported.
const ROUNDS: usize = 5;

pub async fn run(http: &reqwest::Client, api: &str, pid: u32, copies: usize) -> anyhow::Result<()> {
    let v1 = format!("{api}/api/v1");
    let mut baseline = Vec::new();
    let mut measured = Vec::new();
    let mut outcome = Value::Null;
    // One-copy rounds first: memory an allocator keeps after a large mutation would
    // otherwise inflate every later baseline.
    for _ in 0..ROUNDS {
        baseline.push(round(http, &v1, pid, 1).await?.0);
    }
    for _ in 0..ROUNDS {
        let (peak, mutation) = round(http, &v1, pid, copies).await?;
        measured.push(peak);
        outcome = mutation;
    }
    let (base, peak) = (median(&mut baseline), median(&mut measured));
    println!("self-copying mutation: {copies} × copy /a → /a/- on {{\"a\": [0..7]}}");
    println!(
        "  outcome:  {} — {}",
        outcome["status"].as_str().unwrap_or("?"),
        outcome["error"].as_str().unwrap_or("(no error)")
    );
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "  server peak RSS while applying it, median of {ROUNDS}: {:.1} MiB ({:+.1} MiB over resting)",
        mib(peak.0),
        mib(peak.0) - mib(peak.1)
    );
    println!(
        "  the same with 1 copy:                            {:.1} MiB ({:+.1} MiB over resting)",
        mib(base.0),
        mib(base.0) - mib(base.1)
    );
    println!(
        "  ratio of peaks, {copies} copies to 1: {:.2}",
        peak.0 as f64 / base.0.max(1) as f64
    );
    Ok(())
}

/// One mutation of `copies` self-copies on a fresh topology: (the server's peak RSS
/// while applying it, its resident set just before) in KiB, and the finished mutation.
async fn round(
    http: &reqwest::Client,
    v1: &str,
    pid: u32,
    copies: usize,
) -> anyhow::Result<((u64, u64), Value)> {
    let topology = post(
        http,
        &format!("{v1}/topologies"),
        json!({"name": "self-copies", "document": {"a": [0, 1, 2, 3, 4, 5, 6, 7]}}),
    )
    .await?;
    let topology = topology["id"].as_str().context("topology id")?;
    let ops: Vec<Value> = (0..copies)
        .map(|_| json!({"op": "copy", "from": "/a", "path": "/a/-"}))
        .collect();
    // Peak RSS is reset, so what follows is this mutation's alone.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .context("resetting the server's peak RSS (/proc/PID/clear_refs)")?;
    let resting = kib(pid, "VmRSS:")?;
    let mutation = post(
        http,
        &format!("{v1}/topologies/{topology}/mutations"),
        json!({ "ops": ops }),
    )
    .await?;
    let url = format!(
        "{v1}/mutations/{}",
        mutation["id"].as_str().context("mutation id")?
    );
    let started = Instant::now();
    let finished = loop {
        let mutation: Value = http
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        if mutation["status"] != MutationStatus::Pending.as_str() {
            break mutation;
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("the mutation did not finish in 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    Ok(((kib(pid, "VmHWM:")?, resting), finished))
}

/// The middle (peak, resting) pair, by peak.
fn median(values: &mut [(u64, u64)]) -> (u64, u64) {
    values.sort_unstable();
    values[values.len() / 2]
}

/// A `/proc/PID/status` line's value in KiB (`VmRSS:`, `VmHWM:`).
pub fn kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("a value in KiB")?
        .parse()?)
}
