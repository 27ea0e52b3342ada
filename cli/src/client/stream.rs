//! An event stream (SSE) that survives drops, as `tail` and `graph migrate` read it.
//!
//! After a dropped connection (or a `lagged` frame, after which the server hangs up)
//! it reconnects with `Last-Event-ID` set to the last id it saw, so the server sends
//! exactly the events after it: nothing lost, nothing repeated, no second snapshot.
//! While the API is unreachable or answers 5xx it retries with backoff, saying so on
//! stderr. A connection that ends within [`HEALTHY_AFTER`] of opening without
//! delivering an event counts as a failed attempt too, so a server (or proxy) that
//! answers 200 and hangs up at once is not hammered; the backoff starts over once a
//! connection delivers an event or stays open that long. A 4xx ends it (an expired
//! token, an unknown resource): retrying would not help.

use std::pin::Pin;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use eventsource_stream::{EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use reqwest::header::ACCEPT;
use reqwest::{Method, Url};
use serde_json::Value;
use serde_json::value::RawValue;
use switchyard_domain::status::StreamFrame;
use tokio::time::{Instant, sleep};

use super::ClientError;
use super::api::{Api, unreachable};
use super::output::{self, cut};

/// The longest pause between two attempts to reconnect.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);
/// How long a connection must stay open, if it delivers no event, before its end is
/// taken as an ordinary drop rather than a failed attempt.
const HEALTHY_AFTER: Duration = Duration::from_secs(5);

/// One frame of the stream.
pub struct Frame {
    /// Its position in the stream; `None` for `reset`, which has none of its own.
    pub id: Option<String>,
    /// `snapshot`, `reset`, or the event type (`mutation.applied`, …).
    pub event: String,
    /// The snapshot or the CloudEvents envelope, as JSON text.
    pub data: String,
}

type Events = Pin<
    Box<
        dyn Stream<Item = Result<eventsource_stream::Event, EventStreamError<reqwest::Error>>>
            + Send,
    >,
>;

/// Follows one stream URL, reconnecting as the module docs say.
pub struct Follower<'a> {
    api: &'a Api,
    url: Url,
    /// The id of the last frame returned: where a reconnect resumes.
    last_id: Option<String>,
    /// The open connection's frames; `None` until connected, and after a drop.
    events: Option<Events>,
    /// When the open connection opened: one that ends sooner than [`HEALTHY_AFTER`]
    /// without an event counts as a failed attempt.
    opened_at: Instant,
    /// The pauses between attempts; started over after a healthy connection.
    delays: ExponentialBackoff,
}

impl<'a> Follower<'a> {
    /// A follower of `url`; with `last_id` it starts after that event, without a snapshot.
    pub fn new(api: &'a Api, url: Url, last_id: Option<String>) -> Self {
        Self {
            api,
            url,
            last_id,
            events: None,
            opened_at: Instant::now(),
            delays: fresh_delays(),
        }
    }

    /// The next frame, reconnecting first if the connection dropped.
    pub async fn next(&mut self) -> Result<Frame, ClientError> {
        loop {
            let Some(events) = self.events.as_mut() else {
                self.events = Some(self.connect().await?);
                self.opened_at = Instant::now();
                continue;
            };
            let dropped = match events.next().await {
                Some(Ok(event))
                    if StreamFrame::parse(&event.event) == Some(StreamFrame::Lagged) =>
                {
                    "fell behind the stream and was disconnected".to_owned()
                }
                Some(Ok(event)) => {
                    let frame = self.frame(event);
                    if frame.id.is_some() {
                        self.delays = fresh_delays();
                    }
                    return Ok(frame);
                }
                Some(Err(error)) => format!("the connection dropped ({error})"),
                None => "the server closed the stream".to_owned(),
            };
            self.events = None;
            let pause = if self.opened_at.elapsed() >= HEALTHY_AFTER {
                self.delays = fresh_delays();
                None
            } else {
                Some(self.next_delay())
            };
            let after = self.last_id.as_deref().unwrap_or("the start");
            match pause {
                None => output::notice(format!("{dropped}; resuming after event {after}")),
                Some(delay) => {
                    output::notice(format!(
                        "{dropped} right after it opened; resuming after event {after} in {}",
                        shown(delay)
                    ));
                    sleep(delay).await;
                }
            }
        }
    }

