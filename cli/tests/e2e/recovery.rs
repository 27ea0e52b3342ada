//! Crash safety: nothing accepted is lost and nothing is applied twice, whether the
//! fast path is lost, a message is lost, a process shuts down, or a worker is killed.

use crate::harness;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, stream};
use harness::{Process, TestFleet, add};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use switchyard::fleet::Roles;
use switchyard_api::AppState;
use switchyard_bus::Doorbell;
use switchyard_domain::status::MutationStatus;
use tokio::sync::Mutex;
use uuid::Uuid;

const WORKERS_ONLY: Roles = Roles::WORKERS;
const API_ONLY: Roles = Roles {
    api: true,
    ..Roles::NONE
};

#[sqlx::test(migrations = "../migrations")]
async fn a_mutation_whose_outbox_row_was_never_published_is_applied_after_the_sweep(pool: PgPool) {
    // An API whose relay is gone: it commits, rings a doorbell nobody answers.
    let config = harness::isolated_config();
    let (doorbell, receiver) = Doorbell::channel(1);
    drop(receiver);
    let api_pool = harness::own_pool(&pool).await;
    let bus = switchyard_bus::Bus::connect(&config.bus, "test")
        .await
        .unwrap();
    let state = AppState::new(
        api_pool.clone(),
        &bus,
        doorbell,
        config.api_settings(),
        config.auth.secret.as_deref().unwrap().as_bytes(),
        Default::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/api/v1", listener.local_addr().unwrap());
    let api_stop = tokio_util::sync::CancellationToken::new();
    let api = tokio::spawn(
        axum::serve(listener, switchyard_api::router(state))
            .with_graceful_shutdown(api_stop.clone().cancelled_owned())
            .into_future(),
    );
    let http = harness::client_with(&harness::token(&config, switchyard_api::auth::Role::Admin));
    let (_, topology) = harness::read(
        http.post(format!("{base}/topologies"))
            .json(&json!({"name": "t"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let response = http
        .post(format!(
            "{base}/topologies/{}/mutations",
            topology["id"].as_str().unwrap()
        ))
        .json(&json!({"ops": [{"op": "add", "path": "/swept", "value": true}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    // Creation, enqueued, and the idle→pending status: all committed, none published.
    assert_eq!(
        harness::unpublished(&pool).await,
        3,
        "the events should be stuck in the outbox"
    );

    // A worker process comes up: its relay's sweep publishes the row, its mutator applies it.
    let fleet = TestFleet::start(&pool, config, WORKERS_ONLY).await;
    fleet.settle(Duration::from_secs(15)).await;
    let document: Value = sqlx::query_scalar!("select document from topologies")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(document, json!({"swept": true}));
    harness::eventually(Duration::from_secs(10), || async {
        harness::unpublished(&pool).await == 0
    })
    .await;
    fleet.stop().await;
    api_stop.cancel();
    api.await.unwrap().unwrap();
    api_pool.close().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_lost_announcement_is_reannounced_by_the_reconciler(pool: PgPool) {
    let mut config = harness::isolated_config();
    config.reconciler.reannounce_after = Duration::from_secs(1);
    let mut fleet = TestFleet::start(&pool, config, API_ONLY).await;
    let topology = fleet.create_topology("t", json!({})).await;
    let mutation = fleet.enqueue(topology, add("late", json!(true))).await;
    harness::eventually(Duration::from_secs(10), || async {
        harness::unpublished(&pool).await == 0
    })
    .await;
    // The announcement is lost from the bus before any mutator saw it.
    let js = fleet.jetstream().await;
    js.get_stream(&fleet.config.bus.stream)
        .await
        .unwrap()
        .purge()
        .await
        .unwrap();

    fleet.add_mutators(1).await;
    fleet.settle(Duration::from_secs(15)).await;
    let (_, body) = fleet.get(&format!("/mutations/{mutation}")).await;
    assert_eq!(body["status"], "applied");
    let reannounced: i64 = sqlx::query_scalar!(
        r#"select count(*) as "count!" from outbox where (event->'data'->>'reannounced')::boolean"#,
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(reannounced >= 1);
    fleet.stop().await;
}

/// Enqueues from `clients` concurrent clients until the server stops answering 2xx,
/// recording accepted mutation ids in `accepted`.
async fn enqueue_until_refused(
    http: reqwest::Client,
    base: &str,
    topologies: &[String],
    clients: usize,
    accepted: Arc<Mutex<Vec<Uuid>>>,
) {
    let tasks = (0..clients).map(|client| {
        let (accepted, base, topologies) = (accepted.clone(), base.to_owned(), topologies.to_vec());
        let http = http.clone();
        tokio::spawn(async move {
            for i in 0..500 {
                let topology = &topologies[(client + i) % topologies.len()];
                let request = http
                    .post(format!("{base}/api/v1/topologies/{topology}/mutations"))
                    .json(&json!({"ops": [{"op": "add", "path": "/log/-", "value": i}]}));
                match request.send().await {
                    Ok(r) if r.status() == StatusCode::ACCEPTED => {
                        let body: Value = r.json().await.unwrap();
                        accepted
                            .lock()
                            .await
                            .push(body["id"].as_str().unwrap().parse().unwrap());
                    }
                    _ => return,
                }
            }
        })
    });
    futures::future::join_all(tasks).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn graceful_shutdown_loses_nothing(pool: PgPool) {
    let config = harness::isolated_config();
    let mut up = Process::spawn(&pool, &config, &["up"]);
    up.ready(Duration::from_secs(30)).await;
    let http = harness::client_with(&harness::token(&config, switchyard_api::auth::Role::Admin));
    let mut topologies = Vec::new();
    for i in 0..4 {
        let created = http
            .post(format!("{}/api/v1/topologies", up.base))
            .json(&json!({"name": format!("t{i}"), "document": {"log": []}}))
            .send()
            .await
            .unwrap();
        let body: Value = created.json().await.unwrap();
        topologies.push(body["id"].as_str().unwrap().to_owned());
    }
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let load = tokio::spawn({
        let (base, accepted, http) = (up.base.clone(), accepted.clone(), http.clone());
        async move { enqueue_until_refused(http, &base, &topologies, 16, accepted).await }
    });
    // Shut down mid-load: once a good number are in, while requests are still arriving.
    harness::eventually(Duration::from_secs(30), || async {
        accepted.lock().await.len() >= 100
    })
    .await;
    up.signal("TERM");
    load.await.unwrap();
    assert_eq!(
        up.exit_code(Duration::from_secs(30)).await,
        Some(0),
        "graceful shutdown exits 0"
    );
    // The stopping process published everything it committed before exiting.
    assert_eq!(
        harness::unpublished(&pool).await,
        0,
        "shutdown left events unannounced"
    );
    let accepted = accepted.lock().await.clone();

    // Whatever the stopped process did not get to, the next worker does.
    let fleet = TestFleet::start(&pool, config, WORKERS_ONLY).await;
    fleet.settle(Duration::from_secs(30)).await;
    assert_every_accepted_mutation_applied_once(&pool, &accepted).await;
    harness::eventually(Duration::from_secs(10), || async {
        harness::unpublished(&pool).await == 0
    })
    .await;
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_killed_worker_applies_nothing_twice(pool: PgPool) {
    let config = harness::isolated_config();
    let fleet = TestFleet::start(&pool, config.clone(), API_ONLY).await;
    let doomed = Process::spawn(&pool, &config, &["worker", "--role", "mutator"]);
    let mut topologies = Vec::new();
    for i in 0..6 {
        topologies.push(
            fleet
                .create_topology(&format!("t{i}"), json!({"log": []}))
                .await,
        );
    }
    let fleet = Arc::new(fleet);
    let load = tokio::spawn({
        let (fleet, topologies) = (fleet.clone(), topologies.clone());
        async move {
            stream::iter(0..600)
                .map(|i| {
                    fleet.enqueue(
                        topologies[i % 6],
                        json!([{"op": "add", "path": "/log/-", "value": i}]),
                    )
                })
                .buffer_unordered(16)
                .collect::<Vec<Uuid>>()
                .await
        }
    });
    harness::eventually(Duration::from_secs(30), || async {
        let finished: i64 = sqlx::query_scalar!(
            r#"select count(*) as "count!" from mutations where status <> 'pending'"#
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        finished >= 60
    })
    .await;
    // The doomed worker was alone until it had done real work; now it dies mid-run.
    let _survivor = Process::spawn(&pool, &config, &["worker", "--role", "mutator"]);
    doomed.signal("KILL");
    let accepted = load.await.unwrap();
    fleet.settle(Duration::from_secs(60)).await;
    assert_every_accepted_mutation_applied_once(&pool, &accepted).await;
    Arc::try_unwrap(fleet)
        .ok()
        .expect("no other owners")
        .stop()
        .await;
}

async fn assert_every_accepted_mutation_applied_once(pool: &PgPool, accepted: &[Uuid]) {
    let stored: Vec<(Uuid, MutationStatus)> =
        sqlx::query!(r#"select id, status as "status: MutationStatus" from mutations"#)
            .fetch_all(pool)
            .await
            .unwrap()
            .into_iter()
            .map(|row| (row.id, row.status))
            .collect();
    let stored_ids: HashSet<Uuid> = stored.iter().map(|(id, _)| *id).collect();
    assert!(
        accepted.iter().all(|id| stored_ids.contains(id)),
        "an accepted mutation is missing"
    );
    assert!(
        stored
            .iter()
            .all(|(_, status)| *status == MutationStatus::Applied),
        "a mutation did not apply"
    );
    let per_topology: Vec<(Uuid, i64)> = sqlx::query!(
        r#"select topology_id, count(*) as "count!" from mutations group by topology_id"#
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|row| (row.topology_id, row.count))
    .collect();
    for (topology, count) in per_topology {
        harness::assert_applied_in_seq_order(pool, topology, count).await;
    }
}
