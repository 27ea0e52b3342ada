//! The pull loop shared by every bus-driven role.
//!
//! Messages are pulled from a durable consumer that every process of the role shares,
//! handled with bounded concurrency, and settled by the handler's [`Outcome`]. On
//! shutdown the loop stops pulling and gives in-flight work a bounded time to finish;
//! anything unfinished is simply not acked, and JetStream redelivers it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{AckKind, Message};
use backon::{BackoffBuilder, ExponentialBuilder};
use futures::StreamExt;
use switchyard_bus::Event;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How a handled message is settled.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done (or found already done): ack.
    Ack,
    /// Try again after the delay: nak with delay.
    Retry(Duration),
    /// The message can never be handled (malformed): terminate redelivery.
    Reject(String),
}

/// A role's message handler.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, message: &Message) -> impl Future<Output = Outcome> + Send;
}

/// A role that handles switchyard events: [`Envelopes`] parses the message for it.
pub trait EventHandler: Send + Sync + 'static {
    /// Handles one event; `delivered` counts delivery attempts (1 the first time).
    fn handle_event(&self, event: &Event, delivered: i64) -> impl Future<Output = Outcome> + Send;
}

/// Bus messages to an [`EventHandler`]: a payload that is not an event envelope is
/// rejected (it can never be handled).
#[derive(Debug)]
pub struct Envelopes<H>(pub Arc<H>);

impl<H: EventHandler> Handler for Envelopes<H> {
    async fn handle(&self, message: &Message) -> Outcome {
        let Ok(event) = serde_json::from_slice::<Event>(&message.payload) else {
            return Outcome::Reject("payload is not a switchyard event envelope".to_owned());
        };
        let delivered = message.info().map_or(1, |info| info.delivered);
        self.0.handle_event(&event, delivered).await
    }
}

/// The retry delay after an error: exponential from 100 ms to `max`, with jitter, by
/// delivery attempt.
pub fn retry_delay(max: Duration, delivered: i64) -> Duration {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(delivered.clamp(1, 32) as usize - 1)
        .unwrap_or(max)
}

/// Pull-loop settings.
#[derive(Clone, Copy, Debug)]
pub struct PullSettings {
    /// Messages handled at once by this process.
    pub concurrency: usize,
    /// How long in-flight messages may take to finish after shutdown begins.
    pub drain_timeout: Duration,
}

/// Runs until `shutdown` fires, then drains in-flight work for at most `drain_timeout`.
pub async fn run<H: Handler>(
    consumer: PullConsumer,
    handler: Arc<H>,
    settings: PullSettings,
    shutdown: CancellationToken,
) -> Result<(), async_nats::jetstream::consumer::StreamError> {
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(settings.concurrency)
        .messages()
        .await?;
    let permits = Arc::new(Semaphore::new(settings.concurrency));
    let mut in_flight = JoinSet::new();
    loop {
        let permit = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => permit.expect("semaphore is never closed"),
        };
        let next = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            next = messages.next() => next,
        };
        match next {
            Some(Ok(message)) => {
                let handler = handler.clone();
                in_flight.spawn(async move {
                    let outcome = handler.handle(&message).await;
                    settle(&message, outcome).await;
                    drop(permit);
                });
            }
            Some(Err(error)) => {
                tracing::warn!(%error, "pulling messages failed; retrying");
                // Errors repeat quickly while NATS is away; don't spin.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            }
            None => break,
        }
        while in_flight.try_join_next().is_some() {}
    }
    drop(messages);
    drain(in_flight, settings.drain_timeout).await;
    Ok(())
}

async fn settle(message: &Message, outcome: Outcome) {
    let result = match outcome {
        Outcome::Ack => message.ack().await,
        Outcome::Retry(delay) => message.ack_with(AckKind::Nak(Some(delay))).await,
        Outcome::Reject(reason) => {
            tracing::warn!(subject = %message.subject, %reason, "rejecting message for good");
            message.ack_with(AckKind::Term).await
        }
    };
    if let Err(error) = result {
        // Harmless: the message is redelivered and handled idempotently.
        tracing::warn!(%error, "could not settle message; it will be redelivered");
    }
}

async fn drain(mut in_flight: JoinSet<()>, timeout: Duration) {
    let all_done = async { while in_flight.join_next().await.is_some() {} };
    if tokio::time::timeout(timeout, all_done).await.is_err() {
        tracing::warn!(
            left = in_flight.len(),
            "drain timed out; unfinished messages will be redelivered"
        );
        in_flight.shutdown().await;
    }
}
