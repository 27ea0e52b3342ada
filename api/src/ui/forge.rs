//! The forge cache (`/ui/rfcs`, `/ui/forge`): RFCs with their branches and pull
//! requests, live; the cached repos, the sweeps and the parse errors, with the
//! admin's buttons to ask for a sweep or a rebuild.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use maud::{Markup, html};

use crate::loopback::Refusal;

use super::{
    CsrfForm, CursorQuery, Failure, NoticeQuery, Page, Session, Ui, after, badge, button_form,
    encode, error_banner, event_names, items, joined, list_table, notice_banner, ok, page,
    page_query, pager, text, when,
};

/// `GET /ui/rfcs`.
pub async fn rfcs(
    State(ui): State<Ui>,
    session: Session,
    Query(query): Query<CursorQuery>,
) -> Page {
    let list = ui
        .get(
            &session,
            &format!("/rfcs?{}", page_query(query.cursor.as_deref())),
        )
        .await?;
    let link = |rfc: &serde_json::Value| format!("/ui/rfcs/{}", encode(&text(&rfc["slug"])));
    ok(page(
        Some(&session),
        "RFCs",
        html! {
            h1 { "RFCs" }
            p.muted { "The forge cache: what Gitea's meta repo and each graduated RFC's repo hold, kept by the forge role." }
            (list_table("rfcs", &items(&list), &[("Slug", "slug"), ("Title", "title"), ("State", "state"), ("Repo", "repo"), ("Owners", "owners"), ("Tags", "tags"), ("Missing upstream", "missing_upstream"), ("Updated", "updated_at")], Some(&link)))
            (pager("/ui/rfcs", "cursor", query.cursor.as_deref(), &list))
        },
    ))
}

/// `GET /ui/rfcs/{slug}`: one RFC, following its events.
pub async fn rfc(State(ui): State<Ui>, session: Session, Path(slug): Path<String>) -> Page {
    let live = rfc_live(&ui, &session, &slug).await?;
    ok(page(
        Some(&session),
        "RFCs",
        html! {
            p { a href="/ui/rfcs" { "← RFCs" } }
            h1 { (slug) }
            section.live #live data-stream={"/api/v1/rfcs/" (encode(&slug)) "/events"}
                data-events=(event_names()) data-refresh={"/ui/rfcs/" (encode(&slug)) "/live"} {
                div data-fragment { (live) }
                h3 { "Event log " span.stream-state.muted { "connecting" } }
                ol.log {}
            }
        },
    ))
}

/// `GET /ui/rfcs/{slug}/live`.
pub async fn rfc_fragment(
    State(ui): State<Ui>,
    session: Session,
    Path(slug): Path<String>,
) -> Page {
    ok(rfc_live(&ui, &session, &slug).await?)
}

async fn rfc_live(ui: &Ui, session: &Session, slug: &str) -> Result<Markup, Failure> {
    let slug = encode(slug);
    let rfc = ui.get(session, &format!("/rfcs/{slug}")).await?;
    let branches = ui
        .get(session, &format!("/rfcs/{slug}/branches?limit=100"))
        .await?;
    let pulls = ui
        .get(session, &format!("/rfcs/{slug}/pulls?limit=100"))
        .await?;
    let summary = &rfc["summary"];
    Ok(html! {
        p #rfc-state {
            b { (text(&summary["title"])) } " · " (badge(&text(&summary["state"])))
            " · repo " (text(&summary["repo"])) " · updated " (when(&summary["updated_at"]))
        }
        p.muted { "Owners: " (joined(&summary["owners"])) " · arbiters: " (joined(&summary["arbiters"])) }
        h2 { "Branches" }
        (list_table("branches", &items(&branches), &[("Repo", "repo"), ("Name", "name"), ("State", "state"), ("Head", "head_sha"), ("Committed", "committed_at")], None))
        (more(&branches))
        h2 { "Pull requests" }
        (list_table("pulls", &items(&pulls), &[("Number", "number"), ("Title", "title"), ("Kind", "kind"), ("State", "state"), ("Branch", "head_branch"), ("Opened by", "opened_by"), ("Opened", "created_at"), ("Merged", "merged_at"), ("Closed", "closed_at")], None))
        (more(&pulls))
        h2 { "Body" }
        pre { (text(&rfc["body"])) }
    })
}

