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

/// An event as a client sees it: its id, its event name and its data.
type Seen = (String, String, String);

fn seen(frames: &[Event]) -> Vec<Seen> {
    frames
        .iter()
        .map(|f| (f.id.clone(), f.event.clone(), f.data.clone()))
        .collect()
}

/// Every event on the logical `filter` after stream sequence `after`, as a client
/// should see it, read from JetStream directly.
async fn events_on_stream(fleet: &TestFleet, filter: &str, after: u64) -> Vec<Seen> {
    use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
    let js = fleet.jetstream().await;
    let stream = js.get_stream(&fleet.config.bus.stream).await.unwrap();
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: format!("{}.{filter}", fleet.config.bus.subject_prefix),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            },
            ..Default::default()
        })
        .await
        .unwrap();
    let pending = consumer.cached_info().num_pending as usize;
    if pending == 0 {
        return Vec::new();
    }
    let messages = consumer.messages().await.unwrap();
    messages
        .take(pending)
        .map(|message| {
            let message = message.unwrap();
            let envelope: Value = serde_json::from_slice(&message.payload).unwrap();
            (
                message.info().unwrap().stream_sequence.to_string(),
                envelope["type"].as_str().unwrap().to_owned(),
                String::from_utf8(message.payload.to_vec()).unwrap(),
            )
        })
        .collect()
        .await
}

/// Waits until every mutation is applied and every event published.
async fn quiesce(fleet: &TestFleet) {
    fleet.settle(Duration::from_secs(30)).await;
    harness::eventually(Duration::from_secs(15), || async {
        harness::unpublished(&fleet.pool).await == 0
    })
    .await;
}

/// Appends each of `values` to the topology's `/log`, one mutation each.
async fn append(fleet: &TestFleet, topology: Uuid, values: std::ops::Range<i64>) {
    for value in values {
        fleet
            .enqueue(
                topology,
                json!([{"op": "add", "path": "/log/-", "value": value}]),
            )
            .await;
    }
}

