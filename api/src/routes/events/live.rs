//! Live event streams over SSE: the mechanism every `…/events` route shares. Live
//! events come from the process's one shared subscription, the [`super::hub`]; missed
//! ones are replayed from JetStream.
//!
//! ## Gapless, resumable
//! Every frame's SSE `id` is the event's JetStream stream sequence. A client first
//! joins the hub, which hands it G: every event after G reaches the client's buffer.
//! - **First connection**: then read the snapshot from Postgres; its frame's id is G.
//!   Every event at or before G was published after its transaction committed, so
//!   the snapshot reflects it; every later one follows live (an event committed while
//!   the snapshot was read may be both: a client applies events idempotently).
//! - **Reconnect** with `Last-Event-ID: N` (or `?last_event_id=N`): the events after
//!   `N` up to G matching the client's filter are replayed from JetStream, then the
//!   buffered live ones follow, any at or before the last one sent skipped: exactly the
//!   missed events, in order. If `N + 1` is older than the stream retains (or `N` is
//!   not an id), the client gets `reset` and a fresh snapshot instead.
//!
//! ## Bounded
//! At most `http.max_event_streams` streams per process (503 past it). Each stream has
//! a buffer of `http.event_buffer` frames; a client that falls that far behind gets a
//! `lagged` frame and is disconnected, and resumes by id. Streams end on shutdown, and
//! when the hub loses NATS (the client resumes by id once NATS is back).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use axum::http::{HeaderName, HeaderValue};
use axum::response::sse::{Event as Frame, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt, stream};
use serde::Serialize;
use switchyard_bus::{Bus, Namespace};
use switchyard_domain::status::StreamFrame;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use super::hub::{self, Delivery, Hub, Item, Membership, unavailable};
use crate::ApiConfig;
use crate::error::ApiError;

/// Longest wait for the next replayed event: the replay only ever waits for events
/// already in the stream, so a longer wait means retention removed them meanwhile.
/// The stream then ends, and the client's reconnection finds out (`reset`).
const REPLAY_STALL: Duration = Duration::from_secs(10);

/// Shared by every event-stream route of a process.
#[derive(Clone, Debug)]
pub struct Live {
    pub jetstream: jetstream::Context,
    pub namespace: Namespace,
    /// The deployment's stream.
    pub stream: String,
    /// One permit per open stream.
    pub permits: Arc<Semaphore>,
    /// Longest silence before a keepalive comment.
    pub keepalive: Duration,
    /// Ends every stream at shutdown, so graceful shutdown never waits on a client.
    pub shutdown: CancellationToken,
    /// The process's one live subscription, which every stream follows.
    hub: Arc<Hub>,
}

type FrameStream = Pin<Box<dyn Stream<Item = Result<Frame, Infallible>> + Send>>;

/// How a stream opens: its first frames, the events to replay, and the last sequence
/// the client has (live frames up to it are skipped).
struct Opening {
    frames: Vec<Frame>,
    replay: Option<Box<Replay>>,
    delivered: u64,
}

impl Live {
    /// Event streams on `bus`, bounded by `config`, ended by `shutdown`.
    pub fn new(bus: &Bus, config: &ApiConfig, shutdown: CancellationToken) -> Self {
        let hub = Hub::new(
            bus.jetstream.clone(),
            bus.namespace.clone(),
            bus.config.stream.clone(),
            config.event_buffer,
            shutdown.clone(),
        );
        Self {
            jetstream: bus.jetstream.clone(),
            namespace: bus.namespace.clone(),
            stream: bus.config.stream.clone(),
            permits: Arc::new(Semaphore::new(config.max_event_streams)),
            keepalive: config.event_keepalive,
            shutdown,
            hub: Arc::new(hub),
        }
    }

