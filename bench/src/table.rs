//! `compare-table`: the one table `scripts/bench compare` ends with, built from the JSON
//! lines its runs printed (a file, or stdin): switchyard's records (`--json`), the
//! graphile-worker bench's (`scripts/bench-graphile`) and pgbench's ceiling.
//!
//! Each row is one measure: switchyard's figure, graphile-worker's in its default and
//! batching configurations where it has one, the ratio switchyard ÷ batching, issue
//! #14's target and whether it is met (✓ / ✗; `?` when a figure is missing, nothing
//! when the measure has no target). A figure that was measured more than once (`--runs`)
//! is the median of its runs. The table is Markdown, padded to read as plain text; a
//! line on the machine (CPUs, load average) follows it.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use serde_json::Value;

use markdown::{Row, count, markdown, mb, megabytes, pair, rate, times};

mod markdown;

/// Arguments of `switchyard-bench compare-table`.
#[derive(clap::Args, Debug, Clone)]
pub struct TableArgs {
    /// The JSON lines (default: stdin). Lines that do not start with `{` are skipped.
    file: Option<PathBuf>,
    /// Also list the rows written per table in each row-writes record.
    #[arg(long)]
    verbose: bool,
}

/// Reads the records and prints the table.
pub fn run(args: TableArgs) -> anyhow::Result<()> {
    let text = match &args.file {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            text
        }
    };
    print!("{}", render(&Records::parse(&text)?, args.verbose));
    Ok(())
}

/// Every record of a comparison.
struct Records(Vec<Value>);

impl Records {
    fn parse(text: &str) -> anyhow::Result<Self> {
        text.lines()
            .enumerate()
            .filter(|(_, line)| line.trim_start().starts_with('{'))
            .map(|(i, line)| {
                serde_json::from_str(line).with_context(|| format!("line {}: not JSON", i + 1))
            })
            .collect::<anyhow::Result<_>>()
            .map(Self)
    }

    /// Records whose `key` fields hold these values, in order.
    fn select(&self, key: &[(&str, &str)]) -> Vec<&Value> {
        self.0
            .iter()
            .filter(|r| key.iter().all(|(field, value)| r[field] == *value))
            .collect()
    }

    /// The median of the number at `pointer` over the records of `key`.
    fn median(&self, key: &[(&str, &str)], pointer: &str) -> Option<f64> {
        median(
            self.select(key)
                .into_iter()
                .filter_map(|r| r.pointer(pointer)?.as_f64())
                .collect(),
        )
    }

    /// The first record of `key`.
    fn first(&self, key: &[(&str, &str)]) -> Option<&Value> {
        self.select(key).into_iter().next()
    }

    /// A switchyard measure's median figure.
    fn switchyard(&self, measure: &str, pointer: &str) -> Option<f64> {
        self.median(&[("system", "switchyard"), ("measure", measure)], pointer)
    }

    /// A graphile-worker (config, mode) median figure.
    fn graphile(&self, config: &str, mode: &str, pointer: &str) -> Option<f64> {
        let key = [
            ("system", "graphile-worker"),
            ("config", config),
            ("mode", mode),
        ];
        self.median(&key, pointer)
    }
}

/// The middle value, or the mean of the two middle ones.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// The whole output: a heading, the table and its notes.
fn render(records: &Records, verbose: bool) -> String {
    let mut rows = throughput_rows(records);
    rows.extend(latency_rows(records));
    rows.extend(machine_rows(records));
    rows.extend(memory_rows(records));
    let mut text = heading(records);
    text.push_str(&markdown(&rows));
    text.push_str(&machine_note(records));
    if verbose {
        text.push_str(&row_writes_detail(records));
    }
    text
}

