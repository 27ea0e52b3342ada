//! The hub: one live JetStream subscription per API process, fanned out to every
//! event-stream client of that process.
//!
//! ## One subscription
//! The first client to connect starts an ordered consumer over the deployment's whole
//! stream, from the sequence after the stream's last. The hub dispatches each message
//! to the clients whose logical filter matches its subject ([`super::filter`]), then
//! advances its *position* G: the stream sequence of the last message dispatched (at
//! start, the stream's last sequence). With no client for [`IDLE`], the subscription
//! stops; the next client starts another.
//!
//! ## Joining is atomic with dispatch
//! A client joins under the same lock the dispatcher holds while it dispatches and
//! advances G, and reads G as it joins: every event after G reaches the client's
//! buffer, none at or before it. [`super::live`] builds a gapless stream on that.
//!
//! ## Never blocked by a client
//! Each client has its own bounded buffer (`http.event_buffer` frames, plus one slot
//! kept back for `lagged`). The hub only ever `try_send`s: a client whose buffer is
//! full gets `lagged` as its last frame and is let go at once, with its stream permit,
//! while every other client carries on.
//!
//! ## Failing loudly
//! If the subscription fails or the connection to NATS is lost, the hub lets every
//! client go: their streams end after what is buffered, and they reconnect with
//! `Last-Event-ID` (answered 503 until NATS is back) instead of hanging silently.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_nats::connection::State as Connection;
use async_nats::jetstream::{self, consumer};
use axum::response::sse::Event as Frame;
use futures::StreamExt;
use serde::Deserialize;
use switchyard_bus::Namespace;
use switchyard_domain::status::StreamFrame;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;

use super::filter::{ClientId, Subscribers};
use crate::error::ApiError;

/// How long the subscription outlives its last client.
const IDLE: Duration = Duration::from_secs(30);

/// How often the hub checks its connection to NATS and whether it is idle.
const CHECK: Duration = Duration::from_secs(1);

/// One bus event, rendered once and shared by every client it goes to.
#[derive(Debug)]
pub(super) struct Delivery {
    /// Its stream sequence: the frame's id.
    pub(super) sequence: u64,
    /// The envelope's `type`: the frame's event name.
    kind: Box<str>,
    /// The envelope, as JSON text.
    data: Box<str>,
}

impl Delivery {
    /// The event at stream sequence `sequence` whose envelope is `payload`.
    pub(super) fn new(sequence: u64, payload: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Envelope<'a> {
            #[serde(rename = "type", borrow)]
            kind: Cow<'a, str>,
        }
        let kind = serde_json::from_slice::<Envelope>(payload)
            .ok()
            .map(|envelope| envelope.kind)
            // An SSE event name cannot hold a line break.
            .filter(|kind| !kind.is_empty() && !kind.contains(['\n', '\r']))
            .unwrap_or(Cow::Borrowed("event"));
        Self {
            sequence,
            kind: kind.into(),
            data: String::from_utf8_lossy(payload).into(),
        }
    }

    /// The SSE frame: id, event name, data.
    pub(super) fn frame(&self) -> Frame {
        Frame::default()
            .id(self.sequence.to_string())
            .event(&*self.kind)
            .data(&*self.data)
    }
}

/// What a client's buffer holds.
#[derive(Debug)]
pub(super) enum Item {
    /// An event the client's filter matches.
    Event(Arc<Delivery>),
    /// The client fell behind and was let go: the last item.
    Lagged,
}

/// The `lagged` frame.
pub(super) fn lagged() -> Frame {
    Frame::default().event(StreamFrame::Lagged.as_str()).data(
        "you fell too far behind and were disconnected; reconnect with Last-Event-ID to resume",
    )
}

/// A 503 for a bus that cannot be reached; the cause is logged, not shown.
pub(super) fn unavailable(error: &dyn fmt::Display) -> ApiError {
    tracing::warn!(%error, "event stream unavailable");
    ApiError::Unavailable("the event bus is unreachable; retry shortly".to_owned())
}

