//! Where a run's results go: words for a person, and with `--json` one JSON line per
//! measure for `scripts/bench compare` (read back by [`crate::table`]).
//!
//! With `--json`, the JSON lines alone go to stdout and the words to stderr, so a
//! script can keep stdout as the record while the terminal still shows the words.

use std::time::Duration;

use serde_json::{Value, json};

/// How a run reports.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    /// JSON lines on stdout, words on stderr.
    pub json: bool,
}

impl Output {
    /// One line of words.
    pub fn say(&self, text: impl std::fmt::Display) {
        if self.json {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }

    /// One measure's JSON line, tagged `"system": "switchyard"`; printed only with `--json`.
    pub fn record(&self, measure: &str, mut fields: Value) {
        if !self.json {
            return;
        }
        if let Some(object) = fields.as_object_mut() {
            object.insert("system".to_owned(), json!("switchyard"));
            object.insert("measure".to_owned(), json!(measure));
        }
        println!("{fields}");
    }
}

/// Sorted durations' p50 and p99 in milliseconds, as `{"p50": .., "p99": ..}` (null
/// when there are none).
pub fn latency_ms(sorted: &[Duration]) -> Value {
    if sorted.is_empty() {
        return Value::Null;
    }
    let ms = |p: f64| (at(sorted, p).as_secs_f64() * 100_000.0).round() / 100.0;
    json!({"p50": ms(0.5), "p99": ms(0.99)})
}

/// p50, p90, p99 and max of sorted durations, for a person.
pub fn percentiles(sorted: &[Duration]) -> String {
    if sorted.is_empty() {
        return "no samples".to_owned();
    }
    format!(
        "p50 {:.1?}  p90 {:.1?}  p99 {:.1?}  max {:.1?}",
        at(sorted, 0.5),
        at(sorted, 0.9),
        at(sorted, 0.99),
        at(sorted, 1.0)
    )
}

/// The nearest-rank percentile `p` (0..=1) of sorted, non-empty durations.
fn at(sorted: &[Duration], p: f64) -> Duration {
    let rank = (sorted.len() as f64 * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A rate rounded to one decimal.
pub fn per_second(count: usize, elapsed: Duration) -> f64 {
    (count as f64 / elapsed.as_secs_f64().max(1e-9) * 10.0).round() / 10.0
}

/// Seconds rounded to milliseconds.
pub fn seconds(elapsed: Duration) -> f64 {
    (elapsed.as_secs_f64() * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(latency_ms(&sorted), json!({"p50": 50.0, "p99": 99.0}));
        assert_eq!(
            latency_ms(&[Duration::from_micros(1500)]),
            json!({"p50": 1.5, "p99": 1.5})
        );
        assert_eq!(latency_ms(&[]), Value::Null);
    }
}