/// `GET /ui/forge`: the cache's bookkeeping, re-rendered every 5 s.
pub async fn cache(
    State(ui): State<Ui>,
    session: Session,
    Query(query): Query<NoticeQuery>,
) -> Page {
    ok(render_cache(&ui, &session, query.notice.as_deref(), None).await?)
}

async fn render_cache(
    ui: &Ui,
    session: &Session,
    notice: Option<&str>,
    error: Option<&Refusal>,
) -> Result<Markup, Failure> {
    let live = forge_live(ui, session).await?;
    Ok(page(
        Some(session),
        "Forge",
        html! {
            h1 { "Forge" }
            (notice_banner(notice))
            (error_banner(error))
            p {
                @if ui.may(session, Method::POST, "/forge/reconcile") {
                    (button_form(session, "/ui/forge/reconcile", "Sweep now", Some("Read every repo from Gitea again?")))
                    " "
                }
                @if ui.may(session, Method::POST, "/forge/rebuild") {
                    (button_form(session, "/ui/forge/rebuild", "Rebuild the cache", Some("Drop the cache and rebuild it from Gitea?")))
                }
            }
            section data-poll="5000" data-refresh="/ui/forge/live" {
                div data-fragment { (live) }
            }
        },
    ))
}

/// `GET /ui/forge/live`.
pub async fn fragment(State(ui): State<Ui>, session: Session) -> Page {
    ok(forge_live(&ui, &session).await?)
}

async fn forge_live(ui: &Ui, session: &Session) -> Result<Markup, Failure> {
    let repos = ui.get(session, "/forge/repos?limit=100").await?;
    let sweeps = ui.get(session, "/forge/sweeps?limit=20").await?;
    let errors = ui.get(session, "/forge/parse-errors?limit=100").await?;
    Ok(html! {
        h2 { "Repos" }
        (list_table("forge-repos", &items(&repos), &[("Repo", "repo"), ("Role", "role"), ("Refreshed", "refreshed_at"), ("Refreshing now", "claimed"), ("Last error", "last_error"), ("Failed at", "last_error_at")], None))
        (more(&repos))
        h2 { "Sweeps" }
        (list_table("sweeps", &items(&sweeps), &[("Trigger", "trigger"), ("Requested by", "requested_by"), ("Requested", "requested_at"), ("Started", "started_at"), ("Finished", "finished_at"), ("Repos", "repos"), ("Changes", "changes")], None))
        h2 { "Parse errors" }
        (list_table("parse-errors", &items(&errors), &[("Path", "path"), ("Error", "error"), ("Seen", "seen_at")], None))
        (more(&errors))
    })
}

/// A note under a list cut at its first page (100 rows here), saying where the rest is.
fn more(list: &serde_json::Value) -> Markup {
    html! {
        @if !list["next_cursor"].is_null() {
            p.muted { "Only the first 100 are shown; the API pages through the rest (next_cursor)." }
        }
    }
}

/// `POST /ui/forge/{reconcile|rebuild}` (admin).
pub async fn request(
    State(ui): State<Ui>,
    session: Session,
    Path(action): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Page {
    session.check(&form.csrf)?;
    if !matches!(action.as_str(), "reconcile" | "rebuild") {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("there is no forge action {action:?}; there are reconcile and rebuild"),
        ));
    }
    let result = ui
        .send(
            &session,
            Method::POST,
            &format!("/forge/{action}"),
            None,
            &[],
        )
        .await;
    let (ui, session) = (&ui, &session);
    after(
        result,
        |_| "/ui/forge?notice=sweep".to_owned(),
        move |refusal| async move { render_cache(ui, session, None, Some(&refusal)).await },
    )
    .await
}
