//! Where output goes: results to stdout (a line at a time, so a pipe sees each event
//! as it comes), notices and errors to stderr as `switchyard: …`.

use std::fmt::Display;
use std::io::Write;

use super::ClientError;
use super::api::{Answer, Api};

/// Writes `text` and a newline to stdout. A closed pipe (`| head`) is
/// [`ClientError::StdoutClosed`], which ends the command quietly.
pub fn line(text: impl Display) -> Result<(), ClientError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::BrokenPipe => ClientError::StdoutClosed,
            _ => ClientError::Output(error),
        })
}

/// A notice or an error, on stderr.
pub fn notice(text: impl Display) {
    eprintln!("switchyard: {text}");
}

/// The answer's body as it came with `--json`, else `human`'s text.
pub fn answer(
    api: &Api,
    answer: &Answer,
    human: impl FnOnce() -> Result<String, ClientError>,
) -> Result<(), ClientError> {
    if api.json {
        line(answer.text.trim_end())
    } else {
        line(human()?)
    }
}

/// `label: value` rows with the values aligned.
pub fn fields(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0) + 1;
    rows.iter()
        .map(|(label, value)| format!("{:<width$} {value}", format!("{label}:")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `text` cut to `max` characters, with `…` when cut.
pub fn cut(text: &str, max: usize) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}
