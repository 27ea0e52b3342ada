//! The checker: reads Postgres (and, through [`super::stream`], the stream) after a
//! scenario and counts every way a guarantee could have been broken.
//!
//! - **Lost**: an accepted mutation missing from `mutations`, or still pending when
//!   the wait ran out.
//! - **Exactly once**: every finished mutation has one `mutation_audit` row (unique per
//!   mutation) whose outcome is the mutation's status, and one outcome event
//!   (`mutation.applied|failed`) on the stream.
//! - **Per-topology order**: a topology's audit rows, in the order they were written,
//!   are seqs 1, 2, 3… with each version following on from the last (as
//!   `assert_applied_in_seq_order` in cli/tests/e2e/harness checks), and its document's
//!   `log` holds the applied mutations' values in seq order.
//! - **Every committed event once on the stream**: each event id in `outbox_commits`'s
//!   arrays is a message (`Nats-Msg-Id`) exactly once, and no message is an event that
//!   was never committed.
//!
//! Every wait tolerates a database that is down (a scenario may have just restarted it).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::stream::StreamEntry;

/// A small pool that connects when first used, so a database still starting is waited for.
pub fn pool(database_url: &str) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy(database_url)
        .context("DATABASE_URL")
}

/// Retries `query` every 500 ms until it succeeds and `done` holds for its answer, or
/// `timeout` passes; returns the last answer.
async fn poll<T, F, Fut>(timeout: Duration, mut query: F, done: impl Fn(&T) -> bool) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        match query().await {
            Ok(answer) if done(&answer) => return Some(answer),
            Ok(answer) => last = Some(answer),
            Err(error) => eprintln!("chaos: database not answering yet ({error}); retrying"),
        }
        if Instant::now() > deadline {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Accepted mutations not found, and found but still pending after `timeout`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Finish {
    pub missing: u64,
    pub unfinished: u64,
}

/// Waits until every accepted mutation is applied or failed (or `timeout` passes).
pub async fn await_finished(pool: &PgPool, accepted: &[Uuid], timeout: Duration) -> Finish {
    let count = |_: ()| {
        sqlx::query_as::<_, (i64, i64)>(
            "select count(*), count(*) filter (where status <> 'pending') \
             from mutations where id = any($1)",
        )
        .bind(accepted)
        .fetch_one(pool)
    };
    let total = accepted.len() as i64;
    let answer = poll(timeout, || count(()), |(_, finished)| *finished == total).await;
    let (found, finished) = answer.unwrap_or((0, 0));
    Finish {
        missing: (total - found).max(0) as u64,
        unfinished: (found - finished).max(0) as u64,
    }
}

/// Waits until the relay has published every committed event; returns the commits
/// still unpublished when `timeout` passed (0 when it did not).
pub async fn await_published(pool: &PgPool, timeout: Duration) -> u64 {
    let query = || {
        sqlx::query_scalar::<_, i64>(
            "select count(*) from outbox_commits where published_at is null",
        )
        .fetch_one(pool)
    };
    poll(timeout, query, |left| *left == 0)
        .await
        .map_or(u64::MAX, |n| n as u64)
}

/// Exactly-once figures from `mutation_audit` for the accepted mutations.
pub async fn audit(pool: &PgPool, accepted: &[Uuid]) -> anyhow::Result<Value> {
    let (without_audit, mismatched): (i64, i64) = sqlx::query_as(
        "select count(*) filter (where a.mutation_id is null), \
                count(*) filter (where a.outcome <> m.status) \
         from mutations m left join mutation_audit a on a.mutation_id = m.id \
         where m.id = any($1) and m.status <> 'pending'",
    )
    .bind(accepted)
    .fetch_one(pool)
    .await?;
    let (rows, distinct): (i64, i64) = sqlx::query_as(
        "select count(*), count(distinct mutation_id) from mutation_audit where mutation_id = any($1)",
    )
    .bind(accepted)
    .fetch_one(pool)
    .await?;
    let failed: i64 = sqlx::query_scalar(
        "select count(*) from mutations where id = any($1) and status = 'failed'",
    )
    .bind(accepted)
    .fetch_one(pool)
    .await?;
    Ok(json!({
        "finished_without_audit": without_audit,
        "audit_outcome_differs": mismatched,
        "audit_rows_doubled": rows - distinct,
        "failed_mutations": failed,
    }))
}

/// One audit row, as the order check reads it.
struct AuditRow {
    topology: Uuid,
    seq: i64,
    applied: bool,
    before: i64,
    after: i64,
}

/// Per-topology `seq` order of `topologies`' audit rows and documents; the ids of
/// those out of order (at most 10 named) and their count.
pub async fn seq_order(pool: &PgPool, topologies: &[Uuid]) -> anyhow::Result<Value> {
    let rows: Vec<AuditRow> = sqlx::query(
        "select topology_id, seq, outcome = 'applied' as applied, before_version, after_version \
         from mutation_audit where topology_id = any($1) order by topology_id, id",
    )
    .bind(topologies)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|row| AuditRow {
        topology: row.get(0),
        seq: row.get(1),
        applied: row.get(2),
        before: row.get(3),
        after: row.get(4),
    })
    .collect();
    let out_of_order = audit_out_of_order(&rows);
    let documents = documents_out_of_order(pool, topologies).await?;
    let mut named: Vec<String> = out_of_order
        .iter()
        .chain(&documents)
        .map(Uuid::to_string)
        .collect();
    named.sort();
    named.dedup();
    let count = named.len();
    named.truncate(10);
    Ok(json!({
        "topologies": topologies.len(),
        "audit_rows": rows.len(),
        "audit_out_of_order": out_of_order.len(),
        "documents_out_of_order": documents.len(),
        "out_of_order": count,
        "examples": named,
    }))
}

