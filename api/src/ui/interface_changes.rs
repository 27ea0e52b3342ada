//! Interface changes (`/ui/interface-changes`): the calendar of `planned_for`, cards
//! for published changes with the repos notified so far, and a table of drafts; draft,
//! edit, publish and resolve, with the API's 409/422 messages shown inline and the
//! form kept as typed.

use std::collections::{BTreeMap, HashMap};

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::Method;
use chrono::{Datelike, Months, NaiveDate, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use switchyard_domain::status::{ChangeStatus, ChangeType, InterfaceType};

use super::{
    CsrfForm, Failure, NoticeQuery, Page, Session, Ui, after, badge, button_form, csrf_field,
    encode, error_banner, joined, notice_banner, ok, page, page_query, pager, text, when,
};
use crate::error::ApiError;
use crate::loopback::Refusal;

/// Published cards per page.
const CARDS_PER_PAGE: u32 = 20;

#[derive(Debug, Default, Deserialize)]
pub(super) struct ListQuery {
    /// Cursor of the drafts table.
    drafts: Option<String>,
    /// Cursor of the published cards.
    published: Option<String>,
    #[serde(flatten)]
    notice: NoticeQuery,
}

/// The draft form's fields, as typed.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ChangeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    repo_slug: String,
    #[serde(default)]
    interface_type: String,
    #[serde(default)]
    change_type: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    /// One per line.
    #[serde(default)]
    affected_paths: String,
    /// Separated by commas, spaces or lines.
    #[serde(default)]
    affected_repo_slugs: String,
    /// `YYYY-MM-DD`, or empty for none.
    #[serde(default)]
    planned_for: String,
}

impl ChangeForm {
    fn from_change(change: &Value) -> Self {
        let lines = |key: &str, sep: &str| {
            change[key]
                .as_array()
                .map(|items| items.iter().map(text).collect::<Vec<_>>().join(sep))
                .unwrap_or_default()
        };
        Self {
            csrf: String::new(),
            repo_slug: text(&change["repo_slug"]),
            interface_type: text(&change["interface_type"]),
            change_type: text(&change["change_type"]),
            title: text(&change["title"]),
            description: text(&change["description"]),
            affected_paths: lines("affected_paths", "\n"),
            affected_repo_slugs: lines("affected_repo_slugs", ", "),
            planned_for: text(&change["planned_for"]),
        }
    }

    /// The API body: lists split, an empty date as none (`null` when editing, so it
    /// clears; left out when drafting).
    fn body(&self, editing: bool) -> Value {
        let paths: Vec<&str> = self
            .affected_paths
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let repos: Vec<&str> = self
            .affected_repo_slugs
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .collect();
        let mut body = json!({
            "interface_type": self.interface_type,
            "change_type": self.change_type,
            "title": self.title,
            "description": self.description,
            "affected_paths": paths,
            "affected_repo_slugs": repos,
        });
        if !editing {
            body["repo_slug"] = json!(self.repo_slug);
        }
        match (self.planned_for.trim(), editing) {
            ("", true) => body["planned_for"] = Value::Null,
            ("", false) => {}
            (date, _) => body["planned_for"] = json!(date),
        }
        body
    }
}

/// `GET /ui/interface-changes`.
pub async fn list(State(ui): State<Ui>, session: Session, Query(query): Query<ListQuery>) -> Page {
    ok(render_list(&ui, &session, &query, None, None).await?)
}

