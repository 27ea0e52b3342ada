//! The tracing pipeline: the log (text or JSON lines on stderr), and OpenTelemetry
//! spans.
//!
//! ## Spans always, export on request
//! Every process installs `tracing-opentelemetry` with an SDK tracer provider, so its
//! spans (an HTTP request, a handled event, a mutation's apply) have W3C trace and
//! span ids that travel on with the work: into the outbox, onto NATS, into the worker
//! (see `switchyard_bus::trace`). Only when `telemetry.otlp_endpoint` is set are they
//! also exported, over OTLP/HTTP with protobuf bodies (the collector's port 4318),
//! by a batch processor; [`Telemetry::shutdown`] exports what is still buffered.
//!
//! ## Two filters
//! The log keeps `log.filter` (or `RUST_LOG`). Spans are made for switchyard's own
//! code at `info` and above, whatever the log shows, so a quiet log (`warn`) still
//! propagates traces; the SDK's own messages (export failures) go to the log only.

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogConfig, LogFormat, TelemetryConfig};

/// The OpenTelemetry `service.name` of every process.
pub const SERVICE_NAME: &str = "switchyard";

/// The resource attribute naming what a process runs (`up`, `api`, `mutator`, …).
pub const ROLE_ATTRIBUTE: &str = "switchyard.role";

/// The installed pipeline's handle: keep it until the process ends, then call
/// [`Telemetry::shutdown`].
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

/// The OTLP exporter could not be built from `telemetry.otlp_endpoint`.
#[derive(Debug, thiserror::Error)]
#[error("configuration key telemetry.otlp_endpoint: cannot export to {url}: {source}")]
pub struct TelemetryError {
    url: String,
    source: opentelemetry_otlp::ExporterBuildError,
}

/// Installs the global subscriber: the log per `log` (`RUST_LOG`, when set, overrides
/// `log.filter`), and spans exported per `telemetry`, with `service.name` =
/// `switchyard` and `switchyard.role` = `role`.
pub fn init(
    log: &LogConfig,
    telemetry: &TelemetryConfig,
    role: &str,
) -> Result<Telemetry, TelemetryError> {
    let provider = provider(telemetry, role)?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.filter));
    // Colours only for a terminal: a log file or pipe gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let text = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let log_layer = match log.format {
        LogFormat::Json => text.json().flatten_event(true).boxed(),
        LogFormat::Text => text.boxed(),
    };
    tracing_subscriber::registry()
        .with(log_layer.with_filter(filter))
        .with(span_layer(&provider))
        .init();
    Ok(Telemetry { provider })
}

/// For a process that starts fleets in process without a log, as the end-to-end
/// tests do: spans get trace ids as in the binary, and nothing is exported or
/// printed. Does nothing when a global subscriber is already installed.
pub fn init_in_process() {
    let provider = SdkTracerProvider::builder()
        .with_resource(resource("in-process"))
        .build();
    let _ = tracing_subscriber::registry()
        .with(span_layer(&provider))
        .try_init();
}

impl Telemetry {
    /// Exports the spans still buffered (waiting for the collector up to the
    /// exporter's timeout, 10 s) and stops exporting. Call once, when the process ends.
    pub async fn shutdown(self) {
        let provider = self.provider;
        let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(error)) = done {
            tracing::warn!(%error, "exporting the last spans failed");
        }
    }
}

/// The tracer provider: with a batch OTLP exporter when an endpoint is configured.
fn provider(telemetry: &TelemetryConfig, role: &str) -> Result<SdkTracerProvider, TelemetryError> {
    let builder = SdkTracerProvider::builder().with_resource(resource(role));
    let Some(url) = telemetry.traces_url() else {
        return Ok(builder.build());
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(&url)
        .build()
        .map_err(|source| TelemetryError { url, source })?;
    Ok(builder.with_batch_exporter(exporter).build())
}

/// `service.name`, `service.version` and `switchyard.role`, plus what
/// `OTEL_RESOURCE_ATTRIBUTES` adds.
fn resource(role: &str) -> Resource {
    Resource::builder()
        .with_service_name(SERVICE_NAME)
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new(ROLE_ATTRIBUTE, role.to_owned()),
        ])
        .build()
}

/// Spans of switchyard's own code at `info` and above, as OpenTelemetry spans.
fn span_layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + Send + Sync + 'static
where
    S: tracing::Subscriber
        + for<'span> tracing_subscriber::registry::LookupSpan<'span>
        + Send
        + Sync
        + 'static,
{
    // A prefix: `switchyard` covers `switchyard_api`, `switchyard_workers`, ….
    // Never `opentelemetry*`: the SDK logs through tracing, and its own messages must
    // not become spans it then exports.
    let ours = Targets::new().with_target("switchyard", Level::INFO);
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(SERVICE_NAME))
        .with_tracked_inactivity(false)
        .with_filter(ours)
}

#[cfg(test)]
mod tests {
    use switchyard_bus::TraceContext;

    use super::*;

    /// Runs `f` with the span layer of a provider that exports nothing.
    fn with_spans<T>(f: impl FnOnce() -> T) -> T {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry().with(span_layer(&provider));
        tracing::subscriber::with_default(subscriber, f)
    }

    #[test]
    fn spans_get_ids_without_export_and_continue_a_callers_trace() {
        let caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331";
        with_spans(|| {
            let fresh = tracing::info_span!(target: "switchyard_api", "request");
            let fresh = TraceContext::of_span(&fresh).expect("ids without export");
            assert!(fresh.traceparent().ends_with("-01"), "sampled: {fresh:?}");
            for flags in ["01", "00"] {
                let span = tracing::info_span!(target: "switchyard_api", "request");
                TraceContext::parse(&format!("{caller}-{flags}"), None)
                    .unwrap()
                    .adopt(&span);
                let child = TraceContext::of_span(&span).expect("a child");
                assert_eq!(child.trace_id(), "0af7651916cd43dd8448eb211c80319c");
                assert_ne!(child.span_id(), "b7ad6b7169203331");
                // The caller's sampling decision travels on.
                assert!(child.traceparent().ends_with(flags), "{child:?}");
            }
            let theirs = tracing::info_span!(target: "sqlx::query", "query");
            assert_eq!(
                TraceContext::of_span(&theirs),
                None,
                "only switchyard's spans"
            );
        });
    }
}