fn heading(records: &Records) -> String {
    let e2e = records.first(&[("system", "switchyard"), ("measure", "end_to_end")]);
    let field = |name: &str| e2e.and_then(|r| r[name].as_u64()).map_or("?".into(), count);
    let version = records
        .first(&[("system", "graphile-worker")])
        .and_then(|r| r["version"].as_str())
        .unwrap_or("?");
    let runs = records
        .select(&[("system", "switchyard"), ("measure", "end_to_end")])
        .len();
    format!(
        "switchyard vs graphile-worker {version}, same Postgres: {} mutations (jobs) over {} \
         topologies, {} producers; figures are medians of {runs} run(s)\n\n",
        field("mutations"),
        field("topologies"),
        field("producers"),
    )
}

fn throughput_rows(records: &Records) -> Vec<Row> {
    let e2e = records.switchyard("end_to_end", "/per_second");
    let (e2e_default, e2e_batching) = (
        records.graphile("default", "end_to_end", "/per_second"),
        records.graphile("batching", "end_to_end", "/per_second"),
    );
    let p99 = records.switchyard("end_to_end", "/latency_ms/p99");
    let ratio = e2e.zip(e2e_batching).map(|(s, g)| s / g);
    let mut end_to_end = Row::new("end to end: single-mutation HTTP → applied, /s", rate(e2e))
        .graphile(rate(e2e_default), rate(e2e_batching))
        .target("≥ 3× graphile batching", ratio.map(|r| r >= 3.0));
    end_to_end.ratio = times(ratio);
    let graphile_latency =
        |config| pair(|p| records.graphile(config, "end_to_end", p), "/latency_ms");
    let latency = Row::new(
        "  its latency, p50 / p99 (switchyard: 202 → applied on NATS)",
        pair(|p| records.switchyard("end_to_end", p), "/latency_ms"),
    )
    .graphile(graphile_latency("default"), graphile_latency("batching"))
    .target("p99 < 100 ms", p99.map(|p| p < 100.0));
    let bulk = records.switchyard("bulk", "/per_second");
    let batch = records
        .first(&[("system", "switchyard"), ("measure", "bulk")])
        .and_then(|r| r["batch_size"].as_u64())
        .map_or("?".into(), count);
    let bulk = Row::new(
        format!("bulk enqueue ({batch} per request) → applied, /s"),
        rate(bulk),
    )
    .target("≥ 10,000/s", bulk.map(|b| b >= 10_000.0));
    let apply = records.switchyard("bulk", "/apply_per_second");
    let burn_batching = records.graphile("batching", "burn_down", "/per_second");
    let mut burn_down = Row::new(
        "worker side: burn-down, /s (switchyard: the bulk run's apply rate)",
        rate(apply),
    )
    .graphile(
        rate(records.graphile("default", "burn_down", "/per_second")),
        rate(burn_batching),
    );
    burn_down.ratio = times(apply.zip(burn_batching).map(|(s, g)| s / g));
    vec![end_to_end, latency, bulk, burn_down]
}

fn latency_rows(records: &Records) -> Vec<Row> {
    let at = records
        .switchyard("latency_at_rate", "/rate")
        .map_or("?".into(), |r| count(r as u64));
    let figure = |p: &str| records.switchyard("latency_at_rate", p);
    let (p50, p99) = (figure("/applied_ms/p50"), figure("/applied_ms/p99"));
    let applied = Row::new(
        format!("at {at}/s: 202 → applied on NATS, p50 / p99"),
        pair(|p| records.switchyard("latency_at_rate", p), "/applied_ms"),
    )
    .target(
        "p50 < 5 ms, p99 < 25 ms",
        p50.zip(p99).map(|(p50, p99)| p50 < 5.0 && p99 < 25.0),
    );
    let sse = Row::new(
        format!("at {at}/s: 202 → SSE frame, p50 / p99"),
        pair(|p| records.switchyard("latency_at_rate", p), "/sse_ms"),
    )
    .target("p99 < 30 ms", figure("/sse_ms/p99").map(|p| p < 30.0));
    vec![applied, sse]
}