/// A client as the hub holds it.
struct Client {
    sender: mpsc::Sender<Item>,
    /// The client's stream permit: given back the moment the hub lets the client go,
    /// even if its connection lingers.
    _permit: OwnedSemaphorePermit,
}

impl Client {
    /// Offers `delivery`; false once the client has gone or has just been cut off.
    fn offer(&self, delivery: &Arc<Delivery>) -> bool {
        // One slot is kept back, so a client that falls behind finds `lagged` last.
        if self.sender.capacity() <= 1 {
            let _ = self.sender.try_send(Item::Lagged);
            return false;
        }
        self.sender
            .try_send(Item::Event(Arc::clone(delivery)))
            .is_ok()
    }
}

/// Everything the lock guards.
#[derive(Default)]
struct State {
    /// The generation of the running subscription; `None` while none runs.
    running: Option<u64>,
    /// Subscriptions started so far.
    generations: u64,
    /// G: the stream sequence of the last message dispatched, or the stream's last
    /// sequence when the subscription started.
    position: u64,
    clients: Subscribers<Client>,
    /// The last id handed out.
    last_client: ClientId,
    /// Since when no client has been connected, while none is.
    idle_since: Option<Instant>,
}

/// The process's shared subscription and its clients.
pub(super) struct Hub {
    jetstream: jetstream::Context,
    namespace: Namespace,
    /// The deployment's stream.
    stream: String,
    /// Frames buffered per client before it is cut off as lagging.
    buffer: usize,
    /// Ends the subscription at shutdown.
    shutdown: CancellationToken,
    state: Mutex<State>,
    /// Held while a subscription starts, so that clients arriving together start one.
    starting: tokio::sync::Mutex<()>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("stream", &self.stream)
            .field("buffer", &self.buffer)
            .finish_non_exhaustive()
    }
}

/// A client that has joined the hub.
pub(super) struct Joined {
    /// G as the client joined: every event after it, and none before, reaches `live`.
    pub(super) position: u64,
    /// The client's buffer.
    pub(super) live: mpsc::Receiver<Item>,
    /// Leaves the hub when dropped.
    pub(super) membership: Membership,
}

/// A client's place in the hub; dropping it takes the client out (with its permit).
pub(super) struct Membership {
    hub: Arc<Hub>,
    id: ClientId,
    filter: Box<str>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        let client = {
            let mut state = self.hub.lock();
            let client = state.clients.remove(self.id, &self.filter);
            state.note_if_idle();
            client
        };
        drop(client);
    }
}

impl State {
    fn note_if_idle(&mut self) {
        if self.clients.is_empty() && self.idle_since.is_none() {
            self.idle_since = Some(Instant::now());
        }
    }
}

