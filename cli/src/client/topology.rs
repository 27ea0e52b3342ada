//! `switchyard topology create|show|list`: `POST /topologies`, `GET /topologies/{id}`
//! and `GET /topologies`.

use clap::Subcommand;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use uuid::Uuid;

use super::api::Api;
use super::output::{self, fields};
use super::{ClientError, read_json};

/// The `topology` subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a topology (operator); prints it.
    Create {
        /// Its name, 1 to 200 characters.
        #[arg(long)]
        name: String,
        /// A file holding the initial JSON document, or `-` for stdin; `{}` when absent.
        #[arg(long, value_name = "FILE|-")]
        document: Option<String>,
    },
    /// Show a topology: version, status and document.
    Show {
        /// The topology's id.
        id: Uuid,
    },
    /// List topologies, a page at a time.
    List {
        /// Topologies per page, 1 to 500.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Where to go on: the `next_cursor` a previous page ended with.
        #[arg(long)]
        cursor: Option<String>,
    },
}

/// What the human-readable output shows of a topology.
#[derive(Deserialize)]
struct Topology {
    id: Uuid,
    name: String,
    version: i64,
    status: String,
    created_at: String,
    updated_at: String,
    document: Box<RawValue>,
}

/// A page of a list.
#[derive(Deserialize)]
pub struct Page<T> {
    /// This page's items, in the list's order.
    pub items: Vec<T>,
    /// Where the next page starts (`?cursor=`); `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Runs one `topology` subcommand and prints its outcome.
pub async fn run(command: Command, api: &Api) -> Result<(), ClientError> {
    match command {
        Command::Create { name, document } => {
            let document = match document {
                Some(source) => read_json("--document", &source).await?,
                None => json!({}),
            };
            let body = json!({ "name": name, "document": document });
            let answer = api.post(api.url(&["topologies"]), &body).await?;
            output::answer(api, &answer, || {
                let topology: Topology = answer.parse()?;
                Ok(format!(
                    "created topology {} ({}), version {}",
                    topology.id, topology.name, topology.version
                ))
            })
        }
        Command::Show { id } => {
            let answer = api.get(api.url(&["topologies", &id.to_string()])).await?;
            output::answer(api, &answer, || Ok(describe(&answer.parse()?)))
        }
        Command::List { limit, cursor } => {
            let mut url = api.url(&["topologies"]);
            url.query_pairs_mut()
                .append_pair("limit", &limit.to_string());
            if let Some(cursor) = &cursor {
                url.query_pairs_mut().append_pair("cursor", cursor);
            }
            let answer = api.get(url).await?;
            output::answer(api, &answer, || {
                let page: Page<Topology> = answer.parse()?;
                let mut lines: Vec<String> = page
                    .items
                    .iter()
                    .map(|t| format!("{}  v{:<5} {:<8} {}", t.id, t.version, t.status, t.name))
                    .collect();
                if page.items.is_empty() {
                    lines.push("no topologies".to_owned());
                }
                if let Some(next) = page.next_cursor {
                    lines.push(format!("more: --cursor {next}"));
                }
                Ok(lines.join("\n"))
            })
        }
    }
}

/// A topology's fields, then its document indented.
fn describe(topology: &Topology) -> String {
    // A document nested deeper than serde_json reads is shown as stored.
    let document = serde_json::from_str::<Value>(topology.document.get())
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_else(|| topology.document.get().to_owned());
    let rows = fields(&[
        ("id", topology.id.to_string()),
        ("name", topology.name.clone()),
        ("version", topology.version.to_string()),
        ("status", topology.status.clone()),
        ("created", topology.created_at.clone()),
        ("updated", topology.updated_at.clone()),
    ]);
    format!("{rows}\ndocument:\n{document}")
}
