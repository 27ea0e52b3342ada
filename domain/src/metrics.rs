//! The catalogue of switchyard's Prometheus metrics: every name, its kind, its labels
//! and what it means, in one place. The API and the workers record through the
//! `metrics` facade under these names; the process that serves `/metrics` (the `cli`
//! crate) describes each from here and reads the scrape-time ones itself. The README's
//! Metrics section lists the same names (a test compares them).
//!
//! Names follow Prometheus conventions: `switchyard_` first, counters end in `_total`,
//! durations are `_seconds` histograms, every unit is a base unit.

/// How Prometheus reads a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only ever goes up (per process); read it with `rate()`.
    Counter,
    /// A value now, up or down.
    Gauge,
    /// Observations in buckets (`_bucket`, `_sum`, `_count`).
    Histogram,
}

/// One metric: its name, kind, label names and help text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

/// HTTP requests answered.
pub const HTTP_REQUESTS: Metric = Metric {
    name: "switchyard_http_requests_total",
    kind: Kind::Counter,
    labels: &["route", "method", "status"],
    help: "HTTP requests answered, by route template (unmatched: a path no route serves), method and status code.",
};

/// How long requests took until their response started.
pub const HTTP_DURATION: Metric = Metric {
    name: "switchyard_http_request_duration_seconds",
    kind: Kind::Histogram,
    labels: &["route", "method", "status"],
    help: "Seconds from a request's arrival to its response's headers (an event stream: until it opened).",
};

/// Work committed, by resource and outcome (see [`Resource`] and [`Outcome`]).
pub const WORK: Metric = Metric {
    name: "switchyard_work_total",
    kind: Kind::Counter,
    labels: &["resource", "outcome"],
    help: "Work committed by this process, by resource and outcome, counted after its transaction commits.",
};

/// Graph nodes migrated.
pub const MIGRATION_NODES: Metric = Metric {
    name: "switchyard_migration_nodes_total",
    kind: Kind::Counter,
    labels: &[],
    help: "Graph nodes migrated to a run's target version by this process (committed batches).",
};

/// Event streams (SSE) open now.
pub const EVENT_STREAMS: Metric = Metric {
    name: "switchyard_event_streams_open",
    kind: Kind::Gauge,
    labels: &[],
    help: "Event streams (SSE) this process is serving now.",
};

/// Outbox rows (one per committed transaction) not yet published.
pub const OUTBOX_COMMITS: Metric = Metric {
    name: "switchyard_outbox_unpublished_commits",
    kind: Kind::Gauge,
    labels: &[],
    help: "Outbox rows (one per committed transaction) not yet published to JetStream, fleet-wide.",
};

/// Events in those rows.
pub const OUTBOX_EVENTS: Metric = Metric {
    name: "switchyard_outbox_unpublished_events",
    kind: Kind::Gauge,
    labels: &[],
    help: "Events in the outbox rows not yet published, fleet-wide.",
};

/// Age of the oldest unpublished row.
pub const OUTBOX_OLDEST_AGE: Metric = Metric {
    name: "switchyard_outbox_oldest_unpublished_age_seconds",
    kind: Kind::Gauge,
    labels: &[],
    help: "Seconds since the oldest unpublished outbox row was committed (0 when none is).",
};

/// A durable consumer's messages not yet delivered.
pub const CONSUMER_PENDING: Metric = Metric {
    name: "switchyard_consumer_pending",
    kind: Kind::Gauge,
    labels: &["consumer"],
    help: "Messages matching a durable consumer's filter not yet delivered to it (JetStream num_pending).",
};

/// A durable consumer's messages delivered and not yet acknowledged.
pub const CONSUMER_ACK_PENDING: Metric = Metric {
    name: "switchyard_consumer_ack_pending",
    kind: Kind::Gauge,
    labels: &["consumer"],
    help: "Messages delivered to a durable consumer and not yet acknowledged (JetStream num_ack_pending).",
};

/// This process's pool connections, in use and idle.
pub const POOL_CONNECTIONS: Metric = Metric {
    name: "switchyard_db_pool_connections",
    kind: Kind::Gauge,
    labels: &["state"],
    help: "Postgres connections of this process's pool, by state (in_use, idle).",
};