/// Fails if a frame arrives within a short while: the stream sent nothing extra.
async fn assert_quiet(frames: &mut Frames, client: &str) {
    if let Ok(extra) = tokio::time::timeout(Duration::from_millis(500), frames.next()).await {
        panic!("{client} got a frame too many: {extra:?}");
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn many_clients_each_receive_exactly_their_events_in_order(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let mut topologies = Vec::new();
    for name in ["a", "b", "c"] {
        topologies.push(fleet.create_topology(name, json!({"log": []})).await);
    }
    // Five clients on the first topology, two on each other one, and admins on a
    // wildcard filter and on every topology.
    let mut clients: Vec<(String, Frames)> = Vec::new();
    for (i, topology) in topologies.iter().enumerate() {
        for _ in 0..if i == 0 { 5 } else { 2 } {
            let path = format!("/topologies/{topology}/events");
            let frames = open(&fleet, &path, None).await;
            clients.push((format!("topology.{topology}.>"), frames));
        }
    }
    for filter in ["topology.*.mutation.applied", "topology.>"] {
        let path = format!("/events?subject={}", filter.replace('>', "%3E"));
        clients.push((filter.to_owned(), open(&fleet, &path, None).await));
    }
    let mut starts = Vec::new();
    for (filter, frames) in &mut clients {
        let snapshot = take(frames, 1).await.remove(0);
        assert_eq!(snapshot.event, "snapshot", "client on {filter}");
        starts.push(snapshot.id.parse::<u64>().unwrap());
    }

    // Work on every topology, interleaved.
    for i in 0..8 {
        for topology in &topologies {
            append(&fleet, *topology, i..i + 1).await;
        }
    }
    quiesce(&fleet).await;
    for ((filter, frames), start) in clients.iter_mut().zip(starts) {
        let expected = events_on_stream(&fleet, filter, start).await;
        assert!(expected.len() >= 8, "client on {filter}: {expected:?}");
        let got = seen(&take(frames, expected.len()).await);
        assert_eq!(got, expected, "client on {filter}");
        assert_quiet(frames, filter).await;
    }
    fleet.stop().await;
}

/// A client that stops reading is cut off with `lagged`, and meanwhile a second
/// client of the same topology receives every event, each within seconds.
#[sqlx::test(migrations = "../migrations")]
async fn a_stalled_client_is_cut_off_without_slowing_another_on_the_same_topology(pool: PgPool) {
    let mut config = harness::isolated_config();
    config.http.event_buffer = 128;
    // The stalled client and the follower: a third stream opens once one is let go.
    config.http.max_event_streams = 2;
    let fleet = TestFleet::start(&pool, config, Roles::ALL).await;
    let topology = fleet.create_topology("t", json!({})).await;
    let path = format!("/topologies/{topology}/events");
    let mut stalled: Frames = Box::pin(
        open_stalled(&fleet, &path)
            .await
            .eventsource()
            .map(|frame| frame.expect("a well-formed SSE frame")),
    );
    let mut follower = open(&fleet, &path, None).await;
    let start: u64 = take(&mut follower, 1).await[0].id.parse().unwrap();
    // The follower reads every frame as it comes and notes when.
    let (arrived, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(frame) = follower.next().await {
            if arrived.send((frame, chrono::Utc::now())).is_err() {
                break;
            }
        }
    });

    assert!(
        until_cut_off(&fleet, topology, &path).await,
        "the stalled client was never cut off"
    );
    fleet
        .enqueue(
            topology,
            json!([{"op": "add", "path": "/after", "value": 1}]),
        )
        .await;
    quiesce(&fleet).await;
    let expected = events_on_stream(&fleet, &format!("topology.{topology}.>"), start).await;
    let mut received = Vec::new();
    while received.len() < expected.len() {
        let next = tokio::time::timeout(Duration::from_secs(15), arrivals.recv()).await;
        received.push(
            next.expect("the follower stopped receiving")
                .expect("the follower's stream ended"),
        );
    }
    let frames: Vec<Event> = received.iter().map(|(frame, _)| frame.clone()).collect();
    assert_eq!(seen(&frames), expected, "the follower missed events");
    for (frame, at) in &received {
        let time = data(frame)["time"].as_str().unwrap().to_owned();
        let published = chrono::DateTime::parse_from_rfc3339(&time).unwrap();
        let delay = *at - published.with_timezone(&chrono::Utc);
        assert!(
            delay < chrono::TimeDelta::seconds(5),
            "event {} reached the follower {delay} after it happened",
            frame.id
        );
    }
    assert!(!reader.is_finished(), "the follower's stream ended");

    // The stalled client's frames: a snapshot, events in order, then `lagged`.
    let mut cut = Vec::new();
    let read_to_end = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(frame) = stalled.next().await {
            cut.push(frame);
        }
    });
    assert!(read_to_end.await.is_ok(), "the lagged stream did not end");
    assert_eq!(cut.first().unwrap().event, "snapshot");
    assert_eq!(cut.last().unwrap().event, "lagged", "{cut:?}");
    let stalled_start: u64 = cut[0].id.parse().unwrap();
    let events = seen(&cut[1..cut.len() - 1]);
    let due = events_on_stream(&fleet, &format!("topology.{topology}.>"), stalled_start).await;
    assert!(
        events.len() < due.len(),
        "the stalled client got everything"
    );
    assert_eq!(events, due[..events.len()], "the stalled client's frames");
    reader.abort();
    fleet.stop().await;
}

