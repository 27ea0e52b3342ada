//! NATS going away: the API keeps accepting (Postgres is the source of truth), the
//! relay falls back to the outbox and catches up in order when NATS returns, and a
//! shutdown during the outage does not hang.

use crate::harness;

use std::time::Duration;

use harness::{PrivateNats, TestFleet, add};
use serde_json::json;
use sqlx::PgPool;
use switchyard::fleet::Roles;
use switchyard_bus::Event;
use uuid::Uuid;

/// The seqs of `topology`'s `mutation.enqueued` events, in stream order.
async fn enqueued_seqs_on_stream(
    nats: &PrivateNats,
    fleet: &TestFleet,
    topology: Uuid,
) -> Vec<i64> {
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let mut stream = js.get_stream(&fleet.config.bus.stream).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut seqs = Vec::new();
    for sequence in 1..=last {
        let Ok(message) = stream.get_raw_message(sequence).await else {
            continue;
        };
        let event: Event = serde_json::from_slice(&message.payload).unwrap();
        if event.kind == "mutation.enqueued" && event.data["topology_id"] == json!(topology) {
            seqs.push(event.data["seq"].as_i64().unwrap());
        }
    }
    seqs
}

#[sqlx::test(migrations = "../migrations")]
async fn work_accepted_while_nats_is_down_is_announced_in_order_and_applied(pool: PgPool) {
    let mut nats = PrivateNats::start().await;
    let mut config = harness::isolated_config();
    config.bus.url = nats.url();
    config.bus.publish_timeout = Duration::from_millis(500);
    let fleet = TestFleet::start(&pool, config, Roles::ALL).await;
    let topology = fleet.create_topology("t", json!({"log": []})).await;
    fleet
        .enqueue(
            topology,
            json!([{"op": "add", "path": "/log/-", "value": -1}]),
        )
        .await;
    fleet.settle(Duration::from_secs(10)).await;

    nats.kill();
    for i in 0..20 {
        fleet
            .enqueue(
                topology,
                json!([{"op": "add", "path": "/log/-", "value": i}]),
            )
            .await;
    }
    harness::eventually(Duration::from_secs(10), || async {
        harness::unpublished(&pool).await >= 20
    })
    .await;

    nats.restart().await;
    fleet.settle(Duration::from_secs(30)).await;
    harness::eventually(Duration::from_secs(15), || async {
        harness::unpublished(&pool).await == 0
    })
    .await;
    harness::assert_applied_in_seq_order(&pool, topology, 21).await;
    let seqs = enqueued_seqs_on_stream(&nats, &fleet, topology).await;
    assert_eq!(
        seqs,
        (1..=21).collect::<Vec<_>>(),
        "announcements out of order or repeated"
    );
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn shutdown_during_a_nats_outage_does_not_hang(pool: PgPool) {
    let mut nats = PrivateNats::start().await;
    let mut config = harness::isolated_config();
    config.bus.url = nats.url();
    config.bus.publish_timeout = Duration::from_millis(500);
    config.shutdown.drain_timeout = Duration::from_secs(2);
    let fleet = TestFleet::start(&pool, config, Roles::ALL).await;
    let topology = fleet.create_topology("t", json!({})).await;
    nats.kill();
    for i in 0..5 {
        fleet
            .enqueue(topology, add(&format!("k{i}"), json!(i)))
            .await;
    }
    let stopped = tokio::time::timeout(Duration::from_secs(20), fleet.stop()).await;
    assert!(stopped.is_ok(), "shutdown hung while NATS was down");
    // Nothing is lost: the work waits in Postgres for the next process.
    let pending: i64 = sqlx::query_scalar!(
        r#"select count(*) as "count!" from mutations where status = 'pending'"#
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(pending, 5);
    assert!(harness::unpublished(&pool).await >= 5);
}
