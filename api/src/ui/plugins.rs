//! Plugins (`/ui/plugins`): the list and one plugin's versions with their steps; the
//! admin registers a plugin and adds versions (as the API's JSON bodies: steps are
//! too varied for fields).

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::Method;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::{
    CursorQuery, Failure, JsonForm, NoticeQuery, Page, Session, Ui, after, encode, error_banner,
    items, json_form, list_table, notice_banner, ok, page, page_query, pager, parse_json, pretty,
    text,
};
use crate::loopback::Refusal;

/// What a plugin's registration looks like, shown in its empty text area.
const PLUGIN_EXAMPLE: &str = r#"{"name": "netbox", "versions": [{"version": 1, "steps": []}]}"#;
/// What a version looks like.
const VERSION_EXAMPLE: &str =
    r#"{"version": 2, "steps": [{"op": "set_default", "property": "weight", "value": 1}]}"#;

/// `GET /ui/plugins`.
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
    typed: Option<&str>,
) -> Result<Markup, Failure> {
    let list = ui
        .get(
            session,
            &format!("/plugins?{}", page_query(query.cursor.as_deref())),
        )
        .await?;
    let link = |plugin: &Value| format!("/ui/plugins/{}", encode(&text(&plugin["name"])));
    Ok(page(
        Some(session),
        "Plugins",
        html! {
            h1 { "Plugins" }
            (error_banner(error))
            (list_table("plugins", &items(&list), &[("Name", "name"), ("Current version", "current_version"), ("Updated", "updated_at")], Some(&link)))
            (pager("/ui/plugins", "cursor", query.cursor.as_deref(), &list))
            @if ui.may(session, Method::POST, "/plugins") {
                h2 { "Register a plugin" }
                (json_form(session, "register-plugin", "/ui/plugins", "The plugin, as POST /api/v1/plugins takes it", PLUGIN_EXAMPLE, typed, "Register"))
            }
        },
    ))
}

/// `POST /ui/plugins` (admin).
pub async fn register(State(ui): State<Ui>, session: Session, Form(form): Form<JsonForm>) -> Page {
    session.check(&form.csrf)?;
    let result = match parse_json("the plugin", &form.json) {
        Ok(body) => {
            ui.send(&session, Method::POST, "/plugins", Some(&body), &[])
                .await
        }
        Err(refusal) => Err(refusal),
    };
    let (ui, session, form) = (&ui, &session, &form);
    after(
        result,
        |created| {
            format!(
                "/ui/plugins/{}?notice=created",
                encode(&text(&created["name"]))
            )
        },
        move |refusal| async move {
            render_list(
                ui,
                session,
                &CursorQuery::default(),
                Some(&refusal),
                Some(&form.json),
            )
            .await
        },
    )
    .await
}

/// `GET /ui/plugins/{name}`.
pub async fn show(
    State(ui): State<Ui>,
    session: Session,
    Path(name): Path<String>,
    Query(query): Query<NoticeQuery>,
) -> Page {
    ok(render(&ui, &session, &name, query.notice.as_deref(), None, None).await?)
}

async fn render(
    ui: &Ui,
    session: &Session,
    name: &str,
    notice: Option<&str>,
    error: Option<&Refusal>,
    typed: Option<&VersionForm>,
) -> Result<Markup, Failure> {
    let plugin = ui
        .get(session, &format!("/plugins/{}", encode(name)))
        .await?;
    let versions = plugin["versions"].as_array().cloned().unwrap_or_default();
    Ok(page(
        Some(session),
        "Plugins",
        html! {
            p { a href="/ui/plugins" { "← Plugins" } }
            h1 { (name) }
            (notice_banner(notice))
            (error_banner(error))
            p { "Current version " b #current-version { (text(&plugin["current_version"])) } }
            @for version in versions.iter().rev() {
                h3 { "Version " (text(&version["version"])) }
                (pretty(&version["steps"]))
            }
            @if ui.may(session, Method::POST, "/plugins/{name}/versions") {
                h2 { "Add a version" }
                form.stack #add-version method="post" action={"/ui/plugins/" (encode(name)) "/versions"} {
                    (super::csrf_field(session))
                    label { "The version, as POST /api/v1/plugins/{name}/versions takes it"
                        textarea name="json" required placeholder=(VERSION_EXAMPLE) { (typed.map_or("", |t| t.json.as_str())) }
                    }
                    label {
                        span { input type="checkbox" name="migrate_graphs" value="true" checked[typed.is_some_and(|t| t.migrate_graphs.is_some())]; " Also request a migration run for every graph on this plugin" }
                    }
                    button type="submit" { "Add version" }
                }
            }
        },
    ))
}

/// The add-a-version form.
#[derive(Debug, Deserialize)]
pub(super) struct VersionForm {
    #[serde(default)]
    csrf: String,
    /// The version's JSON body.
    #[serde(default)]
    json: String,
    /// Present (`true`) when ticked.
    migrate_graphs: Option<String>,
}

/// `POST /ui/plugins/{name}/versions` (admin).
pub async fn add_version(
    State(ui): State<Ui>,
    session: Session,
    Path(name): Path<String>,
    Form(form): Form<VersionForm>,
) -> Page {
    session.check(&form.csrf)?;
    let query = if form.migrate_graphs.is_some() {
        "?migrate_graphs=true"
    } else {
        ""
    };
    let result = match parse_json("the version", &form.json) {
        Ok(body) => {
            ui.send(
                &session,
                Method::POST,
                &format!("/plugins/{}/versions{query}", encode(&name)),
                Some(&body),
                &[],
            )
            .await
        }
        Err(refusal) => Err(refusal),
    };
    let (ui, session, form, name) = (&ui, &session, &form, &name);
    after(
        result,
        |_| format!("/ui/plugins/{}?notice=created", encode(name)),
        move |refusal| async move {
            render(ui, session, name, None, Some(&refusal), Some(form)).await
        },
    )
    .await
}