/// Topologies whose audit rows (sorted by topology, then as written) are not seqs 1,
/// 2, 3… each starting from the version the last one left (+1 when applied).
fn audit_out_of_order(rows: &[AuditRow]) -> HashSet<Uuid> {
    let mut out_of_order = HashSet::new();
    let mut last: Option<(Uuid, i64, i64)> = None; // topology, seq, after_version
    for row in rows {
        let (expected_seq, expected_before) = match last {
            Some((topology, seq, after)) if topology == row.topology => (seq + 1, after),
            _ => (1, 0),
        };
        let expected_after = row.before + i64::from(row.applied);
        if row.seq != expected_seq || row.before != expected_before || row.after != expected_after {
            out_of_order.insert(row.topology);
        }
        last = Some((row.topology, row.seq, row.after));
    }
    out_of_order
}

/// Topologies whose document's `log` is not their applied mutations' values in seq
/// order, or whose version is not the number applied.
async fn documents_out_of_order(pool: &PgPool, topologies: &[Uuid]) -> anyhow::Result<Vec<Uuid>> {
    let documents: Vec<(Uuid, i64, Option<Value>)> =
        sqlx::query_as("select id, version, document->'log' from topologies where id = any($1)")
            .bind(topologies)
            .fetch_all(pool)
            .await?;
    let applied: Vec<(Uuid, Option<Value>)> = sqlx::query_as(
        "select topology_id, ops->0->'value' from mutations \
         where topology_id = any($1) and status = 'applied' order by topology_id, seq",
    )
    .bind(topologies)
    .fetch_all(pool)
    .await?;
    let mut by_topology: HashMap<Uuid, Vec<Value>> = HashMap::new();
    for (topology, value) in applied {
        by_topology
            .entry(topology)
            .or_default()
            .push(value.unwrap_or(Value::Null));
    }
    Ok(documents
        .into_iter()
        .filter(|(id, version, log)| {
            let values = by_topology.remove(id).unwrap_or_default();
            *version != values.len() as i64 || log.as_ref() != Some(&Value::Array(values))
        })
        .map(|(id, _, _)| id)
        .collect())
}

/// Throughput of the accepted mutations: from the first one's enqueue to the last
/// one's outcome, both by the database's clock.
pub async fn throughput(pool: &PgPool, accepted: &[Uuid]) -> anyhow::Result<Value> {
    let (seconds,): (Option<f64>,) = sqlx::query_as(
        "select extract(epoch from max(finished_at) - min(created_at))::float8 \
         from mutations where id = any($1)",
    )
    .bind(accepted)
    .fetch_one(pool)
    .await?;
    let seconds = seconds.unwrap_or(0.0);
    let rate = if seconds > 0.0 {
        accepted.len() as f64 / seconds
    } else {
        0.0
    };
    Ok(json!({
        "mutations": accepted.len(),
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "per_second": (rate * 10.0).round() / 10.0,
    }))
}

/// Accepted mutations applied or failed per second within `[start, end)` (Unix
/// seconds), by `finished_at`.
pub async fn finished_per_second(
    pool: &PgPool,
    accepted: &[Uuid],
    start: f64,
    end: f64,
) -> anyhow::Result<f64> {
    let finished: i64 = sqlx::query_scalar(
        "select count(*) from mutations where id = any($1) \
         and finished_at >= to_timestamp($2) and finished_at < to_timestamp($3)",
    )
    .bind(accepted)
    .bind(start)
    .bind(end)
    .fetch_one(pool)
    .await?;
    let rate = finished as f64 / (end - start).max(1e-3);
    Ok((rate * 10.0).round() / 10.0)
}

