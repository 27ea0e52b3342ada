//! Traces: a request's W3C `traceparent` travels into its outbox event, onto the NATS
//! message, into the worker's span and into the events the worker emits, so one trace
//! shows enqueue → apply → status; and the real binary exports those spans over OTLP
//! to a receiver this test runs.

use crate::harness::{self, Process, TestFleet, client_with, token};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use switchyard_api::auth::Role;
use switchyard_bus::TraceContext;
use uuid::Uuid;

/// The client's trace and span, as a caller already tracing would send them.
const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN_ID: &str = "b7ad6b7169203331";

fn client_traceparent() -> String {
    format!("00-{TRACE_ID}-{CLIENT_SPAN_ID}-01")
}

#[sqlx::test(migrations = "../migrations")]
async fn one_trace_runs_from_the_request_through_the_mutator_and_is_exported(pool: PgPool) {
    let receiver = OtlpReceiver::start().await;
    let config = harness::isolated_config();
    let mut up = Process::spawn_with(
        &pool,
        &config,
        &["up"],
        &[("SWITCHYARD_TELEMETRY__OTLP_ENDPOINT", &receiver.endpoint())],
        std::process::Stdio::inherit(),
    );
    up.ready(Duration::from_secs(30)).await;
    let http = client_with(&token(&config, Role::Operator));
    let admin = client_with(&token(&config, Role::Admin));
    let created: Value = admin
        .post(format!("{}/api/v1/topologies", up.base))
        .json(&json!({"name": "traced", "document": {"log": []}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let topology = created["id"].as_str().unwrap().to_owned();

    let response = http
        .post(format!(
            "{}/api/v1/topologies/{topology}/mutations",
            up.base
        ))
        .header("traceparent", client_traceparent())
        .json(&json!({"ops": harness::add("log", json!(["a"]))}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let answered = header_trace(&response).expect("the answer names its trace");
    assert_eq!(answered.trace_id(), TRACE_ID);
    assert_ne!(answered.span_id(), CLIENT_SPAN_ID, "the API's own span");
    let mutation: Value = response.json().await.unwrap();
    let mutation_id: Uuid = mutation["id"].as_str().unwrap().parse().unwrap();
    harness::eventually(Duration::from_secs(30), || async {
        status_of(&pool, mutation_id).await == "applied"
    })
    .await;

    // (1) The enqueue's outbox event carries the request span's context.
    let enqueued = stored_trace(&pool, "mutation.enqueued", mutation_id)
        .await
        .expect("the enqueued event carries a traceparent");
    assert_eq!(enqueued, answered);

    // (2) So does its message on the stream, as headers.
    let nats = async_nats::connect(harness::nats_url()).await.unwrap();
    let stream = async_nats::jetstream::new(nats)
        .get_stream(&config.bus.stream)
        .await
        .unwrap();
    let wire = format!(
        "{}.topology.{topology}.mutation.enqueued",
        config.bus.subject_prefix
    );
    let message = stream.get_last_raw_message_by_subject(&wire).await.unwrap();
    assert_eq!(
        TraceContext::of_headers(&message.headers),
        Some(enqueued.clone()),
        "traceparent header on {wire}"
    );

    // (3) The mutator's outcome event: the same trace, the worker's own span.
    let applied = stored_trace(&pool, "mutation.applied", mutation_id)
        .await
        .expect("the applied event carries a traceparent");
    assert_eq!(applied.trace_id(), TRACE_ID);
    assert_ne!(applied.span_id(), enqueued.span_id());
    assert_ne!(applied.span_id(), CLIENT_SPAN_ID);
    let status = last_status_trace(&pool, &topology)
        .await
        .expect("the mutator's status event carries a traceparent");
    assert_eq!(
        status, applied,
        "the status follows the mutation that caused it"
    );

    // (4) Stopped gracefully, the binary exports what it buffered: the worker's span
    // is in the request's trace, a child of the API's request span.
    up.signal("TERM");
    assert_eq!(up.exit_code(Duration::from_secs(30)).await, Some(0));
    let spans = receiver.spans();
    let apply = spans
        .iter()
        .find(|s| s.name == "mutation.apply" && s.span_id == applied.span_id())
        .unwrap_or_else(|| panic!("no mutation.apply span {} in {spans:#?}", applied.span_id()));
    assert_eq!(apply.trace_id, TRACE_ID);
    assert_eq!(apply.parent_span_id, enqueued.span_id());
    assert_eq!(apply.service.as_deref(), Some("switchyard"));
    assert_eq!(apply.role.as_deref(), Some("up"));
    let request = spans
        .iter()
        .find(|s| s.span_id == enqueued.span_id())
        .expect("the API's request span is exported");
    assert_eq!(request.name, "request");
    assert_eq!(request.trace_id, TRACE_ID);
    assert_eq!(request.parent_span_id, CLIENT_SPAN_ID);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_request_without_a_valid_traceparent_starts_its_own_trace(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let mut traces = Vec::new();
    for sent in [None, Some("00-not-a-trace-01")] {
        let mut request = fleet.http.post(fleet.url("/topologies"));
        if let Some(traceparent) = sent {
            request = request.header("traceparent", traceparent);
        }
        let response = request
            .json(&json!({"name": "fresh", "document": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "{sent:?}");
        let trace = header_trace(&response).expect("a trace was started");
        let created: Value = response.json().await.unwrap();
        // The event the request staged is in the request's trace.
        let topology = created["id"].as_str().unwrap();
        assert_eq!(
            last_status_trace(&pool, topology).await,
            Some(trace.clone())
        );
        traces.push(trace);
    }
    assert_ne!(traces[0].trace_id(), traces[1].trace_id(), "each its own");
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_worker_handles_an_event_in_its_trace_and_emits_into_it(pool: PgPool) {
    // In process: the harness gives this process's spans ids, as the binary does.
    let fleet = TestFleet::up(&pool).await;
    for slug in ["billing", "web"] {
        let (status, body) = fleet
            .post("/repos", json!({"slug": slug, "name": slug}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, change) = fleet
        .post(
            "/interface-changes",
            json!({"repo_slug": "billing", "interface_type": "rest_api",
                   "change_type": "breaking", "title": "Invoices move",
                   "description": "To /v2.", "affected_paths": ["GET /v1/invoices"],
                   "affected_repo_slugs": ["web"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{change}");
    let id = change["id"].as_str().unwrap();
    let published = fleet
        .http
        .post(fleet.url(&format!("/interface-changes/{id}/publish")))
        .header("traceparent", client_traceparent())
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), StatusCode::OK);
    let request = header_trace(&published).expect("the answer names its trace");

    // The published event is the request's; the notifier's inbox message, its own
    // span in the same trace.
    let event_trace = |kind: &'static str| {
        let pool = pool.clone();
        async move {
            let traceparent: Option<Option<String>> = sqlx::query_scalar(
                "select event->>'traceparent' from outbox
                 where event->>'type' = $1 and event->'data'->>'interface_change_id' = $2",
            )
            .bind(kind)
            .bind(id)
            .fetch_optional(&pool)
            .await
            .unwrap();
            traceparent.map(|t| TraceContext::parse(&t.expect("a traceparent"), None))
        }
    };
    assert_eq!(
        event_trace("interface.published").await,
        Some(Some(request.clone()))
    );
    harness::eventually(Duration::from_secs(15), || async {
        event_trace("inbox.message").await.is_some()
    })
    .await;
    let delivered = event_trace("inbox.message").await.flatten().expect("valid");
    assert_eq!(delivered.trace_id(), TRACE_ID);
    assert_ne!(
        delivered.span_id(),
        request.span_id(),
        "the notifier's own span"
    );
    fleet.stop().await;
}

/// The `traceparent` a response carries.
fn header_trace(response: &reqwest::Response) -> Option<TraceContext> {
    let traceparent = response.headers().get("traceparent")?.to_str().ok()?;
    TraceContext::parse(traceparent, None)
}

async fn status_of(pool: &PgPool, mutation: Uuid) -> String {
    sqlx::query_scalar("select status from mutations where id = $1")
        .bind(mutation)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The trace context of the stored `kind` event about `mutation`.
async fn stored_trace(pool: &PgPool, kind: &str, mutation: Uuid) -> Option<TraceContext> {
    let traceparent: Option<String> = sqlx::query_scalar(
        "select event->>'traceparent' from outbox
         where event->>'type' = $1 and event->'data'->>'mutation_id' = $2::text",
    )
    .bind(kind)
    .bind(mutation)
    .fetch_one(pool)
    .await
    .unwrap();
    TraceContext::parse(&traceparent?, None)
}

/// The trace context of the topology's latest `status` event.
async fn last_status_trace(pool: &PgPool, topology: &str) -> Option<TraceContext> {
    let traceparent: Option<String> = sqlx::query_scalar(
        "select event->>'traceparent' from outbox
         where event->>'type' = 'status' and event->'data'->>'topology_id' = $1
         order by position desc limit 1",
    )
    .bind(topology)
    .fetch_one(pool)
    .await
    .unwrap();
    TraceContext::parse(&traceparent?, None)
}

/// A span as an OTLP export delivered it; ids in lowercase hex.
#[derive(Clone, Debug)]
struct ExportedSpan {
    name: String,
    trace_id: String,
    span_id: String,
    /// Empty for a root span.
    parent_span_id: String,
    /// The resource's `service.name` and `switchyard.role`.
    service: Option<String>,
    role: Option<String>,
}

/// A minimal OTLP/HTTP trace receiver: `POST /v1/traces` with a protobuf
/// `ExportTraceServiceRequest`, on a port of its own.
struct OtlpReceiver {
    addr: std::net::SocketAddr,
    spans: Arc<Mutex<Vec<ExportedSpan>>>,
    server: tokio::task::JoinHandle<()>,
}

impl OtlpReceiver {
    async fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let received = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: Bytes| {
                let received = received.clone();
                async move {
                    let Ok(export) = ExportTraceServiceRequest::decode(body) else {
                        return StatusCode::BAD_REQUEST;
                    };
                    received.lock().unwrap().extend(exported(export));
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            spans,
            server,
        }
    }

    /// What `telemetry.otlp_endpoint` is set to.
    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn spans(&self) -> Vec<ExportedSpan> {
        self.spans.lock().unwrap().clone()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn exported(export: ExportTraceServiceRequest) -> Vec<ExportedSpan> {
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let mut spans = Vec::new();
    for resource_spans in export.resource_spans {
        let attribute = |key: &str| {
            let resource = resource_spans.resource.as_ref()?;
            let found = resource.attributes.iter().find(|kv| kv.key == key)?;
            match found.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(value) => Some(value.clone()),
                _ => None,
            }
        };
        let (service, role) = (attribute("service.name"), attribute("switchyard.role"));
        for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
            spans.push(ExportedSpan {
                name: span.name.clone(),
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                service: service.clone(),
                role: role.clone(),
            });
        }
    }
    spans
}