    /// The next pause of the backoff.
    fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(MAX_RETRY_DELAY)
    }

    fn frame(&mut self, event: eventsource_stream::Event) -> Frame {
        // The parser carries the previous id over to a frame without one, as the SSE
        // spec says; `reset` has none of its own.
        let reset = StreamFrame::parse(&event.event) == Some(StreamFrame::Reset);
        let id = (!reset && !event.id.is_empty()).then_some(event.id);
        if id.is_some() {
            self.last_id.clone_from(&id);
        }
        Frame {
            id,
            event: event.event,
            data: event.data,
        }
    }

    /// Opens the stream, retrying with backoff while the API is unreachable or 5xx.
    async fn connect(&mut self) -> Result<Events, ClientError> {
        loop {
            match self.open().await {
                Ok(events) => return Ok(events),
                Err(error) if error.is_transient() => {
                    let delay = self.next_delay();
                    output::notice(format!("{error}; retrying in {}", shown(delay)));
                    sleep(delay).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn open(&self) -> Result<Events, ClientError> {
        let mut request = self
            .api
            .request(Method::GET, self.url.clone())
            .header(ACCEPT, "text/event-stream");
        if let Some(id) = &self.last_id {
            request = request.header("last-event-id", id);
        }
        let response = request
            .send()
            .await
            .map_err(|error| unreachable(&self.url, error))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(self.api.refusal(Method::GET, &self.url, status, &body));
        }
        Ok(Box::pin(response.bytes_stream().eventsource()))
    }
}

/// The backoff from its first, shortest pause: 200 ms, doubling, with jitter, up to
/// [`MAX_RETRY_DELAY`], without end.
fn fresh_delays() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(MAX_RETRY_DELAY)
        .with_jitter()
        .without_max_times()
        .build()
}

/// `delay` to the millisecond, as `humantime` writes it (`412ms`, `1s 603ms`).
fn shown(delay: Duration) -> String {
    humantime::format_duration(Duration::from_millis(delay.as_millis() as u64)).to_string()
}

impl Frame {
    /// `{"id", "event", "data"}` on one line, `data` as the API sent it.
    pub fn json_line(&self) -> String {
        /// The line's shape; `data` is written out as it came, never re-encoded.
        #[derive(serde::Serialize)]
        struct Line<'f> {
            id: Option<&'f str>,
            event: &'f str,
            data: &'f RawValue,
        }
        // Every frame's data is JSON; a `reset` notice is text, kept as a string.
        let text = serde_json::to_string(&self.data).expect("a string serializes");
        let data = serde_json::from_str::<&RawValue>(&self.data)
            .or_else(|_| serde_json::from_str::<&RawValue>(&text))
            .expect("a JSON string is JSON");
        let line = Line {
            id: self.id.as_deref(),
            event: &self.event,
            data,
        };
        serde_json::to_string(&line).expect("a frame serializes")
    }

    /// `ID  EVENT  subject  key=value …`, or the snapshot cut short.
    pub fn human_line(&self) -> String {
        let id = self.id.as_deref().unwrap_or("-");
        let envelope = serde_json::from_str::<Value>(&self.data).ok();
        let detail = match envelope.as_ref().map(|e| (&e["subject"], &e["data"])) {
            Some((Value::String(subject), Value::Object(data)))
                if StreamFrame::parse(&self.event) != Some(StreamFrame::Snapshot) =>
            {
                // An id or slug the subject already names is left out.
                let named = |key: &str, value: &Value| {
                    (key.ends_with("_id") || key.ends_with("_slug"))
                        && value.as_str().is_some_and(|text| subject.contains(text))
                };
                let pairs: Vec<String> = data
                    .iter()
                    .filter(|(key, value)| !value.is_null() && !named(key, value))
                    .map(|(key, value)| match value {
                        Value::String(text) => format!("{key}={text}"),
                        other => format!("{key}={}", cut(&other.to_string(), 80)),
                    })
                    .collect();
                format!("{subject}  {}", pairs.join(" "))
            }
            _ => cut(&self.data, 200),
        };
        format!("{id:>6}  {:<22} {detail}", self.event)
    }
}