    /// Opens a stream of the events matching the logical `filter`. `snapshot` is read
    /// only when the client starts fresh or must reset, and is written out as JSON as it
    /// is (never turned into a `Value` first, so a stored document passes through).
    pub async fn open<F, Fut, S>(
        &self,
        filter: &str,
        last_event_id: Option<String>,
        snapshot: F,
    ) -> Result<Response, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<S, ApiError>>,
        S: Serialize,
    {
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| {
            ApiError::Unavailable(
                "too many open event streams (config key http.max_event_streams); retry later"
                    .to_owned(),
            )
        })?;
        // Joined first: G is known before the snapshot is read or the replay chosen.
        let joined = self.hub.join(filter, permit).await?;
        let opening = self
            .opening(filter, last_event_id, joined.position, snapshot)
            .await?;
        let follower = Follower {
            replay: opening.replay,
            live: joined.live,
            delivered: opening.delivered,
            _membership: joined.membership,
            _open: crate::metrics::OpenStream::open(),
        };
        let frames: FrameStream = Box::pin(
            stream::iter(opening.frames.into_iter().map(Ok))
                .chain(follower)
                .take_until(self.shutdown.clone().cancelled_owned()),
        );
        let sse = Sse::new(frames).keep_alive(KeepAlive::new().interval(self.keepalive));
        // Proxies must not buffer an event stream (axum sets `Cache-Control: no-cache`).
        Ok((
            [(
                HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            )],
            sse,
        )
            .into_response())
    }

    /// A fresh start, or a resumption after `last_event_id` if the stream still holds
    /// everything after it; `position` is G.
    async fn opening<F, Fut, S>(
        &self,
        filter: &str,
        last_event_id: Option<String>,
        position: u64,
        snapshot: F,
    ) -> Result<Opening, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<S, ApiError>>,
        S: Serialize,
    {
        let Some(last_event_id) = last_event_id else {
            return self.fresh(position, snapshot, false).await;
        };
        let retained = self.stream_state().await?;
        if let Ok(id) = last_event_id.parse::<u64>()
            && id <= retained.last_sequence
            && retains(&retained, id + 1)
        {
            let replay = self.replay(filter, id, position).await?;
            // Retention may have trimmed past `id` while the consumer was created:
            // the consumer would then skip the gap silently, so reset instead.
            if retains(&self.stream_state().await?, id + 1) {
                return Ok(Opening {
                    frames: Vec::new(),
                    replay,
                    delivered: id,
                });
            }
        }
        self.fresh(position, snapshot, true).await
    }

    /// A fresh start: `reset` if asked, then the snapshot, whose id is G (`position`).
    async fn fresh<F, Fut, S>(
        &self,
        position: u64,
        snapshot: F,
        reset: bool,
    ) -> Result<Opening, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<S, ApiError>>,
        S: Serialize,
    {
        let mut frames = Vec::with_capacity(2);
        if reset {
            frames.push(
                Frame::default()
                    .event(StreamFrame::Reset.as_str())
                    .data("your last event id is no longer retained; a fresh snapshot follows"),
            );
        }
        // Read after G was taken: every event up to G is reflected in it.
        let state = snapshot().await?;
        frames.push(
            Frame::default()
                .id(position.to_string())
                .event(StreamFrame::Snapshot.as_str())
                .data(serde_json::to_string(&state).expect("snapshots always serialize")),
        );
        Ok(Opening {
            frames,
            replay: None,
            delivered: position,
        })
    }

    async fn stream_state(&self) -> Result<jetstream::stream::State, ApiError> {
        let mut stream = self
            .jetstream
            .get_stream(&self.stream)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(stream
            .info()
            .await
            .map_err(|e| unavailable(&e))?
            .state
            .clone())
    }

    /// The replay of the events matching `filter` after sequence `after` up to `until`
    /// (G), all already in the stream; `None` if there are none.
    async fn replay(
        &self,
        filter: &str,
        after: u64,
        until: u64,
    ) -> Result<Option<Box<Replay>>, ApiError> {
        if after >= until {
            return Ok(None);
        }
        let config = consumer::pull::OrderedConfig {
            filter_subject: self.namespace.qualify(filter),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            },
            ..Default::default()
        };
        let stream = self
            .jetstream
            .get_stream(&self.stream)
            .await
            .map_err(|e| unavailable(&e))?;
        let consumer = stream
            .create_consumer(config)
            .await
            .map_err(|e| unavailable(&e))?;
        // Nothing matches from `after` on: waiting for a first message could be forever.
        if consumer.cached_info().num_pending == 0 {
            return Ok(None);
        }
        let messages = consumer.messages().await.map_err(|e| unavailable(&e))?;
        Ok(Some(Box::new(Replay::new(messages, until))))
    }
}

