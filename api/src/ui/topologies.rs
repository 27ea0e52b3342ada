//! Topologies (`/ui/topologies`): the list, and one topology's page with its document,
//! its mutations (newest first) and a live log that follows its event stream. A
//! mutation enqueued anywhere appears in the live table as pending, then applied or
//! failed; the mutations pending when the page opens are there from the snapshot.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::Method;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    CursorQuery, Failure, NoticeQuery, Page, Session, Ui, after, badge, csrf_field, encode,
    error_banner, event_names, notice_banner, ok, page, page_query, pager, parse_json, pretty,
    text, when,
};
use crate::loopback::Refusal;

/// `GET /ui/topologies`.
pub async fn list(
    State(ui): State<Ui>,
    session: Session,
    Query(query): Query<CursorQuery>,
) -> Page {
    ok(render_list(&ui, &session, &query, None, None).await?)
}

async fn render_list(
    ui: &Ui,
    session: &Session,
    query: &CursorQuery,
    error: Option<&Refusal>,
    typed: Option<&CreateForm>,
) -> Result<Markup, Failure> {
    let list = ui
        .get(
            session,
            &format!("/topologies?{}", page_query(query.cursor.as_deref())),
        )
        .await?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let body = html! {
        h1 { "Topologies" }
        (error_banner(error))
        table #topologies {
            thead { tr { th { "Name" } th { "Version" } th { "Status" } th { "Updated" } } }
            tbody {
                @for t in &items {
                    tr {
                        td { a href={"/ui/topologies/" (text(&t["id"]))} { (text(&t["name"])) } }
                        td { (text(&t["version"])) }
                        td { (badge(&text(&t["status"]))) }
                        td { (when(&t["updated_at"])) }
                    }
                }
            }
        }
        @if items.is_empty() { p.muted { "No topologies yet." } }
        (pager("/ui/topologies", "cursor", query.cursor.as_deref(), &list))
        @if ui.may(session, Method::POST, "/topologies") {
            h2 { "New topology" }
            form.stack method="post" action="/ui/topologies" {
                (csrf_field(session))
                label { "Name" input name="name" required value=[typed.map(|t| t.name.as_str())]; }
                label { "Document (JSON)" textarea name="document" { (typed.map_or("{}", |t| t.document.as_str())) } }
                button type="submit" { "Create" }
            }
        }
    };
    Ok(page(Some(session), "Topologies", body))
}

/// The new-topology form.
#[derive(Debug, Deserialize)]
pub(super) struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    /// JSON text.
    #[serde(default)]
    document: String,
}

/// `POST /ui/topologies`.
pub async fn create(State(ui): State<Ui>, session: Session, Form(form): Form<CreateForm>) -> Page {
    session.check(&form.csrf)?;
    let result = match parse_json("document", &form.document) {
        Ok(document) => {
            ui.send(
                &session,
                Method::POST,
                "/topologies",
                Some(&json!({"name": form.name, "document": document})),
                &[],
            )
            .await
        }
        Err(refusal) => Err(refusal),
    };
    let (ui, session, form) = (&ui, &session, &form);
    after(
        result,
        |created| format!("/ui/topologies/{}?notice=created", text(&created["id"])),
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

/// `?cursor=&notice=` of a topology's page.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ShowQuery {
    #[serde(flatten)]
    page: CursorQuery,
    #[serde(flatten)]
    notice: NoticeQuery,
}

/// `GET /ui/topologies/{id}`.
pub async fn show(
    State(ui): State<Ui>,
    session: Session,
    Path(id): Path<String>,
    Query(query): Query<ShowQuery>,
) -> Page {
    ok(render(&ui, &session, &id, &query, None, None).await?)
}

async fn render(
    ui: &Ui,
    session: &Session,
    id: &str,
    query: &ShowQuery,
    error: Option<&Refusal>,
    typed: Option<&EnqueueForm>,
) -> Result<Markup, Failure> {
    let topology = ui
        .get(session, &format!("/topologies/{}", encode(id)))
        .await?;
    let live = render_live(ui, session, id, &query.page, &topology).await?;
    let stream = format!("/api/v1/topologies/{}/events", encode(id));
    let refresh = format!(
        "/ui/topologies/{}/live{}",
        encode(id),
        query
            .page
            .cursor
            .as_deref()
            .map(|c| format!("?cursor={}", encode(c)))
            .unwrap_or_default()
    );
    let body = html! {
        p { a href="/ui/topologies" { "← Topologies" } }
        h1 { (text(&topology["name"])) }
        (notice_banner(query.notice.notice.as_deref()))
        (error_banner(error))
        div.two {
            div {
                section.live #live data-stream=(stream) data-events=(event_names()) data-refresh=(refresh) {
                    h2 { "Live " span.stream-state.muted { "connecting" } }
                    table.live-mutations {
                        thead { tr { th { "Seq" } th { "Mutation" } th { "Status" } th { "Outcome" } } }
                        tbody {}
                    }
                    h3 { "Event log" }
                    ol.log {}
                    div data-fragment { (live) }
                }
            }
            div {
                @if ui.may(session, Method::POST, "/topologies/{id}/mutations") {
                    h2 { "Enqueue a mutation" }
                    form.stack #enqueue method="post" action={"/ui/topologies/" (encode(id)) "/mutations"} {
                        (csrf_field(session))
                        // One key per rendering of the form: submitting it twice (a
                        // double click, a resend) enqueues once.
                        // After a 5xx the enqueue may or may not have happened: the
                        // form keeps its key, so sending it again cannot enqueue twice.
                        input type="hidden" name="idempotency_key" value=(match (typed, error) {
                            (Some(typed), Some(error)) if error.status.is_server_error() && !typed.idempotency_key.is_empty() => typed.idempotency_key.clone(),
                            _ => uuid::Uuid::now_v7().to_string(),
                        });
                        label { "RFC 6902 operations: only the JSON array"
                            textarea name="ops" required placeholder="[{\"op\": \"add\", \"path\": \"/key\", \"value\": 1}]" {
                                (typed.map_or("", |t| t.ops.as_str()))
                            }
                        }
                        label { "If version (optional)"
                            input name="if_version" inputmode="numeric" value=[typed.map(|t| t.if_version.as_str())];
                        }
                        button type="submit" { "Enqueue" }
                    }
                }
            }
        }
    };
    Ok(page(Some(session), "Topologies", body))
}

