//! A 3-node NATS cluster with the stream and consumers at three replicas
//! (`bus.replicas = 3`): losing the stream's leader mid-load costs an election, during
//! which JetStream takes no publish. The relay retries through it and the workers
//! carry on: every mutation applied once in seq order, every committed event on the
//! stream exactly once. And a durable consumer that disappears is declared again.

use crate::harness;

use std::collections::HashMap;
use std::time::Duration;

use harness::{PrivateNats, TestFleet};
use serde_json::json;
use sqlx::PgPool;
use switchyard::fleet::Roles;
use switchyard_bus::Event;
use switchyard_bus::jetstream::servers;
use uuid::Uuid;

/// How many times each event id is on the stream.
async fn stream_copies(js: &async_nats::jetstream::Context, stream: &str) -> HashMap<Uuid, usize> {
    let mut stream = js.get_stream(stream).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut copies = HashMap::new();
    for sequence in 1..=last {
        let message = stream.get_raw_message(sequence).await.unwrap();
        let event: Event = serde_json::from_slice(&message.payload).unwrap();
        *copies.entry(event.id).or_default() += 1;
    }
    copies
}

/// Every event the outbox holds is published, and on the stream exactly once.
async fn assert_each_committed_event_once(
    pool: &PgPool,
    js: &async_nats::jetstream::Context,
    stream: &str,
) {
    let committed: Vec<Uuid> = sqlx::query_scalar("select id from outbox")
        .fetch_all(pool)
        .await
        .unwrap();
    let copies = stream_copies(js, stream).await;
    let missing = committed
        .iter()
        .filter(|id| !copies.contains_key(id))
        .count();
    let doubled: Vec<_> = copies.iter().filter(|(_, n)| **n > 1).collect();
    assert_eq!(
        missing,
        0,
        "{missing} of {} committed events never reached the stream",
        committed.len()
    );
    assert!(
        doubled.is_empty(),
        "events on the stream more than once: {doubled:?}"
    );
    assert_eq!(
        copies.len(),
        committed.len(),
        "the stream holds events nobody committed"
    );
}

/// The node (`n1`…) leading `stream`, once it has a leader.
async fn stream_leader(js: &async_nats::jetstream::Context, stream: &str) -> String {
    for _ in 0..100 {
        if let Ok(mut stream) = js.get_stream(stream).await
            && let Ok(info) = stream.info().await
            && let Some(leader) = info.cluster.as_ref().and_then(|c| c.leader.clone())
        {
            return leader;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("stream {stream} has no leader");
}

#[sqlx::test(migrations = "../migrations")]
async fn losing_the_stream_leader_mid_load_loses_and_doubles_nothing(pool: PgPool) {
    let mut nodes = PrivateNats::cluster(3).await;
    let mut config = harness::isolated_config();
    config.bus.url = PrivateNats::cluster_url(&nodes);
    config.bus.replicas = 3;
    config.bus.publish_timeout = Duration::from_secs(2);
    let fleet = TestFleet::start(&pool, config, Roles::ALL).await;
    let stream = fleet.config.bus.stream.clone();
    let js = async_nats::jetstream::new(
        async_nats::connect(servers(&PrivateNats::cluster_url(&nodes)).unwrap())
            .await
            .unwrap(),
    );
    let info = js
        .get_stream(&stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(
        info.config.num_replicas, 3,
        "bus.replicas sets the stream's replicas"
    );
    let consumer = js
        .get_stream(&stream)
        .await
        .unwrap()
        .consumer_info("mutator")
        .await
        .unwrap()
        .clone();
    assert_eq!(consumer.config.num_replicas, 3, "and the consumers'");

    let mut topologies = Vec::new();
    for i in 0..4 {
        topologies.push(
            fleet
                .create_topology(&format!("t{i}"), json!({"log": []}))
                .await,
        );
    }
    let enqueue_round = |round: i64| {
        let fleet = &fleet;
        let topologies = &topologies;
        async move {
            for topology in topologies {
                fleet
                    .enqueue(
                        *topology,
                        json!([{"op": "add", "path": "/log/-", "value": round}]),
                    )
                    .await;
            }
        }
    };
    for round in 0..10 {
        enqueue_round(round).await;
    }

    // The leader goes; the API keeps accepting while the others elect a new one.
    let leader = stream_leader(&js, &stream).await;
    let index: usize = leader.trim_start_matches('n').parse::<usize>().unwrap() - 1;
    nodes[index].kill();
    for round in 10..40 {
        enqueue_round(round).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    nodes[index].restart().await;
    for round in 40..50 {
        enqueue_round(round).await;
    }

    fleet.settle(Duration::from_secs(90)).await;
    harness::eventually(Duration::from_secs(60), || async {
        harness::unpublished(&pool).await == 0
    })
    .await;
    for topology in &topologies {
        harness::assert_applied_in_seq_order(&pool, *topology, 50).await;
    }
    let js = async_nats::jetstream::new(
        async_nats::connect(servers(&PrivateNats::cluster_url(&nodes)).unwrap())
            .await
            .unwrap(),
    );
    assert_each_committed_event_once(&pool, &js, &stream).await;
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_deleted_durable_consumer_is_declared_again_and_work_goes_on(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let topology = fleet.create_topology("t", json!({"log": []})).await;
    fleet
        .enqueue(
            topology,
            json!([{"op": "add", "path": "/log/-", "value": 1}]),
        )
        .await;
    fleet.settle(Duration::from_secs(10)).await;

    let js = fleet.jetstream().await;
    let stream = js.get_stream(&fleet.config.bus.stream).await.unwrap();
    assert!(stream.delete_consumer("mutator").await.unwrap().success);
    for value in 2..=5 {
        fleet
            .enqueue(
                topology,
                json!([{"op": "add", "path": "/log/-", "value": value}]),
            )
            .await;
    }
    fleet.settle(Duration::from_secs(30)).await;
    harness::assert_applied_in_seq_order(&pool, topology, 5).await;
    harness::eventually(Duration::from_secs(10), || async {
        stream.consumer_info("mutator").await.is_ok()
    })
    .await;
    fleet.stop().await;
}
