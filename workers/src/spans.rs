//! The spans a worker's handling runs in, each placed in the trace its work came with
//! (see `switchyard_bus::trace`), so one trace shows a request, the work it caused and
//! the events that work emitted.
//!
//! - `handle_event` (one per event, for the roles that take one message at a time): a child
//!   of the trace in the message's `traceparent` header, or else the event's
//!   attribute. Events staged inside it carry its context.
//! - `handle_batch` (the mutator's pulled batch): one span for many messages, linked
//!   to the trace of each, since a span has one parent.
//! - `mutation.apply` (one per mutation the mutator finishes): a child of the trace
//!   stored with the mutation by the request that enqueued it, however the mutation
//!   was batched; its `mutation.applied` or `mutation.failed` event carries its
//!   context.

use async_nats::jetstream::Message;
use switchyard_bus::{Event, TraceContext};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

/// The trace a message belongs to: its `traceparent` header, or else its event's
/// attribute (the same value, when the relay published it).
pub fn trace_of(message: &Message, event: &Event) -> Option<TraceContext> {
    message
        .headers
        .as_ref()
        .and_then(TraceContext::of_headers)
        .or_else(|| TraceContext::of_event(event))
}

/// The span handling one event, a child of the message's trace.
pub fn event_span(message: &Message, event: &Event, delivered: i64) -> Span {
    // Fields only (no `otel.*` ones): they also prefix the log lines written inside.
    let span = tracing::info_span!(
        "handle_event",
        "event.type" = %event.kind,
        event.id = %event.id,
        event.subject = %event.subject,
        delivered,
    );
    if let Some(parent) = trace_of(message, event) {
        parent.adopt(&span);
    }
    span
}

/// The span handling a pulled batch of events together, linked to each one's trace.
pub fn batch_span<'a>(handled: impl IntoIterator<Item = (&'a Message, &'a Event)>) -> Span {
    let span = tracing::info_span!("handle_batch", messages = tracing::field::Empty);
    let mut count = 0;
    for (message, event) in handled {
        count += 1;
        if let Some(trace) = trace_of(message, event) {
            span.add_link(trace.span_context());
        }
    }
    span.record("messages", count);
    span
}

/// The span of one mutation's apply, a child of `enqueued` (the enqueuing request's
/// trace) when known, else of the current span. Its `outcome` field is recorded once
/// the mutation is applied or failed.
pub fn mutation_span(
    mutation_id: Uuid,
    topology_id: Uuid,
    seq: i64,
    enqueued: Option<&TraceContext>,
) -> Span {
    let span = tracing::info_span!(
        "mutation.apply",
        mutation.id = %mutation_id,
        topology.id = %topology_id,
        mutation.seq = seq,
        outcome = tracing::field::Empty,
    );
    if let Some(parent) = enqueued {
        parent.adopt(&span);
    }
    span
}