/// Whether the stream still holds every event from sequence `from` on (an emptied
/// stream has `first = last + 1`).
fn retains(state: &jetstream::stream::State, from: u64) -> bool {
    from >= state.first_sequence
}

/// Missed events, read from JetStream, up to G.
struct Replay {
    messages: consumer::pull::Ordered,
    /// G: later events come from the hub.
    until: u64,
    /// Ends a replay that waits too long for its next event.
    stall: Pin<Box<Sleep>>,
    /// Whether the replay is waiting for an event (since the stall timer was set).
    waiting: bool,
}

/// The next step of a replay.
enum Replayed {
    /// An event; `true` if it is the last one due.
    Event(Delivery, bool),
    /// Every event due was sent.
    Done,
    /// The replay cannot go on; the stream ends and the client resumes by id.
    Broken,
}

impl Replay {
    fn new(messages: consumer::pull::Ordered, until: u64) -> Self {
        Self {
            messages,
            until,
            stall: Box::pin(tokio::time::sleep(REPLAY_STALL)),
            waiting: false,
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Replayed> {
        let message = match self.messages.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(message))) => message,
            Poll::Ready(Some(Err(error))) => {
                tracing::warn!(%error, "event replay failed");
                return Poll::Ready(Replayed::Broken);
            }
            Poll::Ready(None) => return Poll::Ready(Replayed::Broken),
            Poll::Pending => return self.stalled(cx),
        };
        self.waiting = false;
        let Ok((sequence, pending)) = message
            .info()
            .map(|info| (info.stream_sequence, info.pending))
        else {
            return Poll::Ready(Replayed::Broken);
        };
        if sequence > self.until {
            return Poll::Ready(Replayed::Done);
        }
        // `pending` counts the matching events after this one already in the stream,
        // and every event up to G is: none left means this is the last one due.
        let last = sequence == self.until || pending == 0;
        Poll::Ready(Replayed::Event(
            Delivery::new(sequence, &message.payload),
            last,
        ))
    }

    /// `Broken` once the replay has waited [`REPLAY_STALL`] for its next event (the
    /// time the client takes to read does not count).
    fn stalled(&mut self, cx: &mut Context<'_>) -> Poll<Replayed> {
        if !self.waiting {
            self.waiting = true;
            let deadline = tokio::time::Instant::now() + REPLAY_STALL;
            self.stall.as_mut().reset(deadline);
        }
        self.stall.as_mut().poll(cx).map(|()| Replayed::Broken)
    }
}

/// One client's frames after the opening ones: the replay, then its live buffer.
struct Follower {
    replay: Option<Box<Replay>>,
    live: mpsc::Receiver<Item>,
    /// The last sequence the client has; live events up to it are skipped.
    delivered: u64,
    /// Keeps the client in the hub while its stream lives.
    _membership: Membership,
    /// Counts the stream in `switchyard_event_streams_open` while it lives.
    _open: crate::metrics::OpenStream,
}

impl Stream for Follower {
    type Item = Result<Frame, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(replay) = &mut this.replay {
            match ready!(replay.poll_next(cx)) {
                Replayed::Event(delivery, last) => {
                    if last {
                        this.replay = None;
                    }
                    this.delivered = delivery.sequence;
                    return Poll::Ready(Some(Ok(delivery.frame())));
                }
                Replayed::Done => this.replay = None,
                Replayed::Broken => return Poll::Ready(None),
            }
        }
        loop {
            let frame = match ready!(this.live.poll_recv(cx)) {
                None => return Poll::Ready(None),
                Some(Item::Lagged) => hub::lagged(),
                Some(Item::Event(delivery)) if delivery.sequence <= this.delivered => continue,
                Some(Item::Event(delivery)) => {
                    this.delivered = delivery.sequence;
                    delivery.frame()
                }
            };
            return Poll::Ready(Some(Ok(frame)));
        }
    }
}
