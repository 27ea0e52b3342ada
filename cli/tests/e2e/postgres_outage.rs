//! Postgres connections lost under load: while every connection of the test database
//! is terminated again and again (`pg_terminate_backend`), enqueues are answered 2xx
//! or 503 with `Retry-After`, never 500; retries with the same key converge; and every
//! accepted mutation is applied once the connections stay up.

use crate::harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use harness::TestFleet;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

const ENQUEUES: usize = 1000;

/// Terminates every other connection to the test's database every `every` until
/// `stop` is set; returns how many it terminated.
async fn keep_terminating(pool: PgPool, stop: Arc<AtomicBool>, every: Duration) -> i64 {
    let mut terminated = 0;
    while !stop.load(Ordering::Relaxed) {
        // Its own connection is among the terminated ones on the next round, so the
        // pool hands it a new one; a failure here is that, and is simply retried.
        if let Ok(n) = sqlx::query_scalar!(
            r#"select count(pg_terminate_backend(pid)) as "terminated!" from pg_stat_activity
             where datname = current_database() and pid <> pg_backend_pid()"#,
        )
        .fetch_one(&pool)
        .await
        {
            terminated += n;
        }
        tokio::time::sleep(every).await;
    }
    terminated
}

/// Enqueues mutation `i` with its own key until it is accepted; returns the statuses
/// of every attempt, and panics on a 503 without `Retry-After`.
async fn enqueue_until_accepted(fleet: &TestFleet, topology: Uuid, i: usize) -> Vec<StatusCode> {
    let mut statuses = Vec::new();
    loop {
        let sent = fleet
            .http
            .post(fleet.url(&format!("/topologies/{topology}/mutations")))
            .header("idempotency-key", format!("m-{i}"))
            .json(&json!({"ops": [{"op": "add", "path": "/log/-", "value": i}]}))
            .send()
            .await
            .expect("the API answers");
        let status = sent.status();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(
                sent.headers().contains_key("retry-after"),
                "a 503 without Retry-After"
            );
        }
        let body: serde_json::Value = sent.json().await.unwrap_or_default();
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            panic!("a lost connection answered 500: {body}");
        }
        statuses.push(status);
        if status.is_success() {
            return statuses;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn lost_connections_are_503s_with_retry_after_and_nothing_is_lost(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let mut topologies = Vec::new();
    for i in 0..10 {
        topologies.push(
            fleet
                .create_topology(&format!("t{i}"), json!({"log": []}))
                .await,
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let terminator = tokio::spawn(keep_terminating(
        pool.clone(),
        stop.clone(),
        Duration::from_millis(25),
    ));
    let attempts: Vec<Vec<StatusCode>> = futures::stream::iter(0..ENQUEUES)
        .map(|i| enqueue_until_accepted(&fleet, topologies[i % topologies.len()], i))
        .buffer_unordered(16)
        .collect()
        .await;
    stop.store(true, Ordering::Relaxed);
    let terminated = terminator.await.unwrap();

    let unavailable = attempts
        .iter()
        .flatten()
        .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    println!(
        "{terminated} connections terminated; {unavailable} answers were 503 over {} requests",
        attempts.iter().map(Vec::len).sum::<usize>()
    );
    assert!(terminated > 0, "the outage did not happen");
    assert!(unavailable > 0, "no request met a lost connection");

    // Once connections stay up, every accepted mutation applies, each exactly once.
    fleet.settle(Duration::from_secs(120)).await;
    let row = sqlx::query!(
        r#"select count(*) as "mutations!", count(*) filter (where status = 'applied') as "applied!" from mutations"#,
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let (mutations, applied) = (row.mutations, row.applied);
    assert_eq!((mutations, applied), (ENQUEUES as i64, ENQUEUES as i64));
    for topology in &topologies {
        let count = (ENQUEUES / topologies.len()) as i64;
        harness::assert_applied_in_seq_order(&pool, *topology, count).await;
    }
    fleet.stop().await;
}
