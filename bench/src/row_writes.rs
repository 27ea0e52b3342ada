//! `--row-writes`: the Postgres row writes a mutation costs, from the fleet database's
//! `pg_stat_user_tables` (inserted + updated + deleted rows, per table) read before and
//! after the throughput run.
//!
//! Postgres gathers these counters per backend and publishes them asynchronously: a
//! backend that goes idle less than a second after its last flush waits
//! `PGSTAT_IDLE_INTERVAL` (10 s) before flushing again, and
//! `pg_stat_force_next_flush()` only reaches the calling backend, not the fleet's. So
//! each reading waits [`SETTLE`] first. Whatever the fleet writes in the background
//! meanwhile (leases, heartbeats) is counted too: it is part of what the load costs.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// How long a reading waits for every backend's counters to be published.
pub const SETTLE: Duration = Duration::from_secs(11);

/// Rows written per table (`schema.table`).
pub type TableWrites = BTreeMap<String, i64>;

/// A connection to the fleet's database.
pub async fn connect(url: &str) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .context("connecting to --database-url for --row-writes")
}

/// Waits [`SETTLE`], then reads the rows written so far, per table.
pub async fn read(pool: &PgPool) -> anyhow::Result<TableWrites> {
    tokio::time::sleep(SETTLE).await;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "select schemaname || '.' || relname, \
                (n_tup_ins + n_tup_upd + n_tup_del)::bigint \
         from pg_stat_user_tables",
    )
    .fetch_all(pool)
    .await
    .context("reading pg_stat_user_tables")?;
    Ok(rows.into_iter().collect())
}

/// The tables written between two readings, with how many rows each.
pub fn delta(before: &TableWrites, after: &TableWrites) -> TableWrites {
    after
        .iter()
        .map(|(table, rows)| {
            (
                table.clone(),
                rows - before.get(table).copied().unwrap_or(0),
            )
        })
        .filter(|(_, rows)| *rows != 0)
        .collect()
}

/// The `row_writes` record: total, per mutation, and per table.
pub fn record(delta: &TableWrites, mutations: usize) -> Value {
    let rows: i64 = delta.values().sum();
    json!({
        "mutations": mutations,
        "rows": rows,
        "per_mutation": (rows as f64 / mutations.max(1) as f64 * 100.0).round() / 100.0,
        "tables": delta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_keeps_written_tables_and_new_ones() {
        let before = TableWrites::from([("public.a".into(), 10), ("public.b".into(), 5)]);
        let after = TableWrites::from([
            ("public.a".into(), 30),
            ("public.b".into(), 5),
            ("public.c".into(), 4),
        ]);
        let delta = delta(&before, &after);
        assert_eq!(
            delta,
            TableWrites::from([("public.a".into(), 20), ("public.c".into(), 4)])
        );
        assert_eq!(record(&delta, 8)["per_mutation"], json!(3.0));
    }
}
