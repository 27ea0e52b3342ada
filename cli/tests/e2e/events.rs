//! Live status over SSE: snapshot then live events, exact resume by id, reset,
//! keepalives, the stream cap and stream tokens, with a real SSE client.

use crate::harness;

use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures::{Stream, StreamExt};
use harness::{TestFleet, client_with, token};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use switchyard::fleet::Roles;
use switchyard_api::auth::Role;
use uuid::Uuid;

type Frames = std::pin::Pin<Box<dyn Stream<Item = Event> + Send>>;
type Chunks = std::pin::Pin<Box<dyn Stream<Item = Result<bytes::Bytes, hyper::Error>> + Send>>;

/// Opens `path`, optionally resuming after `last_event_id`; returns the frames.
async fn open(fleet: &TestFleet, path: &str, last_event_id: Option<&str>) -> Frames {
    let mut request = fleet.http.get(fleet.url(path));
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    Box::pin(
        response
            .bytes_stream()
            .eventsource()
            .map(|frame| frame.expect("a well-formed SSE frame")),
    )
}

/// The next `n` frames, failing if they do not arrive in time.
async fn take(frames: &mut Frames, n: usize) -> Vec<Event> {
    let mut taken = Vec::with_capacity(n);
    while taken.len() < n {
        let frame = tokio::time::timeout(Duration::from_secs(15), frames.next())
            .await
            .expect("frames stopped arriving")
            .expect("stream ended early");
        taken.push(frame);
    }
    taken
}

/// Frames until `done` holds for the collected list.
async fn until(frames: &mut Frames, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
    let mut taken = Vec::new();
    while !done(&taken) {
        taken.extend(take(frames, 1).await);
    }
    taken
}

fn data(frame: &Event) -> Value {
    serde_json::from_str(&frame.data).unwrap()
}

fn count(frames: &[Event], kind: &str) -> usize {
    frames.iter().filter(|f| f.event == kind).count()
}

#[sqlx::test(migrations = "../migrations")]
async fn a_snapshot_then_every_event_live(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let topology = fleet.create_topology("t", json!({"n": 0})).await;
    let path = format!("/topologies/{topology}/events");
    let response = fleet.http.get(fleet.url(&path)).send().await.unwrap();
    let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
    assert!(header("content-type").starts_with("text/event-stream"));
    assert_eq!(header("cache-control"), "no-cache");
    assert_eq!(header("x-accel-buffering"), "no");
    let mut frames: Frames = Box::pin(response.bytes_stream().eventsource().map(Result::unwrap));

    let snapshot = take(&mut frames, 1).await.remove(0);
    assert_eq!(snapshot.event, "snapshot");
    assert_eq!(data(&snapshot)["topology"]["id"], json!(topology));
    assert_eq!(data(&snapshot)["pending"], json!([]));
    for i in 1..=2 {
        fleet
            .enqueue(
                topology,
                json!([{"op": "replace", "path": "/n", "value": i}]),
            )
            .await;
    }
    let live = until(&mut frames, |f| count(f, "mutation.applied") == 2).await;
    assert_eq!(count(&live, "mutation.enqueued"), 2);
    assert!(count(&live, "status") >= 1);
    let ids: Vec<u64> = live.iter().map(|f| f.id.parse().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids not increasing: {ids:?}"
    );
    assert!(ids[0] > snapshot.id.parse().unwrap());
    let envelope = data(&live[0]);
    assert_eq!(envelope["specversion"], "1.0");
    assert_eq!(envelope["type"], live[0].event);
    // Shutdown does not wait on an open stream: it ends it.
    tokio::time::timeout(Duration::from_secs(15), fleet.stop())
        .await
        .expect("shutdown waited on an open event stream");
    // Whatever was still buffered arrives, then the stream ends.
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while frames.next().await.is_some() {}
    });
    assert!(drained.await.is_ok(), "the stream did not end at shutdown");
}

