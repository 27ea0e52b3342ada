//! Repos (`/ui/repos`): the registry, and one repo's dispatch (its pending interface
//! changes, unread inbox and recent progress), re-rendered live from the repo's
//! event stream.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::Method;
use maud::{Markup, html};

use serde::Deserialize;

use super::{
    CsrfForm, CursorQuery, Failure, NoticeQuery, Page, Session, Ui, after, badge, button_form,
    csrf_field, encode, error_banner, event_names, notice_banner, ok, page, page_query, pager,
    text, when,
};
use crate::loopback::Refusal;

/// `GET /ui/repos`.
pub async fn list(
    State(ui): State<Ui>,
    session: Session,
    Query(query): Query<CursorQuery>,
) -> Page {
    ok(render_list(&ui, &session, &query, None, None).await?)
}

/// The register-a-repo form, as typed.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RepoForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    slug: String,
    #[serde(default)]
    name: String,
    /// Empty for none.
    #[serde(default)]
    domain: String,
    /// Empty for none.
    #[serde(default)]
    remote_url: String,
    /// Empty for none.
    #[serde(default)]
    description: String,
}

/// `POST /ui/repos` (admin): registers a repo.
pub async fn register(State(ui): State<Ui>, session: Session, Form(form): Form<RepoForm>) -> Page {
    session.check(&form.csrf)?;
    let mut body = serde_json::json!({"slug": form.slug.trim(), "name": form.name});
    for (key, value) in [
        ("domain", &form.domain),
        ("remote_url", &form.remote_url),
        ("description", &form.description),
    ] {
        if !value.trim().is_empty() {
            body[key] = serde_json::json!(value.trim());
        }
    }
    let result = ui
        .send(&session, Method::POST, "/repos", Some(&body), &[])
        .await;
    let (ui, session, form) = (&ui, &session, &form);
    after(
        result,
        |_| format!("/ui/repos/{}?notice=created", encode(form.slug.trim())),
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
    typed: Option<&RepoForm>,
) -> Result<Markup, Failure> {
    let blank = RepoForm::default();
    let typed = typed.unwrap_or(&blank);
    let list = ui
        .get(
            session,
            &format!(
                "/repos?include_archived=true&{}",
                page_query(query.cursor.as_deref())
            ),
        )
        .await?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    Ok(page(
        Some(session),
        "Repos",
        html! {
            h1 { "Repos" }
            (error_banner(error))
            table #repos {
                thead { tr { th { "Slug" } th { "Name" } th { "Domain" } th { "Archived" } } }
                tbody {
                    @for r in &items {
                        tr {
                            td { a href={"/ui/repos/" (encode(&text(&r["slug"])))} { (text(&r["slug"])) } }
                            td { (text(&r["name"])) }
                            td { (text(&r["domain"])) }
                            td { (when(&r["archived_at"])) }
                        }
                    }
                }
            }
            @if items.is_empty() { p.muted { "No repos registered." } }
            (pager("/ui/repos", "cursor", query.cursor.as_deref(), &list))
            @if ui.may(session, Method::POST, "/repos") {
                h2 { "Register a repo" }
                form.stack #register-repo method="post" action="/ui/repos" {
                    (csrf_field(session))
                    label { "Slug (1-63 lowercase letters, digits and dashes)" input name="slug" required value=(typed.slug); }
                    label { "Name" input name="name" required value=(typed.name); }
                    label { "Domain (optional)" input name="domain" value=(typed.domain); }
                    label { "Remote URL (optional)" input name="remote_url" value=(typed.remote_url); }
                    label { "Description (optional)" input name="description" value=(typed.description); }
                    button type="submit" { "Register" }
                }
            }
        },
    ))
}

/// `GET /ui/repos/{slug}`.
pub async fn show(
    State(ui): State<Ui>,
    session: Session,
    Path(slug): Path<String>,
    Query(query): Query<NoticeQuery>,
) -> Page {
    ok(render(&ui, &session, &slug, query.notice.as_deref(), None).await?)
}

async fn render(
    ui: &Ui,
    session: &Session,
    slug: &str,
    notice: Option<&str>,
    error: Option<&Refusal>,
) -> Result<Markup, Failure> {
    let live = render_live(ui, session, slug).await?;
    let repo = ui.get(session, &format!("/repos/{}", encode(slug))).await?;
    let body = html! {
        p { a href="/ui/repos" { "← Repos" } }
        h1 { (slug) }
        (notice_banner(notice))
        (error_banner(error))
        @if !repo["archived_at"].is_null() {
            p #archived { (badge("archived")) " since " (when(&repo["archived_at"])) ": it gets no interface-change notifications." }
        } @else if ui.may(session, Method::POST, "/repos/{slug}/archive") {
            p { (button_form(session, &format!("/ui/repos/{}/archive", encode(slug)), "Archive", Some("Archive this repo? It gets no more interface-change notifications."))) }
        }
        section.live #live data-stream={"/api/v1/repos/" (encode(slug)) "/events"}
            data-events=(event_names()) data-refresh={"/ui/repos/" (encode(slug)) "/live"} {
            div data-fragment { (live) }
            h3 { "Event log " span.stream-state.muted { "connecting" } }
            ol.log {}
        }
    };
    Ok(page(Some(session), "Repos", body))
}

