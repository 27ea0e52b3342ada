//! Graphs and migrations (`/ui/graphs`): the list, and one graph's page with its
//! version, its read-only banner (`migrating`, or `migration_failed` with the failed
//! run's reason), a live progress bar for the newest run, the history (newest
//! first), and the re-migrate and cancel buttons.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::Method;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    CsrfForm, CursorQuery, Failure, JsonForm, NoticeQuery, Page, Session, Ui, after, badge,
    button_form, csrf_field, encode, error_banner, event_names, json_form, notice_banner, ok, page,
    page_query, pager, parse_json, text, when,
};
use crate::loopback::Refusal;

/// `GET /ui/graphs`.
pub async fn list(
    State(ui): State<Ui>,
    session: Session,
    Query(query): Query<CursorQuery>,
) -> Page {
    ok(render_list(&ui, &session, &query, None, None).await?)
}

/// The new-graph form, as typed.
#[derive(Debug, Default, Deserialize)]
pub(super) struct GraphForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    slug: String,
    #[serde(default)]
    plugin: String,
}

/// `POST /ui/graphs` (operator): a graph at its plugin's current version.
pub async fn create(State(ui): State<Ui>, session: Session, Form(form): Form<GraphForm>) -> Page {
    session.check(&form.csrf)?;
    let body = json!({"slug": form.slug.trim(), "plugin": form.plugin.trim()});
    let result = ui
        .send(&session, Method::POST, "/graphs", Some(&body), &[])
        .await;
    let (ui, session, form) = (&ui, &session, &form);
    after(
        result,
        |_| format!("/ui/graphs/{}?notice=created", encode(form.slug.trim())),
        move |refusal| async move {
            render_list(
                ui,
                session,
                &CursorQuery::default(),
                Some(&refusal),
                Some(form),
            )
            .await
        },
    )
    .await
}

async fn render_list(
    ui: &Ui,
    session: &Session,
    query: &CursorQuery,
    error: Option<&Refusal>,
    typed: Option<&GraphForm>,
) -> Result<Markup, Failure> {
    let blank = GraphForm::default();
    let typed = typed.unwrap_or(&blank);
    let list = ui
        .get(
            session,
            &format!("/graphs?{}", page_query(query.cursor.as_deref())),
        )
        .await?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    Ok(page(
        Some(session),
        "Graphs",
        html! {
            h1 { "Graphs" }
            (error_banner(error))
            table #graphs {
                thead { tr { th { "Slug" } th { "Plugin" } th { "Version" } th { "Status" } th { "Nodes" } th { "Updated" } } }
                tbody {
                    @for g in &items {
                        tr {
                            td { a href={"/ui/graphs/" (encode(&text(&g["slug"])))} { (text(&g["slug"])) } }
                            td { (text(&g["plugin"])) }
                            td { (text(&g["schema_version"])) }
                            td { (badge(&text(&g["status"]))) }
                            td { (text(&g["node_count"])) }
                            td { (when(&g["updated_at"])) }
                        }
                    }
                }
            }
            @if items.is_empty() { p.muted { "No graphs yet." } }
            (pager("/ui/graphs", "cursor", query.cursor.as_deref(), &list))
            @if ui.may(session, Method::POST, "/graphs") {
                h2 { "New graph" }
                form.stack #new-graph method="post" action="/ui/graphs" {
                    (csrf_field(session))
                    label { "Slug" input name="slug" required value=(typed.slug); }
                    label { "Plugin" input name="plugin" required value=(typed.plugin); }
                    button type="submit" { "Create" }
                }
            }
        },
    ))
}

/// `?cursor=&notice=` of a graph's page.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ShowQuery {
    #[serde(flatten)]
    page: CursorQuery,
    #[serde(flatten)]
    notice: NoticeQuery,
}

/// `GET /ui/graphs/{slug}`.
pub async fn show(
    State(ui): State<Ui>,
    session: Session,
    Path(slug): Path<String>,
    Query(query): Query<ShowQuery>,
) -> Page {
    ok(render(&ui, &session, &slug, &query, None, None, None).await?)
}

