//! The pull loop shared by every bus-driven role.
//!
//! Messages are pulled from a durable consumer that every process of the role shares,
//! handled with bounded concurrency, and settled by the handler's [`Outcome`]. On
//! shutdown the loop stops pulling and gives in-flight work a bounded time to finish;
//! anything unfinished is simply not acked, and JetStream redelivers it.
//!
//! A role whose handler sets [`Handler::BATCHES`] (the mutator) is handed every
//! message already pulled, up to its concurrency, in one call, and the acks of the
//! whole batch are sent together; other roles get one message per task, settled as
//! soon as it is handled (a long migration never holds another message's ack).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{AckKind, Message};
use backon::{BackoffBuilder, ExponentialBuilder};
use futures::StreamExt;
use switchyard_bus::Event;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{WorkerError, spans};

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
    /// Whether ready messages are handed over together ([`Handler::handle_batch`]).
    const BATCHES: bool = false;

    fn handle(&self, message: &Message) -> impl Future<Output = Outcome> + Send;

    /// Handles several messages at once: one outcome per message, in order. By
    /// default each is handled on its own, concurrently.
    fn handle_batch(&self, messages: &[Message]) -> impl Future<Output = Vec<Outcome>> + Send {
        futures::future::join_all(messages.iter().map(|message| self.handle(message)))
    }
}

/// A role that handles switchyard events: [`Envelopes`] parses the message for it,
/// and [`settled`] turns its errors into an [`Outcome`], in one place for every role.
pub trait EventHandler: Send + Sync + 'static {
    /// The longest wait between retries of a retryable error (the role's
    /// `max_retry_delay` setting).
    fn max_retry_delay(&self) -> Duration;

    /// Handles one event; `delivered` counts delivery attempts (1 the first time). An
    /// error is settled by [`settled`]: retried with backoff when
    /// [`WorkerError::is_transient`], otherwise rejected for good.
    fn handle_event(
        &self,
        event: &Event,
        delivered: i64,
    ) -> impl Future<Output = Result<Outcome, WorkerError>> + Send;

    /// Whether the role handles many events in one call ([`EventHandler::handle_events`]).
    const BATCHES: bool = false;

    /// Handles `events` (each with its delivery count) together: one outcome per
    /// event, in order. By default each is [`settled`] on its own, concurrently.
    fn handle_events(&self, events: &[(Event, i64)]) -> impl Future<Output = Vec<Outcome>> + Send {
        futures::future::join_all(
            events
                .iter()
                .map(|(event, delivered)| settled(self, event, *delivered)),
        )
    }
}

/// How `handler`'s answer to `event` is settled. A retryable error (an outage, a
/// busy or fenced claim) is retried after an exponential delay by delivery attempt;
/// any other error would fail every attempt, so the message is rejected (JetStream
/// stops redelivering it) with the reason logged. Each role first records the
/// failures it can (a mutation failed, a migration run failed, a change given up),
/// so that work is not pending for the reconciler. When even that cannot be written,
/// the work stays pending, and the reconciler announces it again after
/// `reconciler.reannounce_after`: a slow retry, visible in the log each time.
pub async fn settled<H: EventHandler + ?Sized>(
    handler: &H,
    event: &Event,
    delivered: i64,
) -> Outcome {
    let result = handler.handle_event(event, delivered).await;
    outcome_of(result, handler.max_retry_delay(), event, delivered)
}

/// How a handler's `result` for `event` is settled (see [`settled`]).
pub fn outcome_of(
    result: Result<Outcome, WorkerError>,
    max_retry_delay: Duration,
    event: &Event,
    delivered: i64,
) -> Outcome {
    match result {
        Ok(outcome) => outcome,
        Err(error) if error.is_transient() => {
            let delay = retry_delay(max_retry_delay, delivered);
            if let WorkerError::Fenced(_) = error {
                // Another worker holds the work: routine, not a failure.
                tracing::debug!(%error, event = %event.id, kind = %event.kind, ?delay, "work held elsewhere; will retry");
            } else {
                tracing::warn!(%error, event = %event.id, kind = %event.kind, ?delay, "handling failed; will retry");
            }
            Outcome::Retry(delay)
        }
        Err(error) => {
            tracing::error!(%error, event = %event.id, kind = %event.kind, "handling failed for good; rejecting the message");
            Outcome::Reject(error.to_string())
        }
    }
}