/// `GET /ui/repos/{slug}/live`: the dispatch alone.
pub async fn fragment(State(ui): State<Ui>, session: Session, Path(slug): Path<String>) -> Page {
    ok(render_live(&ui, &session, &slug).await?)
}

async fn render_live(ui: &Ui, session: &Session, slug: &str) -> Result<Markup, Failure> {
    let dispatch = ui
        .get(session, &format!("/repos/{}/dispatch", encode(slug)))
        .await?;
    let changes = dispatch["pending_interface_changes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let inbox = dispatch["unread_inbox"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let progress = dispatch["recent_progress"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let may_read = ui.may(
        session,
        Method::POST,
        "/repos/{slug}/inbox/{message_id}/read",
    );
    Ok(html! {
        p.muted { (text(&dispatch["repo"]["name"])) " · dispatch generated " (when(&dispatch["generated_at"])) }
        h2 { "Pending interface changes (" (changes.len()) ")" }
        @if changes.is_empty() { p.muted { "None." } } @else {
            table #pending-changes {
                thead { tr { th { "Title" } th { "Types" } th { "From" } th { "Planned for" } th { "Published" } } }
                tbody {
                    @for c in &changes {
                        tr {
                            td { a href={"/ui/interface-changes/" (text(&c["id"]))} { (text(&c["title"])) } }
                            td { span class={"badge " (text(&c["change_type"]))} { (text(&c["change_type"])) } " " span.badge { (text(&c["interface_type"])) } }
                            td { (text(&c["origin_repo_slug"])) }
                            td { (text(&c["planned_for"])) }
                            td { (when(&c["published_at"])) }
                        }
                    }
                }
            }
        }
        h2 { "Unread inbox (" span #unread-count { (text(&dispatch["unread_inbox_count"])) } ")" }
        @if inbox.is_empty() { p.muted { "Nothing unread." } } @else {
            table #inbox {
                thead { tr { th { "Subject" } th { "From" } th { "Received" } th {} } }
                tbody {
                    @for m in &inbox {
                        tr {
                            td { (text(&m["subject"])) }
                            td { (text(&m["from_repo_slug"])) }
                            td { (when(&m["created_at"])) }
                            td {
                                @if may_read {
                                    (button_form(session, &format!("/ui/repos/{}/inbox/{}/read", encode(slug), text(&m["id"])), "Mark read", None))
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Recent progress" }
        @if progress.is_empty() { p.muted { "None." } } @else {
            table #progress {
                thead { tr { th { "Kind" } th { "Summary" } th { "When" } } }
                tbody {
                    @for p in &progress {
                        tr {
                            td { (badge(&text(&p["kind"]))) }
                            td { (text(&p["summary"])) }
                            td { (when(&p["created_at"])) }
                        }
                    }
                }
            }
        }
    })
}

/// `POST /ui/repos/{slug}/archive` (admin).
pub async fn archive(
    State(ui): State<Ui>,
    session: Session,
    Path(slug): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Page {
    session.check(&form.csrf)?;
    let path = format!("/repos/{}/archive", encode(&slug));
    let (ui, session, slug) = (&ui, &session, &slug);
    after(
        ui.send(session, Method::POST, &path, None, &[]).await,
        |_| format!("/ui/repos/{}?notice=archived", encode(slug)),
        move |refusal| async move { render(ui, session, slug, None, Some(&refusal)).await },
    )
    .await
}

/// `POST /ui/repos/{slug}/inbox/{message_id}/read`.
pub async fn mark_read(
    State(ui): State<Ui>,
    session: Session,
    Path((slug, message)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Page {
    session.check(&form.csrf)?;
    let path = format!("/repos/{}/inbox/{}/read", encode(&slug), encode(&message));
    let result = ui.send(&session, Method::POST, &path, None, &[]).await;
    let (ui, session, slug) = (&ui, &session, &slug);
    after(
        result,
        |_| format!("/ui/repos/{}?notice=read", encode(slug)),
        move |refusal| async move { render(ui, session, slug, None, Some(&refusal)).await },
    )
    .await
}