impl Hub {
    /// A hub on `stream`, not yet subscribed.
    pub(super) fn new(
        jetstream: jetstream::Context,
        namespace: Namespace,
        stream: String,
        buffer: usize,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            jetstream,
            namespace,
            stream,
            buffer,
            shutdown,
            state: Mutex::default(),
            starting: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic: every change is a single step.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn connected(&self) -> bool {
        self.jetstream.client().connection_state() == Connection::Connected
    }

    /// Joins the client following the logical `filter`, holding `permit`, starting
    /// the subscription if none runs. 503 when NATS cannot be reached.
    pub(super) async fn join(
        self: &Arc<Self>,
        filter: &str,
        permit: OwnedSemaphorePermit,
    ) -> Result<Joined, ApiError> {
        if !self.connected() {
            return Err(unavailable(&"not connected to NATS"));
        }
        let mut permit = Some(permit);
        // A subscription that fails the moment it starts is let go; retry once.
        for _ in 0..2 {
            if let Some(joined) = self.try_join(filter, &mut permit) {
                return Ok(joined);
            }
            self.start().await?;
        }
        Err(unavailable(&"the event subscription failed as it started"))
    }

    /// Joins if a subscription runs.
    fn try_join(
        self: &Arc<Self>,
        filter: &str,
        permit: &mut Option<OwnedSemaphorePermit>,
    ) -> Option<Joined> {
        let mut state = self.lock();
        state.running?;
        let (sender, live) = mpsc::channel(self.buffer + 1);
        let client = Client {
            sender,
            _permit: permit.take()?,
        };
        state.last_client += 1;
        let id = state.last_client;
        state.clients.insert(id, filter, client);
        state.idle_since = None;
        Some(Joined {
            position: state.position,
            live,
            membership: Membership {
                hub: Arc::clone(self),
                id,
                filter: filter.into(),
            },
        })
    }

    /// Starts the subscription, unless one runs already.
    async fn start(self: &Arc<Self>) -> Result<(), ApiError> {
        let _starting = self.starting.lock().await;
        if self.lock().running.is_some() {
            return Ok(());
        }
        let stream = self
            .jetstream
            .get_stream(&self.stream)
            .await
            .map_err(|e| unavailable(&e))?;
        let position = stream.cached_info().state.last_sequence;
        let config = consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: position + 1,
            },
            ..Default::default()
        };
        let messages = stream
            .create_consumer(config)
            .await
            .map_err(|e| unavailable(&e))?
            .messages()
            .await
            .map_err(|e| unavailable(&e))?;
        let generation = {
            let mut state = self.lock();
            state.generations += 1;
            state.running = Some(state.generations);
            state.position = position;
            state.idle_since = Some(Instant::now());
            state.generations
        };
        tracing::debug!(position, "event subscription started");
        tokio::spawn(Arc::clone(self).run(messages, generation));
        Ok(())
    }

    /// Dispatches until shutdown, failure, or [`IDLE`] without a client.
    async fn run(self: Arc<Self>, mut messages: consumer::pull::Ordered, generation: u64) {
        let mut check = tokio::time::interval(CHECK);
        let failure = loop {
            tokio::select! {
                () = self.shutdown.cancelled() => break None,
                _ = check.tick() => {
                    if !self.connected() {
                        break Some("lost the connection to NATS".to_owned());
                    }
                    if self.stop_if_idle(generation) {
                        tracing::debug!("event subscription stopped: no client");
                        return;
                    }
                }
                message = messages.next() => match message {
                    Some(Ok(message)) => self.dispatch(&message),
                    Some(Err(error)) => break Some(error.to_string()),
                    None => break Some("the subscription ended".to_owned()),
                },
            }
        };
        if let Some(error) = &failure {
            tracing::warn!(%error, "event subscription failed; its clients are let go");
        }
        self.stop(generation);
    }

    /// Sends `message` to every client whose filter matches, then advances G.
    fn dispatch(&self, message: &jetstream::Message) {
        let Ok(sequence) = message.info().map(|info| info.stream_sequence) else {
            return;
        };
        // Rendered outside the lock, once for every client.
        let delivery = self
            .namespace
            .logical(&message.subject)
            .map(|subject| (subject, Arc::new(Delivery::new(sequence, &message.payload))));
        let mut state = self.lock();
        if sequence <= state.position {
            return;
        }
        if let Some((subject, delivery)) = &delivery {
            state
                .clients
                .visit(subject, |client| client.offer(delivery));
            state.note_if_idle();
        }
        state.position = sequence;
    }

    /// Stops the subscription if it has had no client for [`IDLE`].
    fn stop_if_idle(&self, generation: u64) -> bool {
        let mut state = self.lock();
        let idle = state.running == Some(generation)
            && state.clients.is_empty()
            && state
                .idle_since
                .is_some_and(|since| since.elapsed() >= IDLE);
        if idle {
            state.running = None;
        }
        idle
    }

    /// Stops the subscription and lets every client go: their streams end.
    fn stop(&self, generation: u64) {
        let clients = {
            let mut state = self.lock();
            if state.running != Some(generation) {
                return;
            }
            state.running = None;
            state.idle_since = Some(Instant::now());
            std::mem::take(&mut state.clients)
        };
        drop(clients);
    }
}
