//! `--idle-streams N`: the fleet's memory at rest, then with N idle SSE streams open.
//!
//! The resident set (`VmRSS` of `--server-pid`) is read first, before this run creates
//! anything: on a fleet just started, that is its idle RSS. Then one topology is
//! created and N streams of its events are opened, `OPENING` at a time, each read up
//! to its first frame (the snapshot); after a pause to settle, the resident set is read
//! again. Records: `idle_rss`, `idle_streams`.

use std::time::Duration;

use anyhow::Context;
use futures::{StreamExt, stream};
use serde_json::json;

use crate::output::Output;
use crate::{amplification, create_topologies};

/// Streams being opened at once.
const OPENING: usize = 16;

/// Streams per HTTP/2 connection (below the server's limit of concurrent streams).
const PER_CONNECTION: usize = 100;

/// How the streams are opened.
pub enum Opener {
    /// One HTTP/1.1 connection per stream, on the run's client.
    Http1,
    /// HTTP/2, [`PER_CONNECTION`] streams on each connection; makes a new client (its
    /// own connection) each time it is called.
    Http2(Box<dyn Fn() -> anyhow::Result<reqwest::Client> + Send>),
}

/// Measures idle RSS, then RSS with `count` idle event streams.
pub async fn run(
    http: &reqwest::Client,
    api: &str,
    pid: u32,
    count: usize,
    opener: Opener,
    out: Output,
) -> anyhow::Result<()> {
    let idle = resident_kib(pid)?;
    out.say(format_args!("server RSS at rest: {:.1} MiB", mib(idle)));
    out.record("idle_rss", json!({ "rss_kib": idle }));
    let topology = create_topologies(http, api, 1).await?.remove(0);
    let before = resident_kib(pid)?;
    let url = format!("{api}/api/v1/topologies/{topology}/events");
    let clients: Vec<reqwest::Client> = match &opener {
        Opener::Http1 => vec![http.clone()],
        Opener::Http2(new_client) => (0..count.div_ceil(PER_CONNECTION))
            .map(|_| new_client())
            .collect::<anyhow::Result<_>>()?,
    };
    let transport = match opener {
        Opener::Http1 => "HTTP/1.1",
        Opener::Http2(_) => "HTTP/2",
    };
    let (clients, url) = (&clients, &url);
    let opened: Vec<_> = stream::iter(0..count)
        .map(|i| open(&clients[(i / PER_CONNECTION) % clients.len()], url))
        .buffer_unordered(OPENING)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = resident_kib(pid)?;
    let per_stream = after.saturating_sub(before) as f64 / count.max(1) as f64;
    out.say(format_args!(
        "idle SSE streams: {} open over {transport}",
        opened.len()
    ));
    out.say(format_args!(
        "server RSS:       {:.1} MiB before, {:.1} MiB with them open ({per_stream:.1} KiB per stream)",
        mib(before),
        mib(after)
    ));
    out.record(
        "idle_streams",
        json!({
            "streams": count,
            "transport": transport,
            "rss_before_kib": before,
            "rss_kib": after,
            "per_stream_kib": (per_stream * 10.0).round() / 10.0,
        }),
    );
    drop(opened);
    Ok(())
}

/// Opens one event stream and reads its first frame; the stream stays open while the
/// returned response is kept.
async fn open(http: &reqwest::Client, url: &str) -> anyhow::Result<reqwest::Response> {
    let mut response = http.get(url).send().await?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        anyhow::bail!("opening an event stream answered {status}: {body}");
    }
    response
        .chunk()
        .await?
        .context("an event stream ended before its first frame")?;
    Ok(response)
}

fn resident_kib(pid: u32) -> anyhow::Result<u64> {
    amplification::kib(pid, "VmRSS:")
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