/// Bus messages to an [`EventHandler`]: a payload that is not an event envelope is
/// rejected (it can never be handled). Each event is handled in a span of its
/// message's trace ([`spans`]).
#[derive(Debug)]
pub struct Envelopes<H>(pub Arc<H>);

impl<H: EventHandler> Handler for Envelopes<H> {
    const BATCHES: bool = H::BATCHES;

    async fn handle(&self, message: &Message) -> Outcome {
        match envelope(message) {
            Ok((event, delivered)) => {
                let span = spans::event_span(message, &event, delivered);
                settled(self.0.as_ref(), &event, delivered)
                    .instrument(span)
                    .await
            }
            Err(rejected) => rejected,
        }
    }

    async fn handle_batch(&self, messages: &[Message]) -> Vec<Outcome> {
        if !H::BATCHES {
            // One at a time, each in its own span (`handle_event`).
            let each = messages.iter().map(|message| self.handle(message));
            return futures::future::join_all(each).await;
        }
        let parsed: Vec<Result<(Event, i64), Outcome>> = messages.iter().map(envelope).collect();
        let events: Vec<(Event, i64)> = parsed
            .iter()
            .filter_map(|p| p.as_ref().ok().cloned())
            .collect();
        let span = spans::batch_span(
            messages
                .iter()
                .zip(&parsed)
                .filter_map(|(message, p)| Some((message, &p.as_ref().ok()?.0))),
        );
        let mut handled = self
            .0
            .handle_events(&events)
            .instrument(span)
            .await
            .into_iter();
        parsed
            .into_iter()
            .map(|p| match p {
                Ok(_) => handled.next().expect("one outcome per event"),
                Err(rejected) => rejected,
            })
            .collect()
    }
}

/// A message's event and delivery count, or the rejection of a payload that is not
/// an event envelope (it can never be handled).
fn envelope(message: &Message) -> Result<(Event, i64), Outcome> {
    let event = serde_json::from_slice::<Event>(&message.payload)
        .map_err(|_| Outcome::Reject("payload is not a switchyard event envelope".to_owned()))?;
    Ok((event, message.info().map_or(1, |info| info.delivered)))
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

/// How long pulling may fail without a single message before the pull stream is
/// opened again on a freshly declared consumer.
const REOPEN_AFTER: Duration = Duration::from_secs(10);

/// Where the role's durable consumer comes from: the one declared at start-up, then
/// `declare` again whenever its message stream ends or keeps failing (a consumer
/// deleted or lost with a cluster's state, a stream recreated).
pub struct Source<D> {
    /// The consumer declared at start-up.
    pub consumer: PullConsumer,
    /// Declares it again (`Bus::consumer`, idempotent).
    pub declare: D,
}

/// Runs until `shutdown` fires, then drains in-flight work for at most `drain_timeout`.
///
/// Reconnects by itself: while NATS is away the client reconnects and pulling resumes;
/// when the message stream ends (JetStream said the consumer was deleted) or has
/// failed for [`REOPEN_AFTER`] without a message, the consumer is declared again with
/// backoff and a new stream opened. Messages in flight are settled on the connection
/// whatever happens to the stream.
pub async fn run<H, D, F>(
    source: Source<D>,
    handler: Arc<H>,
    settings: PullSettings,
    shutdown: CancellationToken,
) where
    H: Handler,
    D: Fn() -> F,
    F: Future<Output = Result<PullConsumer, switchyard_bus::BusError>>,
{
    let semaphore = Arc::new(Semaphore::new(settings.concurrency));
    let mut in_flight = JoinSet::new();
    let mut consumer = Some(source.consumer);
    'open: loop {
        let Some(mut messages) = open(
            consumer.take(),
            &source.declare,
            settings.concurrency,
            &shutdown,
        )
        .await
        else {
            break;
        };
        let mut failing_since: Option<tokio::time::Instant> = None;
        loop {
            let permit = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break 'open,
                permit = semaphore.clone().acquire_owned() => permit.expect("semaphore is never closed"),
            };
            let next = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break 'open,
                next = messages.next() => next,
            };
            match next {
                Some(Ok(message)) => {
                    failing_since = None;
                    let mut batch = vec![message];
                    let mut permits = permit;
                    if H::BATCHES {
                        gather(&mut messages, &mut batch, &mut permits, &semaphore);
                    }
                    let handler = handler.clone();
                    in_flight.spawn(async move {
                        let outcomes = handler.handle_batch(&batch).await;
                        for (message, outcome) in batch.iter().zip(outcomes) {
                            settle(message, outcome).await;
                        }
                        drop(permits);
                    });
                }
                Some(Err(error)) => {
                    let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() >= REOPEN_AFTER {
                        tracing::warn!(%error, "pulling has failed for a while; declaring the consumer again");
                        continue 'open;
                    }
                    tracing::warn!(%error, "pulling messages failed; retrying");
                    // Errors repeat quickly while NATS is away; don't spin.
                    tokio::select! {
                        _ = shutdown.cancelled() => break 'open,
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    }
                }
                None => {
                    tracing::warn!("the message stream ended; declaring the consumer again");
                    continue 'open;
                }
            }
            while in_flight.try_join_next().is_some() {}
        }
    }
    drain(in_flight, settings.drain_timeout).await;
}

