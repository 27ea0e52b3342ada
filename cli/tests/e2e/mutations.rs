//! The mutation guarantees: per-topology order across several mutators, exactly-once
//! application, failure isolation, idempotent retries and optimistic concurrency.

use crate::harness;

use std::collections::HashMap;
use std::time::Duration;

use futures::{StreamExt, stream};
use harness::{TestFleet, add};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use switchyard_bus::Event;
use switchyard_domain::status::MutationStatus;
use uuid::Uuid;

#[sqlx::test(migrations = "../migrations")]
async fn a_thousand_mutations_on_three_mutators_apply_once_in_seq_order(pool: PgPool) {
    let mut fleet = TestFleet::up(&pool).await;
    fleet.add_mutators(2).await;
    let mut topologies = Vec::new();
    for i in 0..10 {
        topologies.push(
            fleet
                .create_topology(&format!("t{i}"), json!({"log": []}))
                .await,
        );
    }
    // 1,000 appends, 100 per topology, enqueued 32 at a time in interleaved order.
    let requests = (0..1000).map(|i| (topologies[i % 10], i));
    let fleet_ref = &fleet;
    let accepted: Vec<Uuid> = stream::iter(requests)
        .map(|(topology, i)| async move {
            fleet_ref
                .enqueue(
                    topology,
                    json!([{"op": "add", "path": "/log/-", "value": i}]),
                )
                .await
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(accepted.len(), 1000);
    fleet.settle(Duration::from_secs(60)).await;

    let applied: i64 = sqlx::query_scalar!(
        r#"select count(*) as "count!" from mutations where status = 'applied'"#
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(applied, 1000);
    for topology in &topologies {
        harness::assert_applied_in_seq_order(&pool, *topology, 100).await;
    }
    // Every outcome was announced, once: the stream deduplicated any re-publish.
    harness::eventually(Duration::from_secs(10), || async {
        fleet.stream_count("topology.*.mutation.applied").await == 1000
    })
    .await;
    assert_eq!(
        fleet.stream_count("topology.*.mutation.enqueued").await,
        1000
    );
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn the_same_enqueued_event_delivered_again_changes_nothing(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let topology = fleet.create_topology("t", json!({"n": 0})).await;
    let mutation = fleet
        .enqueue(
            topology,
            json!([{"op": "replace", "path": "/n", "value": 1}]),
        )
        .await;
    fleet.settle(Duration::from_secs(10)).await;
    let before = snapshot(&pool, topology).await;

    let row = sqlx::query_scalar!(
        r#"select event as "event!: sqlx::types::Json<Event>" from outbox where subject like '%.mutation.enqueued'"#
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let event = row.0;
    let js = fleet.jetstream().await;
    let subject = format!("{}.{}", fleet.config.bus.subject_prefix, event.subject);
    let payload = serde_json::to_vec(&event).unwrap();
    // Same Nats-Msg-Id: the stream drops it. A new id: it is delivered again.
    for msg_id in [
        event.id.to_string(),
        Uuid::now_v7().to_string(),
        Uuid::now_v7().to_string(),
    ] {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id.as_str());
        js.publish_with_headers(subject.clone(), headers, payload.clone().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    assert_eq!(fleet.stream_count("topology.*.mutation.enqueued").await, 3);
    fleet
        .consumer_idle("mutator", Duration::from_secs(10))
        .await;
    assert_eq!(snapshot(&pool, topology).await, before);
    let (_, body) = fleet.get(&format!("/mutations/{mutation}")).await;
    assert_eq!(body["applied_version"], 1);
    fleet.stop().await;
}

/// (version, document, audit rows, outbox rows) of a topology.
async fn snapshot(pool: &PgPool, topology: Uuid) -> (i64, Value, i64, i64) {
    let row = sqlx::query!(
        r#"select version, document,
                (select count(*) from mutation_audit where topology_id = $1) as "audit!",
                (select count(*) from outbox) as "outbox!"
         from topologies where id = $1"#,
        topology,
    )
    .fetch_one(pool)
    .await
    .unwrap();
    (row.version, row.document, row.audit, row.outbox)
}

#[sqlx::test(migrations = "../migrations")]
async fn a_failing_mutation_does_not_block_the_next(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let topology = fleet.create_topology("t", json!({"a": 1})).await;
    let first = fleet.enqueue(topology, add("b", json!(2))).await;
    let failing = fleet
        .enqueue(topology, json!([{"op": "replace", "path": "/a", "value": 9}, {"op": "test", "path": "/a", "value": 1}]))
        .await;
    let last = fleet.enqueue(topology, add("c", json!(3))).await;
    fleet.settle(Duration::from_secs(10)).await;

    let status = |id: Uuid| {
        let fleet = &fleet;
        async move { fleet.get(&format!("/mutations/{id}")).await.1 }
    };
    assert_eq!(status(first).await["status"], "applied");
    let failed = status(failing).await;
    assert_eq!(failed["status"], "failed");
    assert!(failed["error"].as_str().unwrap().contains("/a"), "{failed}");
    assert!(failed["applied_version"].is_null());
    assert_eq!(status(last).await["applied_version"], 2);
    let (_, doc) = fleet.get(&format!("/topologies/{topology}")).await;
    // The failing mutation's first op (replace) was not applied either: all or nothing.
    assert_eq!(doc["document"], json!({"a": 1, "b": 2, "c": 3}));
    let outcomes = sqlx::query!(
        r#"select outcome as "outcome: MutationStatus", error from mutation_audit where topology_id = $1 order by id"#,
        topology,
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        outcomes.iter().map(|o| o.outcome).collect::<Vec<_>>(),
        [
            MutationStatus::Applied,
            MutationStatus::Failed,
            MutationStatus::Applied
        ]
    );
    harness::eventually(Duration::from_secs(10), || async {
        fleet
            .stream_count(&format!("topology.{topology}.mutation.failed"))
            .await
            == 1
    })
    .await;
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn idempotency_key_replays_and_refuses_a_different_body(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let topology = fleet.create_topology("t", json!({})).await;
    let path = fleet.url(&format!("/topologies/{topology}/mutations"));
    let send = |body: Value| {
        let request = fleet
            .http
            .post(&path)
            .header("Idempotency-Key", "order-42")
            .json(&body);
        async move { harness::read(request.send().await.unwrap()).await }
    };
    let body = json!({"ops": [{"op": "add", "path": "/x", "value": 1}]});
    // Several first attempts race: exactly one creates, the others get it back.
    let racing = futures::future::join_all((0..6).map(|_| send(body.clone()))).await;
    let created: Vec<&Value> = racing
        .iter()
        .filter(|(s, _)| *s == StatusCode::ACCEPTED)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created.len(), 1, "{racing:?}");
    let first = created[0].clone();
    for (status, retry) in &racing {
        assert!(
            *status == StatusCode::ACCEPTED || *status == StatusCode::OK,
            "{status}"
        );
        assert_eq!(retry["id"], first["id"]);
    }
    let (status, retry) = send(body.clone()).await;
    assert_eq!(
        (status, retry["id"].clone()),
        (StatusCode::OK, first["id"].clone())
    );
    let (status, conflict) = send(json!({"ops": [{"op": "add", "path": "/x", "value": 2}]})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        conflict["error"]["message"]
            .as_str()
            .unwrap()
            .contains("different body"),
        "{conflict}"
    );
    let (status, _) = harness::read(
        fleet
            .http
            .post(&path)
            .header("Idempotency-Key", "")
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let row = sqlx::query!(
        r#"select (select count(*) from mutations) as "mutations!",
                (select count(*) from outbox where subject like '%.mutation.enqueued') as "enqueued!""#,
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let counts = (row.mutations, row.enqueued);
    assert_eq!(counts, (1, 1));
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn if_version_conflict_fails_with_a_readable_error(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let topology = fleet.create_topology("t", json!({})).await;
    let path = format!("/topologies/{topology}/mutations");
    let mut ids = HashMap::new();
    for (name, if_version) in [("first", 0), ("stale", 0), ("current", 1)] {
        let (status, body) = fleet
            .post(&path, json!({"ops": [{"op": "add", "path": format!("/{name}"), "value": true}], "if_version": if_version}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        ids.insert(name, body["id"].as_str().unwrap().to_owned());
    }
    fleet.settle(Duration::from_secs(10)).await;
    let (_, stale) = fleet.get(&format!("/mutations/{}", ids["stale"])).await;
    assert_eq!(stale["status"], "failed");
    assert_eq!(
        stale["error"],
        "version conflict: if_version is 0 but the topology is at version 1"
    );
    let (_, current) = fleet.get(&format!("/mutations/{}", ids["current"])).await;
    assert_eq!(current["applied_version"], 2);
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_topologys_mutations_page_oldest_or_newest_first(pool: PgPool) {
    let fleet = TestFleet::api_only(&pool).await;
    let topology = fleet.create_topology("t", json!({"n": 0})).await;
    for n in 1..=5 {
        fleet
            .enqueue(
                topology,
                json!([{"op": "replace", "path": "/n", "value": n}]),
            )
            .await;
    }
    for (order, want) in [("asc", [1, 2, 3, 4, 5]), ("desc", [5, 4, 3, 2, 1])] {
        let mut seqs = Vec::new();
        let mut cursor = String::new();
        loop {
            let (status, page) = fleet
                .get(&format!(
                    "/topologies/{topology}/mutations?order={order}&limit=2{cursor}"
                ))
                .await;
            assert_eq!(status, StatusCode::OK, "{page}");
            seqs.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["seq"].as_i64().unwrap()),
            );
            match page["next_cursor"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => break,
            }
        }
        assert_eq!(seqs, want, "order={order}");
    }
    let (status, body) = fleet
        .get(&format!("/topologies/{topology}/mutations?order=sideways"))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    fleet.stop().await;
}