fn machine_rows(records: &Records) -> Vec<Row> {
    let mut clients: Vec<u64> = records
        .select(&[("system", "pgbench")])
        .into_iter()
        .filter_map(|r| r["clients"].as_u64())
        .collect();
    clients.sort_unstable();
    clients.dedup();
    let mut rows: Vec<Row> = clients
        .into_iter()
        .map(|c| {
            let tps = median(
                records
                    .select(&[("system", "pgbench")])
                    .into_iter()
                    .filter(|r| r["clients"] == c)
                    .filter_map(|r| r["tps"].as_f64())
                    .collect(),
            );
            Row::new(
                format!("ceiling: single-row commits, pgbench {c} clients, /s"),
                rate(tps),
            )
        })
        .collect();
    let writes = records.switchyard("row_writes", "/per_mutation");
    rows.push(Row::new(
        "Postgres row writes per mutation (end-to-end run)",
        writes.map_or("—".into(), |w| format!("{w:.2}")),
    ));
    rows
}

fn memory_rows(records: &Records) -> Vec<Row> {
    let idle = records.switchyard("idle_rss", "/rss_kib").map(megabytes);
    let mut rows = vec![Row::new("idle RSS", mb(idle)).target("< 50 MB", idle.map(|m| m < 50.0))];
    for transport in ["HTTP/1.1", "HTTP/2"] {
        rows.extend(stream_rows(records, transport));
    }
    rows
}

/// RSS with the idle SSE streams opened over `transport` (lines without a transport
/// are HTTP/1.1, as every run was before HTTP/2 was measured).
fn stream_rows(records: &Records, transport: &str) -> Vec<Row> {
    let key = [("system", "switchyard"), ("measure", "idle_streams")];
    let over = |pointer: &str| {
        let values = records
            .select(&key)
            .into_iter()
            .filter(|r| r["transport"].as_str().unwrap_or("HTTP/1.1") == transport)
            .filter_map(|r| r.pointer(pointer).and_then(Value::as_f64))
            .collect();
        median(values)
    };
    let Some(streams) = over("/streams") else {
        return Vec::new();
    };
    let with_streams = over("/rss_kib").map(megabytes);
    let per_stream = over("/per_stream_kib");
    let n = count(streams as u64);
    let at_scale = streams >= 10_000.0;
    vec![
        Row::new(
            format!("RSS with {n} idle SSE streams, {transport}"),
            mb(with_streams),
        )
        .target(
            if at_scale {
                "< 100 MB"
            } else {
                "< 100 MB (at 10,000 streams)"
            },
            with_streams.filter(|_| at_scale).map(|m| m < 100.0),
        ),
        Row::new(
            format!("  memory per idle SSE stream, {transport}"),
            per_stream.map_or("—".into(), |k| format!("{k:.1} KiB")),
        )
        .target("< 8 KiB", per_stream.map(|k| k < 8.0)),
    ]
}

/// The machine's CPUs and load average at the end, from the `machine` record: figures
/// measured on a busy machine read differently.
fn machine_note(records: &Records) -> String {
    let Some(machine) = records.first(&[("system", "machine")]) else {
        return String::new();
    };
    let load: Vec<String> = machine["load_average"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| format!("{:.2}", l.as_f64().unwrap_or(f64::NAN)))
        .collect();
    format!(
        "\nmachine: {} CPUs, load average {} (1, 5, 15 min) at the end; the comparison took {} s\n",
        machine["cpus"],
        load.join(" / "),
        machine["seconds"]
    )
}

/// The rows written per table, from each `row_writes` record.
fn row_writes_detail(records: &Records) -> String {
    let mut text = String::new();
    for (run, record) in records
        .select(&[("system", "switchyard"), ("measure", "row_writes")])
        .into_iter()
        .enumerate()
    {
        text.push_str(&format!(
            "\nrow writes, run {}: {} rows for {} mutations\n",
            run + 1,
            record["rows"],
            record["mutations"]
        ));
        for (table, rows) in record["tables"].as_object().into_iter().flatten() {
            text.push_str(&format!("  {table:<40} {rows:>9}\n"));
        }
    }
    text
}

#[cfg(test)]
mod tests;