async fn render(
    ui: &Ui,
    session: &Session,
    slug: &str,
    query: &ShowQuery,
    error: Option<&Refusal>,
    typed: Option<&ReMigrateForm>,
    typed_nodes: Option<&str>,
) -> Result<Markup, Failure> {
    let live = render_live(ui, session, slug, &query.page).await?;
    let notice = query.notice.notice.as_deref();
    let query = &query.page;
    let stream = format!("/api/v1/graphs/{}/events", encode(slug));
    let refresh = format!(
        "/ui/graphs/{}/live{}",
        encode(slug),
        query
            .cursor
            .as_deref()
            .map(|c| format!("?cursor={}", encode(c)))
            .unwrap_or_default()
    );
    let body = html! {
        p { a href="/ui/graphs" { "← Graphs" } }
        h1 { (slug) }
        (notice_banner(notice))
        (error_banner(error))
        section.live #live data-stream=(stream) data-events=(event_names()) data-refresh=(refresh) {
            div data-fragment { (live) }
            @if ui.may(session, Method::POST, "/graphs/{slug}/re-migrate") {
                h2 { "Migrate" }
                form.stack #re-migrate method="post" action={"/ui/graphs/" (encode(slug)) "/re-migrate"} {
                    (csrf_field(session))
                    label { "Target version (empty: the plugin's current version)" input name="target_version" inputmode="numeric" value=[typed.map(|t| t.target_version.as_str())]; }
                    button type="submit" { "Re-migrate" }
                }
            }
            @if ui.may(session, Method::POST, "/graphs/{slug}/nodes") {
                h2 { "Write nodes" }
                (json_form(session, "write-nodes", &format!("/ui/graphs/{}/nodes", encode(slug)), "Nodes, as POST /api/v1/graphs/{slug}/nodes takes them (an existing id is replaced)", NODES_EXAMPLE, typed_nodes, "Write"))
            }
            h3 { "Event log " span.stream-state.muted { "connecting" } }
            ol.log {}
        }
    };
    Ok(page(Some(session), "Graphs", body))
}

/// `GET /ui/graphs/{slug}/live`: the banner, progress and history alone.
pub async fn fragment(
    State(ui): State<Ui>,
    session: Session,
    Path(slug): Path<String>,
    Query(query): Query<CursorQuery>,
) -> Page {
    ok(render_live(&ui, &session, &slug, &query).await?)
}

async fn render_live(
    ui: &Ui,
    session: &Session,
    slug: &str,
    query: &CursorQuery,
) -> Result<Markup, Failure> {
    let graph = ui
        .get(session, &format!("/graphs/{}", encode(slug)))
        .await?;
    let runs = ui
        .get(
            session,
            &format!(
                "/graphs/{}/migrations?{}",
                encode(slug),
                page_query(query.cursor.as_deref())
            ),
        )
        .await?;
    let items = runs["items"].as_array().cloned().unwrap_or_default();
    let status = text(&graph["status"]);
    // The newest run: the first of the first page, or fetched alone on a later page.
    let newest = match query.cursor {
        None => runs["items"][0].clone(),
        Some(_) => ui
            .get(
                session,
                &format!("/graphs/{}/migrations?limit=1", encode(slug)),
            )
            .await?["items"][0]
            .clone(),
    };
    let newest = &newest;
    // The run a `migration_failed` graph is failed by: its newest run.
    let failed = (newest["status"] == "failed").then_some(newest);
    let may_cancel = ui.may(
        session,
        Method::POST,
        "/graphs/{slug}/migrations/{run_id}/cancel",
    );
    Ok(html! {
        p #graph-state {
            "Plugin " b { (text(&graph["plugin"])) } " · schema version " b #schema-version { (text(&graph["schema_version"])) }
            " · " (text(&graph["node_count"])) " nodes · " (badge(&status))
        }
        // Migration events move it as they arrive; each re-render sets it from the server.
        div #progress {
            p { "Newest migration run: "
                span #progress-text {
                    @if newest.is_null() { "none yet" }
                    @else { (text(&newest["processed"])) " / " (text(&newest["total"])) " nodes" }
                }
            }
            progress.migration max=(newest["total"].as_i64().unwrap_or(0).max(1)) value=(newest["processed"].as_i64().unwrap_or(0)) {}
        }
        @match status.as_str() {
            "migrating" => div.banner.migrating #banner role="status" {
                b { "Read-only: migrating." } " Node writes are refused until the run ends."
            },
            "migration_failed" => div.banner.migration_failed #banner role="alert" {
                b { "Migration failed: " }
                (failed.map(|r| text(&r["error"])).unwrap_or_default())
                ". The graph is writable: repair the nodes (POST /api/v1/graphs/{slug}/nodes) and re-migrate, or cancel the failed run."
            },
            _ => {},
        }
        h2 { "History" }
        @if items.is_empty() {
            p.muted { "Never migrated." }
        } @else {
            table #history {
                thead { tr { th { "Versions" } th { "Status" } th { "Processed" } th { "Error" } th { "Requested" } th { "Started" } th { "Finished" } th {} } }
                tbody {
                    @for run in &items {
                        @let run_status = text(&run["status"]);
                        tr data-run=(text(&run["id"])) {
                            td { (text(&run["from_version"])) " → " (text(&run["to_version"])) }
                            td { (badge(&run_status)) }
                            td { (text(&run["processed"])) " / " (text(&run["total"])) }
                            td { (text(&run["error"])) }
                            td { (when(&run["created_at"])) }
                            td { (when(&run["started_at"])) }
                            td { (when(&run["finished_at"])) }
                            td {
                                @if may_cancel && run["cancel_requested_at"].is_null() && (matches!(run_status.as_str(), "pending" | "running") || (status == "migration_failed" && run["id"] == newest["id"])) {
                                    (button_form(session, &format!("/ui/graphs/{}/migrations/{}/cancel", encode(slug), text(&run["id"])), "Cancel", Some("Cancel this run?")))
                                }
                            }
                        }
                    }
                }
            }
        }
        (pager(&format!("/ui/graphs/{}", encode(slug)), "cursor", query.cursor.as_deref(), &runs))
    })
}