#[sqlx::test(migrations = "../migrations")]
async fn reconnecting_with_last_event_id_replays_exactly_what_was_missed(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let topology = fleet.create_topology("t", json!({"log": []})).await;
    let path = format!("/topologies/{topology}/events");
    let mut first = open(&fleet, &path, None).await;
    let snapshot = take(&mut first, 1).await.remove(0);
    drop(first);

    // While disconnected: 20 mutations.
    for i in 0..20 {
        fleet
            .enqueue(
                topology,
                json!([{"op": "add", "path": "/log/-", "value": i}]),
            )
            .await;
    }
    fleet.settle(Duration::from_secs(15)).await;
    harness::eventually(Duration::from_secs(10), || async {
        harness::unpublished(&pool).await == 0
    })
    .await;

    let mut resumed = open(&fleet, &path, Some(&snapshot.id)).await;
    let missed = until(&mut resumed, |f| count(f, "mutation.applied") == 20).await;
    let seqs: Vec<i64> = missed
        .iter()
        .filter(|f| f.event == "mutation.enqueued")
        .map(|f| data(f)["data"]["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=20).collect::<Vec<_>>(),
        "missed enqueues not replayed in order"
    );
    assert_eq!(
        count(&missed, "snapshot"),
        0,
        "a resumed stream sends no snapshot"
    );
    let ids: Vec<&str> = missed.iter().map(|f| f.id.as_str()).collect();
    let unique: std::collections::HashSet<&&str> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "duplicate frames");

    // Resuming from the middle yields exactly the tail.
    let middle = 17;
    let mut tail = open(&fleet, &path, Some(&missed[middle].id)).await;
    let replayed = take(&mut tail, missed.len() - middle - 1).await;
    let expected: Vec<(&str, &str)> = missed[middle + 1..]
        .iter()
        .map(|f| (f.id.as_str(), f.data.as_str()))
        .collect();
    let got: Vec<(&str, &str)> = replayed
        .iter()
        .map(|f| (f.id.as_str(), f.data.as_str()))
        .collect();
    assert_eq!(got, expected);
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn an_id_the_stream_no_longer_holds_gets_reset_and_a_fresh_snapshot(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let topology = fleet.create_topology("t", json!({})).await;
    fleet
        .enqueue(topology, json!([{"op": "add", "path": "/a", "value": 1}]))
        .await;
    fleet.settle(Duration::from_secs(10)).await;
    let path = format!("/topologies/{topology}/events");
    let mut early = open(&fleet, &path, None).await;
    let early_id = take(&mut early, 1).await.remove(0).id;
    drop(early);
    // Retention passes: everything up to now is gone from the stream.
    fleet
        .enqueue(topology, json!([{"op": "add", "path": "/b", "value": 2}]))
        .await;
    fleet.settle(Duration::from_secs(10)).await;
    let js = fleet.jetstream().await;
    harness::eventually(Duration::from_secs(10), || async {
        js.get_stream(&fleet.config.bus.stream)
            .await
            .unwrap()
            .purge()
            .await
            .unwrap();
        js.get_stream(&fleet.config.bus.stream)
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .messages
            == 0
    })
    .await;
    // Emptied by retention, nothing new yet: the old id must not resume silently.
    let mut frames = open(&fleet, &path, Some(&early_id)).await;
    assert_eq!(take(&mut frames, 1).await[0].event, "reset");
    drop(frames);
    fleet
        .enqueue(topology, json!([{"op": "add", "path": "/c", "value": 3}]))
        .await;

    for stale in [early_id.as_str(), "not-a-number", "99999999"] {
        let mut frames = open(&fleet, &path, Some(stale)).await;
        let opening = take(&mut frames, 2).await;
        assert_eq!(opening[0].event, "reset", "for Last-Event-ID {stale}");
        assert_eq!(opening[1].event, "snapshot");
        assert_eq!(data(&opening[1])["topology"]["id"], json!(topology));
    }
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn an_idle_stream_gets_keepalives(pool: PgPool) {
    let mut config = harness::isolated_config();
    config.http.event_keepalive = Duration::from_millis(200);
    let fleet = TestFleet::start(&pool, config, Roles::ALL).await;
    let topology = fleet.create_topology("t", json!({})).await;
    let response = fleet
        .http
        .get(fleet.url(&format!("/topologies/{topology}/events")))
        .send()
        .await
        .unwrap();
    let mut bytes = response.bytes_stream();
    let mut raw = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !raw.lines().any(|line| line.starts_with(':')) {
        let chunk = tokio::time::timeout_at(deadline, bytes.next())
            .await
            .expect("no keepalive within 5s");
        raw.push_str(&String::from_utf8_lossy(&chunk.unwrap().unwrap()));
    }
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn streams_are_capped_and_open_with_a_stream_token(pool: PgPool) {
    let mut config = harness::isolated_config();
    config.http.max_event_streams = 1;
    let fleet = TestFleet::start(&pool, config, Roles::ALL).await;
    let topology = fleet.create_topology("t", json!({})).await;
    let path = format!("/api/v1/topologies/{topology}/events");
    let (status, minted) = fleet.post("/stream-tokens", json!({"path": path})).await;
    assert_eq!(status, StatusCode::CREATED);
    // A browser-style request: no Authorization header, the stream token in the query.
    let url = format!(
        "{}{path}?token={}",
        fleet.base,
        minted["token"].as_str().unwrap()
    );
    let held = reqwest::get(&url).await.unwrap();
    assert_eq!(held.status(), StatusCode::OK);
    let mut frames: Frames = Box::pin(held.bytes_stream().eventsource().map(Result::unwrap));
    assert_eq!(take(&mut frames, 1).await[0].event, "snapshot");

    let (status, body) = harness::read(
        fleet
            .http
            .get(fleet.url(&format!("/topologies/{topology}/events")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("http.max_event_streams"),
        "{body}"
    );
    drop(frames);
    harness::eventually(Duration::from_secs(5), || async {
        let response = fleet
            .http
            .get(fleet.url(&format!("/topologies/{topology}/events")))
            .send()
            .await
            .unwrap();
        response.status() == StatusCode::OK
    })
    .await;

    let (status, _) = harness::read(
        reqwest::get(format!(
            "{}/api/v1/topologies/{}/events",
            fleet.base,
            Uuid::now_v7()
        ))
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "no credentials: 401 before 404"
    );
    let viewer = client_with(&token(&fleet.config, Role::Viewer));
    let (status, _) = harness::read(
        viewer
            .get(fleet.url("/events?subject=topology.>"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the raw subject stream is for admins"
    );
    fleet.stop().await;
}

/// A client that stops reading is cut off: its slot is freed at once, it finds
/// `lagged` after what was buffered, and it resumes by id where it stopped.
#[sqlx::test(migrations = "../migrations")]
async fn a_client_that_stops_reading_is_cut_off_with_lagged_and_resumes(pool: PgPool) {
    let mut config = harness::isolated_config();
    config.http.event_buffer = 4;
    config.http.max_event_streams = 1;
    let fleet = TestFleet::start(&pool, config, Roles::ALL).await;
    let topology = fleet.create_topology("t", json!({})).await;
    let path = format!("/topologies/{topology}/events");
    let mut stalled: Frames = Box::pin(
        open_stalled(&fleet, &path)
            .await
            .eventsource()
            .map(|frame| frame.expect("a well-formed SSE frame")),
    );
    // Enough events to overflow every buffer between the pump and the stalled reader.
    assert!(
        until_cut_off(&fleet, topology, &path).await,
        "a client that stopped reading kept its stream slot"
    );
    let mut seen = Vec::new();
    let read_to_end = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(frame) = stalled.next().await {
            seen.push(frame);
        }
    });
    assert!(read_to_end.await.is_ok(), "the lagged stream did not end");
    assert_eq!(seen.last().unwrap().event, "lagged", "{seen:?}");
    assert_eq!(count(&seen, "lagged"), 1);
    let last_id = seen
        .iter()
        .rev()
        .find(|f| !f.id.is_empty())
        .unwrap()
        .id
        .clone();

    // Resuming delivers what came after, without a reset or a snapshot.
    // (The probe that found the slot free has just let go of it.)
    harness::eventually(Duration::from_secs(5), || async {
        fleet
            .http
            .get(fleet.url(&path))
            .send()
            .await
            .unwrap()
            .status()
            == StatusCode::OK
    })
    .await;
    let mut frames = open(&fleet, &path, Some(&last_id)).await;
    let resumed: Vec<u64> = take(&mut frames, 3)
        .await
        .iter()
        .map(|f| f.id.parse().unwrap())
        .collect();
    // Exactly the topology's next events in the stream: nothing skipped.
    let expected = stream_sequences_after(&fleet, topology, last_id.parse().unwrap(), 3).await;
    assert_eq!(resumed, expected);
    fleet.stop().await;
}

/// The stream sequences of the first `n` events of `topology` after `after`, read
/// from JetStream directly.
async fn stream_sequences_after(
    fleet: &TestFleet,
    topology: Uuid,
    after: u64,
    n: usize,
) -> Vec<u64> {
    use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
    let js = fleet.jetstream().await;
    let stream = js.get_stream(&fleet.config.bus.stream).await.unwrap();
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: format!("{}.topology.{topology}.>", fleet.config.bus.subject_prefix),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            },
            ..Default::default()
        })
        .await
        .unwrap();
    let messages = consumer.messages().await.unwrap();
    messages
        .take(n)
        .map(|m| m.unwrap().info().unwrap().stream_sequence)
        .collect()
        .await
}

/// Opens `path` over a connection with a tiny receive window and no reading: a
/// client that has stopped keeping up. Its frames are there to read later.
async fn open_stalled(fleet: &TestFleet, path: &str) -> Chunks {
    use http_body_util::{BodyStream, Empty};
    use hyper_util::rt::TokioIo;

    let url: reqwest::Url = fleet.url(path).parse().unwrap();
    let address = url.socket_addrs(|| None).unwrap()[0];
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let connection = socket.connect(address).await.unwrap();
    let (mut sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(connection))
        .await
        .unwrap();
    tokio::spawn(driver);
    let request = hyper::Request::get(url.path())
        .header("host", address.to_string())
        .header(
            "authorization",
            format!("Bearer {}", token(&fleet.config, Role::Viewer)),
        )
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    Box::pin(
        BodyStream::new(response.into_body()).filter_map(|frame| async move {
            match frame {
                Ok(frame) => frame.into_data().ok().map(Ok),
                Err(e) => Some(Err(e)),
            }
        }),
    )
}

/// Enqueues mutations until the stalled client's stream slot is free again (it was
/// cut off as lagging); false if that never happens.
async fn until_cut_off(fleet: &TestFleet, topology: Uuid, path: &str) -> bool {
    for i in 1..=2000 {
        fleet
            .enqueue(topology, json!([{"op": "add", "path": "/n", "value": i}]))
            .await;
        if i % 20 == 0 {
            let probe = fleet.http.get(fleet.url(path)).send().await.unwrap();
            if probe.status() == StatusCode::OK {
                return true;
            }
        }
    }
    false
}