/// `GET /ui/topologies/{id}/live`: the document and the mutations table alone.
pub async fn fragment(
    State(ui): State<Ui>,
    session: Session,
    Path(id): Path<String>,
    Query(query): Query<CursorQuery>,
) -> Page {
    let topology = ui
        .get(&session, &format!("/topologies/{}", encode(&id)))
        .await?;
    ok(render_live(&ui, &session, &id, &query, &topology).await?)
}

async fn render_live(
    ui: &Ui,
    session: &Session,
    id: &str,
    query: &CursorQuery,
    topology: &Value,
) -> Result<Markup, Failure> {
    let mutations = ui
        .get(
            session,
            &format!(
                "/topologies/{}/mutations?order=desc&{}",
                encode(id),
                page_query(query.cursor.as_deref())
            ),
        )
        .await?;
    let items = mutations["items"].as_array().cloned().unwrap_or_default();
    Ok(html! {
        p #topology-state {
            "Version " b #version { (text(&topology["version"])) } " · " (badge(&text(&topology["status"])))
            " · updated " (when(&topology["updated_at"]))
        }
        h3 { "Document" }
        (pretty(&topology["document"]))
        h3 { "Mutations (newest first)" }
        table #mutations {
            thead { tr { th { "Seq" } th { "Status" } th { "Error" } th { "Applied version" } th { "Enqueued" } th { "Finished" } } }
            tbody {
                @for m in &items {
                    tr data-mutation=(text(&m["id"])) {
                        td { (text(&m["seq"])) }
                        td { (badge(&text(&m["status"]))) }
                        td { (text(&m["error"])) }
                        td { (text(&m["applied_version"])) }
                        td { (when(&m["created_at"])) }
                        td { (when(&m["finished_at"])) }
                    }
                }
            }
        }
        (pager(&format!("/ui/topologies/{}", encode(id)), "cursor", query.cursor.as_deref(), &mutations))
    })
}

/// The enqueue form, as typed.
#[derive(Debug, Deserialize)]
pub(super) struct EnqueueForm {
    #[serde(default)]
    csrf: String,
    /// Sent as `Idempotency-Key`.
    #[serde(default)]
    idempotency_key: String,
    /// The JSON array of operations.
    #[serde(default)]
    ops: String,
    /// Empty, or a whole number.
    #[serde(default)]
    if_version: String,
}

/// `POST /ui/topologies/{id}/mutations`.
pub async fn enqueue(
    State(ui): State<Ui>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<EnqueueForm>,
) -> Page {
    session.check(&form.csrf)?;
    let result = async {
        let ops = parse_json("ops", &form.ops)?;
        if !ops.is_array() {
            return Err(Refusal {
                status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid_request".to_owned(),
                message: "ops must be the JSON array of operations alone, [{\"op\": …}, …]; put if_version in its own field".to_owned(),
            });
        }
        let mut body = json!({"ops": ops});
        let if_version = form.if_version.trim();
        if !if_version.is_empty() {
            body["if_version"] = json!(if_version.parse::<i64>().map_err(|_| Refusal {
                status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid_request".to_owned(),
                message: format!("if_version must be a whole number, got {if_version:?}"),
            })?);
        }
        let key = form.idempotency_key.trim();
        let headers = if key.is_empty() {
            Vec::new()
        } else {
            vec![("idempotency-key", key.to_owned())]
        };
        ui.send(
            &session,
            Method::POST,
            &format!("/topologies/{}/mutations", encode(&id)),
            Some(&body),
            &headers,
        )
        .await
    }
    .await;
    let (ui, session, form, id) = (&ui, &session, &form, &id);
    after(
        result,
        |_| format!("/ui/topologies/{}?notice=enqueued", encode(id)),
        move |refusal| async move {
            render(
                ui,
                session,
                id,
                &ShowQuery::default(),
                Some(&refusal),
                Some(form),
            )
            .await
        },
    )
    .await
}