/// Opens a message stream on `consumer`, or on one `declare`d afresh when there is none
/// or opening fails, retrying with backoff (up to 5 s apart) until it works or
/// `shutdown` fires (`None`).
async fn open<D, F>(
    mut consumer: Option<PullConsumer>,
    declare: &D,
    concurrency: usize,
    shutdown: &CancellationToken,
) -> Option<async_nats::jetstream::consumer::pull::Stream>
where
    D: Fn() -> F,
    F: Future<Output = Result<PullConsumer, switchyard_bus::BusError>>,
{
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build();
    loop {
        let opened = match consumer.take() {
            Some(consumer) => Ok(consumer),
            None => declare().await.map_err(|e| e.to_string()),
        };
        let stream = match opened {
            Ok(consumer) => consumer
                .stream()
                .max_messages_per_batch(concurrency)
                .messages()
                .await
                .map_err(|e| e.to_string()),
            Err(error) => Err(error),
        };
        match stream {
            Ok(stream) => return Some(stream),
            Err(error) => {
                let delay = delays.next().unwrap_or(Duration::from_secs(5));
                tracing::warn!(%error, ?delay, "cannot pull from the consumer yet; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Adds to `batch` every message already pulled, while permits are free (one each).
fn gather(
    messages: &mut async_nats::jetstream::consumer::pull::Stream,
    batch: &mut Vec<Message>,
    permits: &mut OwnedSemaphorePermit,
    semaphore: &Arc<Semaphore>,
) {
    use futures::FutureExt;
    while let Ok(more) = semaphore.clone().try_acquire_owned() {
        match messages.next().now_or_never() {
            Some(Some(Ok(message))) => {
                permits.merge(more);
                batch.push(message);
            }
            Some(Some(Err(error))) => {
                tracing::warn!(%error, "pulling messages failed; handling what was pulled");
                return;
            }
            // Nothing ready yet, or the stream ended (the loop meets that next).
            _ => return,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers every event with the error or outcome it was made with.
    struct Answers(fn() -> Result<Outcome, WorkerError>);

    impl EventHandler for Answers {
        fn max_retry_delay(&self) -> Duration {
            Duration::from_secs(1)
        }

        async fn handle_event(&self, _: &Event, _: i64) -> Result<Outcome, WorkerError> {
            (self.0)()
        }
    }

    fn event() -> Event {
        serde_json::from_value(serde_json::json!({
            "specversion": "1.0", "id": "01a22f44-e339-70df-8de5-ef07d18d8725",
            "type": "mutation.enqueued", "source": "switchyard/test", "subject": "x",
            "time": "2026-12-01T00:00:00Z", "datacontenttype": "application/json", "data": {}
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn errors_are_settled_in_one_place_retryable_or_fatal() {
        let ok = Answers(|| Ok(Outcome::Ack));
        assert_eq!(settled(&ok, &event(), 1).await, Outcome::Ack);

        let busy = Answers(|| Err(WorkerError::Fenced("another worker".into())));
        let Outcome::Retry(delay) = settled(&busy, &event(), 3).await else {
            panic!("a retryable error is retried");
        };
        assert!(
            delay <= Duration::from_secs(1),
            "bounded by max_retry_delay: {delay:?}"
        );

        let corrupt = Answers(|| Err(WorkerError::Corrupt("stored step".into())));
        assert_eq!(
            settled(&corrupt, &event(), 1).await,
            Outcome::Reject("corrupt: stored step".to_owned())
        );
    }
}