async fn render_list(
    ui: &Ui,
    session: &Session,
    query: &ListQuery,
    error: Option<&Refusal>,
    typed: Option<&ChangeForm>,
) -> Result<Markup, Failure> {
    let drafts = ui
        .get(
            session,
            &format!(
                "/interface-changes?status=draft&{}",
                page_query(query.drafts.as_deref())
            ),
        )
        .await?;
    let mut published_query = format!("/interface-changes?status=published&limit={CARDS_PER_PAGE}");
    if let Some(cursor) = query.published.as_deref().filter(|c| !c.is_empty()) {
        published_query.push_str(&format!("&cursor={}", encode(cursor)));
    }
    let published = ui.get(session, &published_query).await?;
    let cards = published["items"].as_array().cloned().unwrap_or_default();
    let draft_rows = drafts["items"].as_array().cloned().unwrap_or_default();
    let notified = notified_repos(ui, &cards).await?;
    let may_create = ui.may(session, Method::POST, "/interface-changes");
    let may_publish = ui.may(session, Method::POST, "/interface-changes/{id}/publish");
    let may_resolve = ui.may(session, Method::POST, "/interface-changes/{id}/resolve");
    let blank = ChangeForm {
        interface_type: "rest_api".into(),
        change_type: "breaking".into(),
        ..ChangeForm::default()
    };
    let body = html! {
        h1 { "Interface changes" }
        (notice_banner(query.notice.notice.as_deref()))
        (error_banner(error))
        h2 { "Published" }
        @if cards.is_empty() {
            p.muted { "No published changes waiting to be resolved." }
        }
        div.cards {
            @for change in &cards {
                @let id = text(&change["id"]);
                div.card data-change=(id) {
                    h3 { a href={"/ui/interface-changes/" (id)} { (text(&change["title"])) } }
                    p {
                        span class={"badge " (text(&change["change_type"]))} { (text(&change["change_type"])) }
                        " "
                        span.badge { (text(&change["interface_type"])) }
                        " from " b { (text(&change["repo_slug"])) }
                    }
                    p.muted {
                        "Published " (when(&change["published_at"]))
                        @if !change["planned_for"].is_null() { " · planned for " (text(&change["planned_for"])) }
                    }
                    p {
                        "Affected: " (joined(&change["affected_repo_slugs"])) br;
                        "Notified: "
                        @match notified.get(&id) {
                            Some(repos) => span.notified { (repos.join(", ")) },
                            None => span.notified.muted { "none yet" },
                        }
                    }
                    @if may_resolve {
                        (button_form(session, &format!("/ui/interface-changes/{id}/resolve"), "Resolve", Some("Resolve this change? It leaves every affected repo's dispatch.")))
                    }
                }
            }
        }
        (pager("/ui/interface-changes", "published", query.published.as_deref(), &published))
        h2 { "Drafts" }
        @if draft_rows.is_empty() {
            p.muted { "No drafts." }
        } @else {
            table #drafts {
                thead { tr { th { "Title" } th { "Repo" } th { "Types" } th { "Planned for" } th { "Author" } th { "Updated" } th {} } }
                tbody {
                    @for change in &draft_rows {
                        @let id = text(&change["id"]);
                        tr data-change=(id) {
                            td { a href={"/ui/interface-changes/" (id)} { (text(&change["title"])) } }
                            td { (text(&change["repo_slug"])) }
                            td {
                                span class={"badge " (text(&change["change_type"]))} { (text(&change["change_type"])) }
                                " " span.badge { (text(&change["interface_type"])) }
                            }
                            td { (text(&change["planned_for"])) }
                            td { (text(&change["author"])) }
                            td { (when(&change["updated_at"])) }
                            td {
                                @if may_publish {
                                    (button_form(session, &format!("/ui/interface-changes/{id}/publish"), "Publish", Some("Publish this change? Every affected repo is notified.")))
                                }
                            }
                        }
                    }
                }
            }
        }
        (pager("/ui/interface-changes", "drafts", query.drafts.as_deref(), &drafts))
        h2 { "Calendar " span.muted { "(planned_for of the changes above)" } }
        (calendar(cards.iter().chain(draft_rows.iter())))
        @if may_create {
            h2 { "New draft" }
            (change_form(session, "/ui/interface-changes", typed.unwrap_or(&blank), false))
        }
    };
    Ok(page(Some(session), "Interface changes", body))
}

/// The repos each change has notified so far (its inbox messages), by change id.
async fn notified_repos(
    ui: &Ui,
    changes: &[Value],
) -> Result<HashMap<String, Vec<String>>, ApiError> {
    let ids: Vec<Uuid> = changes
        .iter()
        .filter_map(|c| c["id"].as_str()?.parse().ok())
        .collect();
    let rows = sqlx::query!(
        r#"select interface_change_id, array_agg(repo_slug order by repo_slug) as "repos!"
             from inbox_messages where interface_change_id = any($1)
            group by interface_change_id"#,
        &ids,
    )
    .fetch_all(&ui.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.interface_change_id.to_string(), row.repos))
        .collect())
}