/// Every committed event: its id and logical subject, from `outbox_commits`.
pub async fn committed_events(pool: &PgPool) -> anyhow::Result<Vec<(Uuid, String)>> {
    Ok(sqlx::query_as(
        "select (e->>'id')::uuid, e->>'subject' \
         from outbox_commits c cross join lateral json_array_elements(c.events) e",
    )
    .fetch_all(pool)
    .await?)
}

/// Committed events against the stream's messages, and outcome events per accepted
/// mutation.
pub fn compare_stream(
    committed: &[(Uuid, String)],
    entries: &[StreamEntry],
    accepted: &[Uuid],
) -> Value {
    let mut on_stream: HashMap<Uuid, u32> = HashMap::with_capacity(entries.len());
    let mut outcomes: HashMap<Uuid, u32> = HashMap::new();
    for entry in entries {
        if let Some(id) = entry.event_id {
            *on_stream.entry(id).or_default() += 1;
        }
        if let Some(mutation) = entry.outcome_of {
            *outcomes.entry(mutation).or_default() += 1;
        }
    }
    let committed_ids: HashSet<Uuid> = committed.iter().map(|(id, _)| *id).collect();
    let missing = committed_ids
        .iter()
        .filter(|id| !on_stream.contains_key(id))
        .count();
    let doubled = on_stream.values().filter(|n| **n > 1).count();
    let uncommitted = on_stream
        .keys()
        .filter(|id| !committed_ids.contains(id))
        .count();
    let without_id = entries.iter().filter(|e| e.event_id.is_none()).count();
    let outcome_doubled = accepted
        .iter()
        .filter(|id| outcomes.get(id).is_some_and(|n| *n > 1))
        .count();
    let outcome_missing = accepted
        .iter()
        .filter(|id| !outcomes.contains_key(id))
        .count();
    json!({
        "committed_events": committed_ids.len(),
        "stream_messages": entries.len(),
        "missing_from_stream": missing,
        "doubled_on_stream": doubled,
        "never_committed": uncommitted + without_id,
        "outcome_events_doubled": outcome_doubled,
        "outcome_events_missing": outcome_missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(topology: Uuid, seq: i64, applied: bool, before: i64) -> AuditRow {
        let after = before + i64::from(applied);
        AuditRow {
            topology,
            seq,
            applied,
            before,
            after,
        }
    }

    #[test]
    fn seq_order_follows_seqs_and_versions() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let good = [
            row(a, 1, true, 0),
            row(a, 2, false, 1),
            row(a, 3, true, 1),
            row(b, 1, true, 0),
        ];
        assert!(audit_out_of_order(&good).is_empty());
        let swapped = [row(a, 2, true, 0), row(a, 1, true, 1), row(b, 1, true, 0)];
        assert_eq!(audit_out_of_order(&swapped), HashSet::from([a]));
        let gap = [row(a, 1, true, 0), row(a, 3, true, 1)];
        assert_eq!(audit_out_of_order(&gap), HashSet::from([a]));
        let applied_twice = [row(a, 1, true, 0), row(a, 2, true, 0)];
        assert_eq!(audit_out_of_order(&applied_twice), HashSet::from([a]));
    }

    fn entry(seq: u64, event: Uuid, outcome_of: Option<Uuid>) -> StreamEntry {
        StreamEntry {
            seq,
            event_id: Some(event),
            subject: String::new(),
            outcome_of,
        }
    }

    #[test]
    fn stream_comparison_counts_missing_doubled_and_uncommitted() {
        let (e1, e2, e3, stray) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let (m1, m2) = (Uuid::now_v7(), Uuid::now_v7());
        let committed: Vec<(Uuid, String)> = [e1, e2, e3].map(|e| (e, String::new())).to_vec();
        let entries = [
            entry(1, e1, Some(m1)),
            entry(2, e1, Some(m1)),
            entry(3, e2, None),
            entry(4, stray, None),
        ];
        let figures = compare_stream(&committed, &entries, &[m1, m2]);
        assert_eq!(figures["missing_from_stream"], 1);
        assert_eq!(figures["doubled_on_stream"], 1);
        assert_eq!(figures["never_committed"], 1);
        assert_eq!(figures["outcome_events_doubled"], 1);
        assert_eq!(figures["outcome_events_missing"], 1);
    }
}
