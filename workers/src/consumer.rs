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
use futures::StreamExt;
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
