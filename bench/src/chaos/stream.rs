//! Reads the deployment's whole JetStream stream, first message to last, with an
//! ordered consumer: what the checker compares with the committed events.

use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::jetstream::{self, consumer};
use backon::{ConstantBuilder, Retryable};
use futures::StreamExt;
use serde::Deserialize;
use uuid::Uuid;

/// One message of the stream.
#[derive(Debug, Clone)]
pub struct StreamEntry {
    /// Its stream sequence (what an SSE frame's `id` is).
    pub seq: u64,
    /// Its `Nats-Msg-Id` (the event id), else the envelope's `id`.
    pub event_id: Option<Uuid>,
    /// The envelope's logical subject (no deployment prefix).
    pub subject: String,
    /// For `topology.*.mutation.applied|failed`: the mutation it reports.
    pub outcome_of: Option<Uuid>,
}

/// The part of an envelope the checker reads.
#[derive(Deserialize)]
struct Envelope {
    id: Option<Uuid>,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    data: EnvelopeData,
}

#[derive(Deserialize, Default)]
struct EnvelopeData {
    mutation_id: Option<Uuid>,
}

/// Retries for up to a minute, once a second: a scenario may have just restarted
/// NATS, and JetStream answers with no responders until its leaders are elected.
fn patiently() -> ConstantBuilder {
    ConstantBuilder::default()
        .with_delay(Duration::from_secs(1))
        .with_max_times(60)
}

fn say_retry(what: &'static str) -> impl Fn(&anyhow::Error, Duration) {
    move |error, _| eprintln!("chaos: {what} not answering yet ({error:#}); retrying")
}

/// Connects to NATS (retried): `servers` may be a comma-separated list (a cluster's
/// seeds).
pub async fn connect(servers: &str) -> anyhow::Result<async_nats::Client> {
    let list: Vec<&str> = servers.split(',').map(str::trim).collect();
    let attempt = || async {
        async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(list.clone())
            .await
            .with_context(|| format!("connecting to NATS at {servers}"))
    };
    attempt.retry(patiently()).notify(say_retry("NATS")).await
}

/// Every message of stream `name`, in order, up to its last sequence when the read
/// began.
pub async fn read_all(client: &async_nats::Client, name: &str) -> anyhow::Result<Vec<StreamEntry>> {
    let jetstream = jetstream::new(client.clone());
    let (consumer, state) = (|| ordered_consumer(&jetstream, name))
        .retry(patiently())
        .notify(say_retry("the stream"))
        .await?;
    let mut entries = Vec::with_capacity(usize::try_from(state.messages).unwrap_or(0));
    let Some(consumer) = consumer else {
        return Ok(entries);
    };
    let mut messages = consumer.messages().await?;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), messages.next()).await;
        let message = match next {
            Ok(Some(message)) => message?,
            Ok(None) => bail!(
                "the stream's consumer ended before sequence {}",
                state.last_sequence
            ),
            Err(_) => bail!(
                "no message of stream {name} for 30 s after {} of {}",
                entries.len(),
                state.messages
            ),
        };
        let seq = message
            .info()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .stream_sequence;
        entries.push(entry(seq, &message));
        if seq >= state.last_sequence {
            return Ok(entries);
        }
    }
}

type Ordered = consumer::Consumer<consumer::pull::OrderedConfig>;

/// The stream's state and an ordered consumer from its first message (none when the
/// stream is empty).
async fn ordered_consumer(
    jetstream: &jetstream::Context,
    name: &str,
) -> anyhow::Result<(Option<Ordered>, jetstream::stream::State)> {
    let mut stream = jetstream
        .get_stream(name)
        .await
        .with_context(|| format!("stream {name}"))?;
    let state = stream.info().await?.state.clone();
    if state.messages == 0 {
        return Ok((None, state));
    }
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .context("creating an ordered consumer to read the stream")?;
    Ok((Some(consumer), state))
}

fn entry(seq: u64, message: &async_nats::jetstream::Message) -> StreamEntry {
    let envelope: Option<Envelope> = serde_json::from_slice(&message.payload).ok();
    let header_id = message
        .headers
        .as_ref()
        .and_then(|headers| headers.get("Nats-Msg-Id"))
        .and_then(|value| value.as_str().parse().ok());
    let (envelope_id, subject, mutation) = match envelope {
        Some(e) => (e.id, e.subject, e.data.mutation_id),
        None => (None, String::new(), None),
    };
    let is_outcome =
        subject.ends_with(".mutation.applied") || subject.ends_with(".mutation.failed");
    StreamEntry {
        seq,
        event_id: header_id.or(envelope_id),
        outcome_of: if is_outcome { mutation } else { None },
        subject,
    }
}
