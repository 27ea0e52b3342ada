//! `switchyard tail KIND/ID`: follows one event stream (`/topologies/{id}/events`,
//! `/repos/{slug}/events`, `/graphs/{slug}/events`, or for admins `/events?subject=`)
//! and prints each frame, until interrupted. Drops are resumed as [`super::stream`]
//! says.

use std::str::FromStr;

use clap::ArgGroup;
use uuid::Uuid;

use super::ClientError;
use super::api::Api;
use super::output;
use super::stream::Follower;

/// `switchyard tail`'s arguments: which stream, and where in it to start.
#[derive(clap::Args, Debug)]
#[command(group(ArgGroup::new("stream").required(true).args(["target", "subject"])))]
pub struct Args {
    /// What to follow: `topology/<id>`, `repo/<slug>` or `graph/<slug>`.
    #[arg(value_name = "KIND/ID")]
    target: Option<Target>,
    /// Follow every event matching a subject filter instead (admin), for example
    /// `topology.*.mutation.failed` or `graph.>`.
    #[arg(long, value_name = "FILTER")]
    subject: Option<String>,
    /// Start after this event id (every event prints its id) instead of with a snapshot.
    #[arg(long, value_name = "ID")]
    last_event_id: Option<u64>,
}

/// One resource's stream.
#[derive(Clone, Debug)]
enum Target {
    Topology(Uuid),
    Repo(String),
    Graph(String),
}

impl FromStr for Target {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let usage = "expected topology/<id>, repo/<slug> or graph/<slug>";
        match raw.split_once('/') {
            Some(("topology", id)) => id
                .parse()
                .map(Self::Topology)
                .map_err(|_| format!("{id:?} is not a topology id (a UUID)")),
            Some(("repo", slug)) if !slug.is_empty() => Ok(Self::Repo(slug.to_owned())),
            Some(("graph", slug)) if !slug.is_empty() => Ok(Self::Graph(slug.to_owned())),
            _ => Err(usage.to_owned()),
        }
    }
}

/// Prints every frame of the stream until interrupted, or until an error that
/// retrying would not cure.
pub async fn run(args: Args, api: &Api) -> Result<(), ClientError> {
    let url = match (&args.target, &args.subject) {
        (Some(Target::Topology(id)), _) => api.url(&["topologies", &id.to_string(), "events"]),
        (Some(Target::Repo(slug)), _) => api.url(&["repos", slug, "events"]),
        (Some(Target::Graph(slug)), _) => api.url(&["graphs", slug, "events"]),
        (None, subject) => {
            let mut url = api.url(&["events"]);
            url.query_pairs_mut()
                .append_pair("subject", subject.as_deref().unwrap_or(">"));
            url
        }
    };
    let mut follower = Follower::new(api, url, args.last_event_id.map(|id| id.to_string()));
    loop {
        let frame = follower.next().await?;
        output::line(if api.json {
            frame.json_line()
        } else {
            frame.human_line()
        })?;
    }
}