/// Resuming from an id older than the process's subscription (started after it, by
/// another client) replays exactly what came after it, then follows live.
#[sqlx::test(migrations = "../migrations")]
async fn resuming_from_before_the_subscription_started_is_exact(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let topology = fleet.create_topology("t", json!({"log": []})).await;
    let other = fleet.create_topology("o", json!({"log": []})).await;
    let path = format!("/topologies/{topology}/events");
    let filter = format!("topology.{topology}.>");
    // Events before any stream: this process has no subscription yet.
    append(&fleet, topology, 0..5).await;
    quiesce(&fleet).await;
    let early = events_on_stream(&fleet, &filter, 0).await;
    assert!(early.len() >= 10, "{early:?}");

    // A first client starts the subscription at the stream's end.
    let mut first = open(&fleet, &path, None).await;
    let start: u64 = take(&mut first, 1).await[0].id.parse().unwrap();
    assert!(start >= early.last().unwrap().0.parse().unwrap());
    append(&fleet, topology, 5..10).await;
    append(&fleet, other, 0..3).await;
    quiesce(&fleet).await;
    let live = events_on_stream(&fleet, &filter, start).await;
    assert_eq!(seen(&take(&mut first, live.len()).await), live);

    // Resume from the second event ever: before the subscription's start.
    let resume_at: u64 = early[1].0.parse().unwrap();
    assert!(resume_at < start);
    let mut resumed = open(&fleet, &path, Some(&early[1].0)).await;
    append(&fleet, topology, 10..13).await;
    quiesce(&fleet).await;
    let expected = events_on_stream(&fleet, &filter, resume_at).await;
    assert_eq!(
        seen(&take(&mut resumed, expected.len()).await),
        expected,
        "the resumed stream"
    );
    assert_quiet(&mut resumed, "the resumed stream").await;

    // Resume from the topology's last event when only another topology's followed:
    // nothing to replay, and the next event comes live.
    let latest = expected.last().unwrap().0.clone();
    append(&fleet, other, 3..6).await;
    quiesce(&fleet).await;
    let mut caught_up = open(&fleet, &path, Some(&latest)).await;
    append(&fleet, topology, 13..14).await;
    quiesce(&fleet).await;
    let next = events_on_stream(&fleet, &filter, latest.parse().unwrap()).await;
    assert!(!next.is_empty());
    assert_eq!(seen(&take(&mut caught_up, next.len()).await), next);
    fleet.stop().await;
}

/// When the process loses NATS, its open streams end (so clients reconnect) instead
/// of hanging silently; new ones are refused with 503 until NATS is back, and then a
/// client resumes by id.
#[sqlx::test(migrations = "../migrations")]
async fn streams_end_when_nats_is_lost_and_resume_when_it_is_back(pool: PgPool) {
    let mut nats = harness::PrivateNats::start().await;
    let mut config = harness::isolated_config();
    config.bus.url = nats.url();
    config.bus.publish_timeout = Duration::from_millis(500);
    let fleet = TestFleet::start(&pool, config, Roles::ALL).await;
    let topology = fleet.create_topology("t", json!({})).await;
    let path = format!("/topologies/{topology}/events");
    let mut frames = open(&fleet, &path, None).await;
    let snapshot = take(&mut frames, 1).await.remove(0);

    nats.kill();
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        while frames.next().await.is_some() {}
    });
    assert!(ended.await.is_ok(), "the stream hung after NATS was lost");
    let (status, _) = harness::read(fleet.http.get(fleet.url(&path)).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    fleet
        .enqueue(topology, json!([{"op": "add", "path": "/a", "value": 1}]))
        .await;
    nats.restart().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let response = loop {
        let response = fleet
            .http
            .get(fleet.url(&path))
            .header("Last-Event-ID", &snapshot.id)
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::OK {
            break response;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {} after NATS came back",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut resumed: Frames = Box::pin(
        response
            .bytes_stream()
            .eventsource()
            .map(|frame| frame.expect("a well-formed SSE frame")),
    );
    let missed = until(&mut resumed, |f| count(f, "mutation.applied") == 1).await;
    assert_eq!(count(&missed, "mutation.enqueued"), 1, "{missed:?}");
    assert_eq!(count(&missed, "snapshot") + count(&missed, "reset"), 0);
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn many_streams_share_one_http2_connection(pool: PgPool) {
    // Cleartext HTTP/2 (prior knowledge): each stream is an HTTP/2 stream, not a
    // connection of its own, which is what keeps 10,000 idle streams small.
    let fleet = TestFleet::up(&pool).await;
    let topology = fleet.create_topology("t", json!({"n": 0})).await;
    let bearer = format!("Bearer {}", token(&fleet.config, Role::Admin));
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, bearer.parse().unwrap());
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .default_headers(headers)
        .build()
        .unwrap();
    let url = fleet.url(&format!("/topologies/{topology}/events"));
    let mut streams: Vec<Frames> = Vec::new();
    for _ in 0..20 {
        let response = h2.get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        streams.push(Box::pin(
            response.bytes_stream().eventsource().map(Result::unwrap),
        ));
    }
    fleet
        .enqueue(
            topology,
            json!([{"op": "replace", "path": "/n", "value": 1}]),
        )
        .await;
    for frames in &mut streams {
        let seen = until(frames, |f| count(f, "mutation.applied") == 1).await;
        assert_eq!(seen[0].event, "snapshot");
    }
    drop(streams);
    fleet.stop().await;
}