/// This month and the next two, each change on its `planned_for` day.
fn calendar<'a>(changes: impl Iterator<Item = &'a Value>) -> Markup {
    let mut by_day: BTreeMap<NaiveDate, Vec<&Value>> = BTreeMap::new();
    for change in changes {
        if let Some(day) = change["planned_for"]
            .as_str()
            .and_then(|d| d.parse::<NaiveDate>().ok())
        {
            by_day.entry(day).or_default().push(change);
        }
    }
    let today = Utc::now().date_naive();
    let first = today.with_day(1).expect("day 1 exists");
    let months: Vec<NaiveDate> = (0..3)
        .filter_map(|n| first.checked_add_months(Months::new(n)))
        .collect();
    let end = months
        .last()
        .and_then(|m| m.checked_add_months(Months::new(1)))
        .unwrap_or(first);
    let outside = by_day
        .iter()
        .filter(|(day, _)| **day < first || **day >= end)
        .map(|(_, changes)| changes.len())
        .sum::<usize>();
    html! {
        div.months {
            @for month in &months {
                div {
                    h3 { (month.format("%B %Y")) }
                    div.calendar {
                        @for name in ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"] { div.head { (name) } }
                        @for _ in 0..month.weekday().num_days_from_monday() { div.other {} }
                        @for day in month.iter_days().take_while(|d| d.month() == month.month()) {
                            div data-day=(day.to_string()) {
                                span.day { (day.day()) }
                                @for change in by_day.get(&day).into_iter().flatten() {
                                    div {
                                        a href={"/ui/interface-changes/" (text(&change["id"]))} title=(text(&change["title"])) {
                                            span class={"badge " (text(&change["change_type"]))} { (text(&change["title"])) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if outside > 0 {
            p.muted { (outside) " change(s) on this page are planned outside these three months." }
        }
        @if !by_day.is_empty() {
            h3 { "Planned, by date" }
            ul #planned {
                @for (day, changes) in &by_day {
                    @for change in changes {
                        li {
                            (day.format("%Y-%m-%d")) " · "
                            span class={"badge " (text(&change["change_type"]))} { (text(&change["change_type"])) }
                            " "
                            a href={"/ui/interface-changes/" (text(&change["id"]))} { (text(&change["title"])) }
                            " · " (badge(&text(&change["status"])))
                        }
                    }
                }
            }
        }
    }
}

/// The draft or edit form, filled with `typed`.
fn change_form(session: &Session, action: &str, typed: &ChangeForm, editing: bool) -> Markup {
    html! {
        form.stack #change-form method="post" action=(action) {
            (csrf_field(session))
            @if !editing {
                label { "Origin repo (slug)" input name="repo_slug" required value=(typed.repo_slug); }
            }
            label { "Interface type"
                select name="interface_type" {
                    @for value in InterfaceType::ALL.iter().map(|t| t.as_str()) { option value=(value) selected[typed.interface_type == value] { (value) } }
                }
            }
            label { "Change type"
                select name="change_type" {
                    @for value in ChangeType::ALL.iter().map(|t| t.as_str()) { option value=(value) selected[typed.change_type == value] { (value) } }
                }
            }
            label { "Title" input name="title" required value=(typed.title); }
            label { "Description" textarea name="description" { (typed.description) } }
            label { "Affected paths (one per line)" textarea name="affected_paths" { (typed.affected_paths) } }
            label { "Affected repos (slugs, comma-separated)" input name="affected_repo_slugs" value=(typed.affected_repo_slugs); }
            label { "Planned for" input type="date" name="planned_for" value=(typed.planned_for); }
            button type="submit" { @if editing { "Save draft" } @else { "Create draft" } }
        }
    }
}

/// `POST /ui/interface-changes`: a new draft.
pub async fn create(State(ui): State<Ui>, session: Session, Form(form): Form<ChangeForm>) -> Page {
    session.check(&form.csrf)?;
    let result = ui
        .send(
            &session,
            Method::POST,
            "/interface-changes",
            Some(&form.body(false)),
            &[],
        )
        .await;
    let (ui, session, form) = (&ui, &session, &form);
    after(
        result,
        |created| {
            format!(
                "/ui/interface-changes/{}?notice=drafted",
                text(&created["id"])
            )
        },
        move |refusal| async move {
            render_list(
                ui,
                session,
                &ListQuery::default(),
                Some(&refusal),
                Some(form),
            )
            .await
        },
    )
    .await
}

/// `GET /ui/interface-changes/{id}`: one change, its edit form while a draft.
pub async fn edit_page(
    State(ui): State<Ui>,
    session: Session,
    Path(id): Path<String>,
    Query(query): Query<NoticeQuery>,
) -> Page {
    ok(render_one(&ui, &session, &id, query.notice.as_deref(), None, None).await?)
}

async fn render_one(
    ui: &Ui,
    session: &Session,
    id: &str,
    notice: Option<&str>,
    error: Option<&Refusal>,
    typed: Option<&ChangeForm>,
) -> Result<Markup, Failure> {
    let change = ui
        .get(session, &format!("/interface-changes/{}", encode(id)))
        .await?;
    let status = text(&change["status"]);
    let draft = ChangeStatus::Draft.as_str();
    let editable = status == draft && ui.may(session, Method::PATCH, "/interface-changes/{id}");
    let current = ChangeForm::from_change(&change);
    let body = html! {
        p { a href="/ui/interface-changes" { "← Interface changes" } }
        h1 { (text(&change["title"])) " " (badge(&status)) }
        (notice_banner(notice))
        (error_banner(error))
        p {
            span class={"badge " (text(&change["change_type"]))} { (text(&change["change_type"])) }
            " " span.badge { (text(&change["interface_type"])) }
            " from " b { (text(&change["repo_slug"])) } " by " (text(&change["author"]))
        }
        table {
            tbody {
                tr { th { "Affected repos" } td { (joined(&change["affected_repo_slugs"])) } }
                tr { th { "Affected paths" } td { (joined(&change["affected_paths"])) } }
                tr { th { "Planned for" } td { (text(&change["planned_for"])) } }
                tr { th { "Created" } td { (when(&change["created_at"])) } }
                tr { th { "Published" } td { (when(&change["published_at"])) } }
                tr { th { "Resolved" } td { (when(&change["resolved_at"])) } }
                tr { th { "Description" } td { (text(&change["description"])) } }
            }
        }
        p {
            @if status == draft && ui.may(session, Method::POST, "/interface-changes/{id}/publish") {
                (button_form(session, &format!("/ui/interface-changes/{id}/publish"), "Publish", Some("Publish this change? Every affected repo is notified.")))
            }
            @if status == ChangeStatus::Published.as_str() && ui.may(session, Method::POST, "/interface-changes/{id}/resolve") {
                (button_form(session, &format!("/ui/interface-changes/{id}/resolve"), "Resolve", Some("Resolve this change?")))
            }
        }
        @if editable {
            h2 { "Edit draft" }
            (change_form(session, &format!("/ui/interface-changes/{id}"), typed.unwrap_or(&current), true))
        }
    };
    Ok(page(Some(session), "Interface changes", body))
}

/// `POST /ui/interface-changes/{id}`: edits a draft.
pub async fn update(
    State(ui): State<Ui>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<ChangeForm>,
) -> Page {
    session.check(&form.csrf)?;
    let path = format!("/interface-changes/{}", encode(&id));
    let result = ui
        .send(&session, Method::PATCH, &path, Some(&form.body(true)), &[])
        .await;
    let (ui, session, form, id) = (&ui, &session, &form, &id);
    after(
        result,
        |_| format!("/ui/interface-changes/{}?notice=saved", encode(id)),
        move |refusal| async move {
            render_one(ui, session, id, None, Some(&refusal), Some(form)).await
        },
    )
    .await
}

/// `POST /ui/interface-changes/{id}/publish`.
pub async fn publish(
    State(ui): State<Ui>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Page {
    transition(ui, session, id, form, "publish").await
}

/// `POST /ui/interface-changes/{id}/resolve`.
pub async fn resolve(
    State(ui): State<Ui>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Page {
    transition(ui, session, id, form, "resolve").await
}

async fn transition(ui: Ui, session: Session, id: String, form: CsrfForm, action: &str) -> Page {
    session.check(&form.csrf)?;
    let path = format!("/interface-changes/{}/{action}", encode(&id));
    let result = ui.send(&session, Method::POST, &path, None, &[]).await;
    let (ui, session) = (&ui, &session);
    after(
        result,
        |_| {
            let notice = match action {
                "publish" => "published",
                _ => "resolved",
            };
            format!("/ui/interface-changes?notice={notice}")
        },
        move |refusal| async move {
            render_list(ui, session, &ListQuery::default(), Some(&refusal), None).await
        },
    )
    .await
}