/// This process's pool size limit.
pub const POOL_MAX: Metric = Metric {
    name: "switchyard_db_pool_max_connections",
    kind: Kind::Gauge,
    labels: &[],
    help: "Most Postgres connections this process's pool opens (database.max_connections).",
};

/// Whether a scrape-time read worked.
pub const SCRAPE_UP: Metric = Metric {
    name: "switchyard_scrape_source_up",
    kind: Kind::Gauge,
    labels: &["source"],
    help: "1 when this scrape read its source (postgres: the outbox; nats: the consumers), 0 when it could not (its gauges are then left out).",
};

/// Scrape-time reads that failed.
pub const SCRAPE_ERRORS: Metric = Metric {
    name: "switchyard_scrape_errors_total",
    kind: Kind::Counter,
    labels: &["source"],
    help: "Scrape-time reads that failed or timed out, by source (postgres, nats).",
};

/// Every metric, in the order the README lists them.
pub const ALL: &[Metric] = &[
    HTTP_REQUESTS,
    HTTP_DURATION,
    WORK,
    MIGRATION_NODES,
    EVENT_STREAMS,
    OUTBOX_COMMITS,
    OUTBOX_EVENTS,
    OUTBOX_OLDEST_AGE,
    CONSUMER_PENDING,
    CONSUMER_ACK_PENDING,
    POOL_CONNECTIONS,
    POOL_MAX,
    SCRAPE_UP,
    SCRAPE_ERRORS,
];

/// The `resource` label of [`WORK`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// A topology mutation: enqueued (API), applied or failed (mutator).
    Mutation,
    /// An interface change: published (API), notified or failed, given up (notifier).
    InterfaceChange,
    /// An inbox message: delivered (notifier), one per notified repo.
    InboxMessage,
    /// A graph migration run: requested (API), succeeded or failed (migrator).
    MigrationRun,
}

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mutation => "mutation",
            Self::InterfaceChange => "interface_change",
            Self::InboxMessage => "inbox_message",
            Self::MigrationRun => "migration_run",
        }
    }
}

/// The `outcome` label of [`WORK`]: what was committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Enqueued,
    Applied,
    Failed,
    Published,
    Notified,
    Delivered,
    Requested,
    Succeeded,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enqueued => "enqueued",
            Self::Applied => "applied",
            Self::Failed => "failed",
            Self::Published => "published",
            Self::Notified => "notified",
            Self::Delivered => "delivered",
            Self::Requested => "requested",
            Self::Succeeded => "succeeded",
        }
    }
}

/// Every (resource, outcome) pair [`WORK`] counts: each process shows all of them
/// from its start, at 0 until counted, so `rate()` and alerts see a series at once.
pub const WORK_KINDS: &[(Resource, Outcome)] = &[
    (Resource::Mutation, Outcome::Enqueued),
    (Resource::Mutation, Outcome::Applied),
    (Resource::Mutation, Outcome::Failed),
    (Resource::InterfaceChange, Outcome::Published),
    (Resource::InterfaceChange, Outcome::Notified),
    (Resource::InterfaceChange, Outcome::Failed),
    (Resource::InboxMessage, Outcome::Delivered),
    (Resource::MigrationRun, Outcome::Requested),
    (Resource::MigrationRun, Outcome::Succeeded),
    (Resource::MigrationRun, Outcome::Failed),
];

/// Buckets of [`HTTP_DURATION`], in seconds: 1 ms to 30 s, about ×2.5 apart.
pub const HTTP_DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let mut names = std::collections::HashSet::new();
        for metric in ALL {
            assert!(names.insert(metric.name), "{} twice", metric.name);
            assert!(metric.name.starts_with("switchyard_"), "{}", metric.name);
            let valid = metric
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            assert!(valid, "{}", metric.name);
            match metric.kind {
                Kind::Counter => assert!(metric.name.ends_with("_total"), "{}", metric.name),
                Kind::Histogram => assert!(metric.name.ends_with("_seconds"), "{}", metric.name),
                Kind::Gauge => assert!(!metric.name.ends_with("_total"), "{}", metric.name),
            }
        }
        assert!(HTTP_DURATION_BUCKETS.windows(2).all(|w| w[0] < w[1]));
    }
}
