//! The table's cells and its Markdown: one [`Row`] per measure, figures written as a
//! reader takes them in (thousands separated, latencies in ms, memory in MB).

/// One line of the table.
#[derive(Debug, Default)]
pub(super) struct Row {
    measure: String,
    switchyard: String,
    default: String,
    batching: String,
    /// switchyard ÷ graphile batching, where both exist.
    pub(super) ratio: String,
    target: String,
    /// Whether the target is met; `None` when there is no target or no figure.
    met: Option<bool>,
}

impl Row {
    /// A row with switchyard's figure alone.
    pub(super) fn new(measure: impl Into<String>, switchyard: String) -> Self {
        Self {
            measure: measure.into(),
            switchyard,
            ..Self::default()
        }
    }

    /// Adds graphile-worker's figures, default and batching.
    pub(super) fn graphile(mut self, default: String, batching: String) -> Self {
        self.default = default;
        self.batching = batching;
        self
    }

    /// Adds the target and whether it is met.
    pub(super) fn target(mut self, target: &str, met: Option<bool>) -> Self {
        self.target = target.to_owned();
        self.met = met;
        self
    }

    /// The cells, the met mark included.
    fn cells(&self) -> [String; 7] {
        let met = match (self.met, self.target.is_empty()) {
            (_, true) => "",
            (Some(true), _) => "✓",
            (Some(false), _) => "✗",
            (None, _) => "?",
        };
        [
            &self.measure,
            &self.switchyard,
            &self.default,
            &self.batching,
            &self.ratio,
            &self.target,
            met,
        ]
        .map(|cell| cell.to_string())
    }
}

/// The rows as a Markdown table with padded columns.
pub(super) fn markdown(rows: &[Row]) -> String {
    let header = [
        "measure",
        "switchyard",
        "graphile default",
        "graphile batching",
        "switchyard ÷ batching",
        "target",
        "met",
    ]
    .map(str::to_owned);
    let cells: Vec<[String; 7]> = std::iter::once(header)
        .chain(rows.iter().map(Row::cells))
        .collect();
    let widths: Vec<usize> = (0..7)
        .map(|c| {
            cells
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |row: &[String; 7]| {
        let padded: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell}{}", " ".repeat(w - cell.chars().count())))
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    let mut text = line(&cells[0]);
    text.push_str(&format!("|-{}-|\n", rule.join("-|-")));
    for row in &cells[1..] {
        text.push_str(&line(row));
    }
    text
}

/// "p50 / p99 ms" of the latency object at `pointer`.
pub(super) fn pair(figure: impl Fn(&str) -> Option<f64>, pointer: &str) -> String {
    match (
        figure(&format!("{pointer}/p50")),
        figure(&format!("{pointer}/p99")),
    ) {
        (Some(p50), Some(p99)) => format!("{} / {} ms", millis(p50), millis(p99)),
        _ => "—".into(),
    }
}

/// Milliseconds to a tenth, or whole from 100 ms up.
fn millis(ms: f64) -> String {
    if ms >= 100.0 {
        count(ms.round() as u64)
    } else {
        format!("{ms:.1}")
    }
}

/// A rate, whole and thousands separated; `—` when missing.
pub(super) fn rate(per_second: Option<f64>) -> String {
    per_second.map_or("—".into(), |r| count(r.round() as u64))
}

/// A ratio such as `3.21×`; `—` when missing.
pub(super) fn times(ratio: Option<f64>) -> String {
    ratio.map_or("—".into(), |r| format!("{r:.2}×"))
}

/// KiB to MB (10⁶ bytes), the unit of the targets.
pub(super) fn megabytes(kib: f64) -> f64 {
    kib * 1024.0 / 1e6
}

/// Megabytes to a tenth; `—` when missing.
pub(super) fn mb(megabytes: Option<f64>) -> String {
    megabytes.map_or("—".into(), |m| format!("{m:.1} MB"))
}

/// A whole number with thousands separators: 20000 → "20,000".
pub(super) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut text = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            text.push(',');
        }
        text.push(digit);
    }
    text
}
