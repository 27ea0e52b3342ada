//! Live event streams over SSE, replayed from JetStream: the mechanism every
//! `…/events` route shares.
//!
//! ## Gapless, resumable
//! Every frame's SSE `id` is the event's JetStream stream sequence.
//! - **First connection**: note the stream's last sequence `S`, read the snapshot from
//!   Postgres, then follow the subject from `S + 1`. An event committed while the
//!   snapshot was read is published after `S`, so it is delivered (perhaps also
//!   reflected in the snapshot: a client applies events idempotently). The snapshot
//!   frame's id is `S`.
//! - **Reconnect** with `Last-Event-ID: N` (or `?last_event_id=N`): follow from `N + 1`,
//!   exactly the missed events, in order. If `N + 1` is older than the stream retains
//!   (or `N` is not an id), the client gets `reset` and a fresh snapshot instead.
//!
//! ## Bounded
//! At most `http.max_event_streams` streams per process (503 past it). Each stream has a
//! buffer of `http.event_buffer` frames; a client that falls that far behind gets a
//! `lagged` frame and is disconnected, and resumes by id. Streams end on shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use axum::http::{HeaderName, HeaderValue};
use axum::response::sse::{Event as Frame, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt, stream};
use serde::Serialize;
use serde_json::Value;
use switchyard_bus::{Bus, Namespace};
use switchyard_domain::status::StreamFrame;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::ApiConfig;
use crate::error::ApiError;

/// Shared by every event-stream route of a process.
#[derive(Clone, Debug)]
pub struct Live {
    pub jetstream: jetstream::Context,
    pub namespace: Namespace,
    /// The deployment's stream.
    pub stream: String,
    /// One permit per open stream.
    pub permits: Arc<Semaphore>,
    /// Frames buffered per client before it is cut off as lagging.
    pub buffer: usize,
    /// Longest silence before a keepalive comment.
    pub keepalive: Duration,
    /// Ends every stream at shutdown, so graceful shutdown never waits on a client.
    pub shutdown: CancellationToken,
}

type FrameStream = std::pin::Pin<Box<dyn Stream<Item = Result<Frame, Infallible>> + Send>>;

impl Live {
    /// Event streams on `bus`, bounded by `config`, ended by `shutdown`.
    pub fn new(bus: &Bus, config: &ApiConfig, shutdown: CancellationToken) -> Self {
        Self {
            jetstream: bus.jetstream.clone(),
            namespace: bus.namespace.clone(),
            stream: bus.config.stream.clone(),
            permits: Arc::new(Semaphore::new(config.max_event_streams)),
            buffer: config.event_buffer,
            keepalive: config.event_keepalive,
            shutdown,
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
        let retained = self.stream_state().await?;
        let (opening, messages) = match last_event_id.as_deref().map(str::parse::<u64>) {
            Some(Ok(id)) if id <= retained.last_sequence && retains(&retained, id + 1) => {
                let messages = self.subscribe(filter, id + 1).await?;
                // Retention may have trimmed past `id` while the consumer was created:
                // the consumer would then skip the gap silently, so reset instead.
                if retains(&self.stream_state().await?, id + 1) {
                    (Vec::new(), messages)
                } else {
                    self.fresh(filter, snapshot, true).await?
                }
            }
            Some(_) => self.fresh(filter, snapshot, true).await?,
            None => self.fresh(filter, snapshot, false).await?,
        };
        let live = self.buffer(messages, permit);
        let frames: FrameStream = Box::pin(
            stream::iter(opening.into_iter().map(Ok))
                .chain(live)
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

    /// The opening frames of a fresh start (`reset` if asked, then the snapshot, whose
    /// id is the stream's last sequence) and the events after that sequence.
    async fn fresh<F, Fut, S>(
        &self,
        filter: &str,
        snapshot: F,
        reset: bool,
    ) -> Result<(Vec<Frame>, consumer::pull::Ordered), ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<S, ApiError>>,
        S: Serialize,
    {
        let mut opening = Vec::new();
        if reset {
            opening.push(
                Frame::default()
                    .event(StreamFrame::Reset.as_str())
                    .data("your last event id is no longer retained; a fresh snapshot follows"),
            );
        }
        // The position is read before the snapshot: an event committed meanwhile comes
        // after it, so it is delivered (and perhaps also reflected in the snapshot).
        let position = self.stream_state().await?.last_sequence;
        let state = snapshot().await?;
        opening.push(
            Frame::default()
                .id(position.to_string())
                .event(StreamFrame::Snapshot.as_str())
                .data(serde_json::to_string(&state).expect("snapshots always serialize")),
        );
        Ok((opening, self.subscribe(filter, position + 1).await?))
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

    /// An ordered consumer of `filter` from stream sequence `from` on.
    async fn subscribe(
        &self,
        filter: &str,
        from: u64,
    ) -> Result<consumer::pull::Ordered, ApiError> {
        let config = consumer::pull::OrderedConfig {
            filter_subject: self.namespace.qualify(filter),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from.max(1),
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
        consumer.messages().await.map_err(|e| unavailable(&e))
    }

    /// Live frames through a bounded buffer filled by a pump task.
    fn buffer(
        &self,
        messages: consumer::pull::Ordered,
        permit: OwnedSemaphorePermit,
    ) -> FrameStream {
        // One slot more than the buffer: the reserve for `lagged`.
        let (sender, receiver) = mpsc::channel(self.buffer + 1);
        // The permit is the pump's: it comes back when the client goes, and also when a
        // lagging client is cut off, even if its connection lingers.
        let pump = AbortOnDropHandle::new(tokio::spawn(pump(messages, sender, permit)));
        Box::pin(stream::unfold(
            (receiver, pump),
            |(mut receiver, pump)| async move {
                let frame = receiver.recv().await?;
                Some((Ok(frame), (receiver, pump)))
            },
        ))
    }
}

/// Whether the stream still holds every event from sequence `from` on (an emptied
/// stream has `first = last + 1`).
fn retains(state: &jetstream::stream::State, from: u64) -> bool {
    from >= state.first_sequence
}

fn unavailable(error: &dyn std::fmt::Display) -> ApiError {
    tracing::warn!(%error, "event stream unavailable");
    ApiError::Unavailable("the event bus is unreachable; retry shortly".to_owned())
}

/// Copies bus messages into the client's buffer. The buffer keeps one slot back, so
/// a client that falls behind always finds `lagged` as its last frame, and the pump
/// (with the stream's permit) ends at once even if the client never reads again.
async fn pump(
    mut messages: consumer::pull::Ordered,
    sender: mpsc::Sender<Frame>,
    _permit: OwnedSemaphorePermit,
) {
    while let Some(message) = messages.next().await {
        let Ok(message) = message else { continue };
        let Ok(sequence) = message.info().map(|info| info.stream_sequence) else {
            continue;
        };
        if sender.capacity() <= 1 {
            let lagged = Frame::default().event(StreamFrame::Lagged.as_str()).data(
                "you fell too far behind and were disconnected; reconnect with Last-Event-ID to resume",
            );
            let _ = sender.try_send(lagged);
            return;
        }
        let kind = serde_json::from_slice::<Value>(&message.payload)
            .ok()
            .and_then(|event| event["type"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "event".to_owned());
        let data = String::from_utf8_lossy(&message.payload).into_owned();
        let frame = Frame::default()
            .id(sequence.to_string())
            .event(kind)
            .data(data);
        if sender.try_send(frame).is_err() {
            return; // the client went away
        }
    }
}