/// The re-migrate form, as typed.
#[derive(Debug, Deserialize)]
pub(super) struct ReMigrateForm {
    #[serde(default)]
    csrf: String,
    /// Empty (the plugin's current version) or a whole number.
    #[serde(default)]
    target_version: String,
}

/// `POST /ui/graphs/{slug}/re-migrate`.
pub async fn re_migrate(
    State(ui): State<Ui>,
    session: Session,
    Path(slug): Path<String>,
    Form(form): Form<ReMigrateForm>,
) -> Page {
    session.check(&form.csrf)?;
    let target = form.target_version.trim();
    let body = if target.is_empty() {
        Ok(json!({}))
    } else {
        target
            .parse::<i32>()
            .map(|v| json!({"target_version": v}))
            .map_err(|_| Refusal {
                status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid_request".to_owned(),
                message: format!("target_version must be a whole number, got {target:?}"),
            })
    };
    let result = match body {
        Ok(body) => {
            ui.send(
                &session,
                Method::POST,
                &format!("/graphs/{}/re-migrate", encode(&slug)),
                Some(&body),
                &[],
            )
            .await
        }
        Err(refusal) => Err(refusal),
    };
    back_to_graph(ui, session, slug, result, "requested", Some(&form)).await
}

/// `POST /ui/graphs/{slug}/migrations/{run_id}/cancel`.
pub async fn cancel(
    State(ui): State<Ui>,
    session: Session,
    Path((slug, run_id)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Page {
    session.check(&form.csrf)?;
    let result = ui
        .send(
            &session,
            Method::POST,
            &format!(
                "/graphs/{}/migrations/{}/cancel",
                encode(&slug),
                encode(&run_id)
            ),
            None,
            &[],
        )
        .await;
    back_to_graph(ui, session, slug, result, "cancelled", None).await
}

/// What a nodes write looks like, shown in its empty text area.
const NODES_EXAMPLE: &str =
    r#"{"nodes": [{"id": "sw1", "data": {"kind": "switch", "weight": 1}}]}"#;

/// `POST /ui/graphs/{slug}/nodes` (operator).
pub async fn write_nodes(
    State(ui): State<Ui>,
    session: Session,
    Path(slug): Path<String>,
    Form(form): Form<JsonForm>,
) -> Page {
    session.check(&form.csrf)?;
    let result = match parse_json("the nodes", &form.json) {
        Ok(body) => {
            ui.send(
                &session,
                Method::POST,
                &format!("/graphs/{}/nodes", encode(&slug)),
                Some(&body),
                &[],
            )
            .await
        }
        Err(refusal) => Err(refusal),
    };
    let (ui, session, form, slug) = (&ui, &session, &form, &slug);
    after(
        result,
        |_| format!("/ui/graphs/{}?notice=written", encode(slug)),
        move |refusal| async move {
            render(
                ui,
                session,
                slug,
                &ShowQuery::default(),
                Some(&refusal),
                None,
                Some(&form.json),
            )
            .await
        },
    )
    .await
}

/// Back to the graph's page with `notice`, or the page again with the API's refusal
/// and the form as typed.
async fn back_to_graph(
    ui: Ui,
    session: Session,
    slug: String,
    result: Result<Value, Refusal>,
    notice: &str,
    typed: Option<&ReMigrateForm>,
) -> Page {
    let (ui, session, slug) = (&ui, &session, &slug);
    after(
        result,
        |_| format!("/ui/graphs/{}?notice={notice}", encode(slug)),
        move |refusal| async move {
            render(
                ui,
                session,
                slug,
                &ShowQuery::default(),
                Some(&refusal),
                typed,
                None,
            )
            .await
        },
    )
    .await
}
