//! Trace context: the W3C `traceparent` and `tracestate` that carry one trace from an
//! HTTP request through the outbox, the NATS message and the worker, into the events
//! the worker emits in turn.
//!
//! ## Where it travels
//! - **In a process**: the current span's OpenTelemetry context (`tracing-opentelemetry`).
//!   A span has one only where the process installed that layer in its subscriber; the
//!   binary always does, whether or not it exports spans.
//! - **On an [`Event`]**: the CloudEvents Distributed Tracing extension attributes
//!   `traceparent` and `tracestate`, absent when unknown. [`crate::OutboxTx::stage`]
//!   fills them from the current span where the committer did not set them, so they
//!   are stored in the outbox row with the event.
//! - **On a NATS message**: the `traceparent` and `tracestate` headers, copied from the
//!   event by [`crate::Bus::send`]; a consumer makes its span a child of them.
//!
//! Parsing and formatting are opentelemetry's `TraceContextPropagator`, so a
//! [`TraceContext`] always holds a valid, normalised (`00-…`) `traceparent`.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::Event;

/// The W3C header (and CloudEvents attribute) naming the parent span:
/// `00-{trace id: 32 hex}-{span id: 16 hex}-{flags: 2 hex}`.
pub const TRACEPARENT: &str = "traceparent";

/// The W3C header (and CloudEvents attribute) carrying vendors' trace state.
pub const TRACESTATE: &str = "tracestate";

/// A valid W3C trace context: the span that caused something, in the form it travels
/// in (headers, event attributes, a stored row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    traceparent: String,
    tracestate: Option<String>,
}

impl TraceContext {
    /// Reads a `traceparent` (and `tracestate`) as received; `None` when the
    /// `traceparent` is malformed or names no trace (all-zero ids), which W3C says to
    /// treat as absent.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let mut carrier = HashMap::with_capacity(2);
        carrier.insert(TRACEPARENT.to_owned(), traceparent.to_owned());
        if let Some(state) = tracestate {
            carrier.insert(TRACESTATE.to_owned(), state.to_owned());
        }
        Self::of_context(&TraceContextPropagator::new().extract(&carrier))
    }

    /// The context of the current span, when it has one (see the module docs).
    pub fn current() -> Option<Self> {
        Self::of_span(&tracing::Span::current())
    }

    /// The context of `span`, when it has one: `None` when the process has no
    /// OpenTelemetry layer, or the span is disabled.
    pub fn of_span(span: &tracing::Span) -> Option<Self> {
        Self::of_context(&span.context())
    }

    /// The context an event carries (its `traceparent` and `tracestate` attributes).
    pub fn of_event(event: &Event) -> Option<Self> {
        Self::parse(event.traceparent.as_deref()?, event.tracestate.as_deref())
    }

    /// The context in a NATS message's `traceparent` and `tracestate` headers.
    pub fn of_headers(headers: &async_nats::HeaderMap) -> Option<Self> {
        let value = |name: &str| headers.get(name).map(|v| v.as_str());
        Self::parse(value(TRACEPARENT)?, value(TRACESTATE))
    }

    fn of_context(cx: &opentelemetry::Context) -> Option<Self> {
        if !cx.span().span_context().is_valid() {
            return None;
        }
        let mut carrier: HashMap<String, String> = HashMap::with_capacity(2);
        TraceContextPropagator::new().inject_context(cx, &mut carrier);
        Some(Self {
            traceparent: carrier.remove(TRACEPARENT)?,
            tracestate: carrier.remove(TRACESTATE).filter(|s| !s.is_empty()),
        })
    }

    /// `00-{trace id}-{span id}-{flags}`.
    pub fn traceparent(&self) -> &str {
        &self.traceparent
    }

    /// Vendors' trace state, when there is any.
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }

    /// The trace id: 32 lowercase hex digits.
    pub fn trace_id(&self) -> &str {
        &self.traceparent[3..35]
    }

    /// The id of the span this context names: 16 lowercase hex digits.
    pub fn span_id(&self) -> &str {
        &self.traceparent[36..52]
    }

    /// This context as a remote span's, for a span link.
    pub fn span_context(&self) -> SpanContext {
        self.remote().span().span_context().clone()
    }

    /// This context as the parent of a span made here.
    fn remote(&self) -> opentelemetry::Context {
        let mut carrier = HashMap::with_capacity(2);
        carrier.insert(TRACEPARENT.to_owned(), self.traceparent.clone());
        if let Some(state) = &self.tracestate {
            carrier.insert(TRACESTATE.to_owned(), state.clone());
        }
        TraceContextPropagator::new().extract(&carrier)
    }

    /// Makes `span` a child of this context (a span in another process, or a stored
    /// one). Call it before the span is first entered; it does nothing where the
    /// process has no OpenTelemetry layer or the span is disabled.
    pub fn adopt(&self, span: &tracing::Span) {
        // Fails only in the cases documented above, where there is nothing to do.
        let _ = span.set_parent(self.remote());
    }

    /// Writes this context into `event`'s attributes.
    pub fn stamp(&self, event: &mut Event) {
        event.traceparent = Some(self.traceparent.clone());
        event.tracestate = self.tracestate.clone();
    }
}

impl Event {
    /// This event in `trace`, when there is one (else as it was).
    pub fn in_trace(mut self, trace: Option<&TraceContext>) -> Self {
        if let Some(trace) = trace {
            trace.stamp(&mut self);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_is_validated_and_split() {
        let trace = TraceContext::parse(PARENT, Some("vendor=abc")).expect("valid");
        assert_eq!(trace.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(trace.span_id(), "00f067aa0ba902b7");
        assert_eq!(trace.traceparent(), PARENT);
        assert_eq!(trace.tracestate(), Some("vendor=abc"));
        assert_eq!(
            trace.span_context().trace_id().to_string(),
            trace.trace_id()
        );
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad, None), None, "{bad:?}");
        }
    }

    #[test]
    fn without_an_opentelemetry_layer_a_span_has_no_context() {
        let span = tracing::info_span!("no layer");
        assert_eq!(TraceContext::of_span(&span), None);
    }

    #[test]
    fn an_event_carries_it_as_attributes_that_old_events_lack() {
        let mut event = Event::new(
            crate::EventType::MutationApplied,
            crate::Source::Mutator,
            "topology.x.mutation.applied".into(),
            serde_json::json!({}),
        );
        let json = serde_json::to_value(&event).unwrap();
        assert!(json.get(TRACEPARENT).is_none() && json.get(TRACESTATE).is_none());
        let trace = TraceContext::parse(PARENT, None).unwrap();
        trace.stamp(&mut event);
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json[TRACEPARENT], PARENT);
        assert!(json.get(TRACESTATE).is_none());
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(TraceContext::of_event(&back), Some(trace));
    }
}
