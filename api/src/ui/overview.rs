//! The overview (`/ui/`): each role's backlog, events per second and recent
//! failures, re-rendered every few seconds.
//!
//! No API route serves these counts yet, so they are read here, read-only, with
//! aggregate queries over the same tables the workers drain (the dashboard's only
//! direct reads, with the notified repos of `interface_changes.rs`):
//! - mutator: mutations `pending`;
//! - notifier: published interface changes without their notifier milestone;
//! - migrator: migration runs `pending` and `running`;
//! - forge: repos whose refresh claim is held now, and repos whose last refresh failed;
//! - relay: outbox commits not yet published.
//!
//! Events per second is the events the relay published in the last 60 s (read through
//! the index on `published_at`), divided by 60.

use axum::extract::State;
use maud::{Markup, html};
use serde_json::Value;

use super::{Page, Session, Ui, badge, ok, page as frame, text, when};
use crate::error::ApiError;

/// What the overview counts.
#[derive(Debug)]
struct Backlog {
    pending_mutations: i64,
    oldest_pending_mutation: Option<chrono::DateTime<chrono::Utc>>,
    unnotified_changes: i64,
    pending_migrations: i64,
    running_migrations: i64,
    forge_refreshing: i64,
    forge_failing: i64,
    unpublished_events: i64,
    events_last_minute: i64,
}

/// A failed migration run, as the overview lists it.
#[derive(Debug)]
struct FailedRun {
    slug: String,
    error: Option<String>,
    finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

async fn backlog(ui: &Ui) -> Result<Backlog, ApiError> {
    Ok(sqlx::query_as!(
        Backlog,
        r#"select
           (select count(*) from mutations where status = 'pending') as "pending_mutations!",
           (select min(created_at) from mutations where status = 'pending') as oldest_pending_mutation,
           (select count(*) from interface_changes c
             where c.status <> 'draft' and not exists (
               select 1 from progress_events p
               where p.interface_change_id = c.id and p.kind = 'milestone')) as "unnotified_changes!",
           (select count(*) from graph_migration_runs where status = 'pending') as "pending_migrations!",
           (select count(*) from graph_migration_runs where status = 'running') as "running_migrations!",
           (select count(*) from forge_repos
             where claimed_by is not null and claim_expires_at > now()) as "forge_refreshing!",
           (select count(*) from forge_repos where last_error is not null) as "forge_failing!",
           (select coalesce(sum(event_count), 0)::int8 from outbox_commits
             where published_at is null) as "unpublished_events!",
           (select coalesce(sum(event_count), 0)::int8 from outbox_commits
             where published_at > now() - interval '60 seconds') as "events_last_minute!""#,
    )
    .fetch_one(&ui.pool)
    .await?)
}

/// `GET /ui/`.
pub async fn page(State(ui): State<Ui>, session: Session) -> Page {
    let body = render(&ui, &session).await?;
    ok(frame(
        Some(&session),
        "Overview",
        html! {
            h1 { "Overview" }
            section data-poll="3000" data-refresh="/ui/overview" {
                div data-fragment { (body) }
            }
        },
    ))
}

/// `GET /ui/overview`: the overview's live part alone.
pub async fn fragment(State(ui): State<Ui>, session: Session) -> Page {
    ok(render(&ui, &session).await?)
}

async fn render(ui: &Ui, session: &Session) -> Result<Markup, super::Failure> {
    let backlog = backlog(ui).await?;
    let failed_mutations = ui.get(session, "/mutations?status=failed&limit=10").await?;
    let failed_runs = sqlx::query_as!(
        FailedRun,
        "select g.slug, r.error, r.finished_at
           from graph_migration_runs r join graphs g on g.id = r.graph_id
          where r.status = 'failed'
          order by r.finished_at desc nulls last, r.id desc limit 10",
    )
    .fetch_all(&ui.pool)
    .await
    .map_err(ApiError::from)?;
    let events_per_second = backlog.events_last_minute as f64 / 60.0;
    Ok(html! {
        h2 { "Backlogs" }
        div.stats {
            (stat("Pending mutations", backlog.pending_mutations, "mutator", Some("/ui/topologies")))
            (stat("Unnotified interface changes", backlog.unnotified_changes, "notifier", Some("/ui/interface-changes")))
            (stat("Pending migrations", backlog.pending_migrations, "migrator", Some("/ui/graphs")))
            (stat("Running migrations", backlog.running_migrations, "migrator", Some("/ui/graphs")))
            (stat("Forge refreshes in progress", backlog.forge_refreshing, "forge", None))
            (stat("Forge repos failing to refresh", backlog.forge_failing, "forge", None))
            (stat("Events not yet published", backlog.unpublished_events, "relay", None))
            div.stat #events-per-second {
                b { (format!("{events_per_second:.1}")) }
                "events published per second " span.muted { "(last minute)" }
            }
        }
        @if let Some(oldest) = backlog.oldest_pending_mutation {
            p.muted { "Oldest pending mutation enqueued " (oldest.format("%Y-%m-%d %H:%M:%S")) " UTC." }
        }
        h2 { "Recent failures" }
        div.two {
            div {
                h3 { "Mutations" }
                (failed_mutation_table(&failed_mutations))
            }
            div {
                h3 { "Migration runs" }
                @if failed_runs.is_empty() {
                    p.muted { "None." }
                } @else {
                    table {
                        thead { tr { th { "Graph" } th { "Error" } th { "Finished" } } }
                        tbody {
                            @for run in &failed_runs {
                                tr {
                                    td { a href={"/ui/graphs/" (super::encode(&run.slug))} { (run.slug) } }
                                    td { (run.error.clone().unwrap_or_default()) }
                                    td { (run.finished_at.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default()) }
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}

fn stat(label: &str, count: i64, role: &str, link: Option<&str>) -> Markup {
    html! {
        div.stat {
            b { (count) }
            @match link {
                Some(href) => a href=(href) { (label) },
                None => (label),
            }
            " " span.muted { "(" (role) ")" }
        }
    }
}

fn failed_mutation_table(list: &Value) -> Markup {
    let items = list["items"].as_array().cloned().unwrap_or_default();
    html! {
        @if items.is_empty() {
            p.muted { "None." }
        } @else {
            table {
                thead { tr { th { "Topology" } th { "Seq" } th { "Status" } th { "Error" } th { "Finished" } } }
                tbody {
                    @for m in &items {
                        tr {
                            td { a href={"/ui/topologies/" (text(&m["topology_id"]))} { (text(&m["topology_id"])) } }
                            td { (text(&m["seq"])) }
                            td { (badge(&text(&m["status"]))) }
                            td { (text(&m["error"])) }
                            td { (when(&m["finished_at"])) }
                        }
                    }
                }
            }
        }
    }
}
