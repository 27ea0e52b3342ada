//! The audit trail (`/ui/audit`, admin): every audited change, newest first, by
//! entity if asked.

use axum::extract::{Query, State};
use maud::html;
use serde::Deserialize;

use super::{Page, Session, Ui, encode, items, list_table, ok, page, page_query, pager};

/// `?entity=&cursor=` of the audit page.
#[derive(Debug, Default, Deserialize)]
pub(super) struct AuditQuery {
    /// Only this kind of entity (`repo`, `interface_change`, `graph`, …).
    entity: Option<String>,
    cursor: Option<String>,
}

/// `GET /ui/audit` (admin; others get the API's 403).
pub async fn show(State(ui): State<Ui>, session: Session, Query(query): Query<AuditQuery>) -> Page {
    let entity = query.entity.as_deref().filter(|e| !e.is_empty());
    let filter = entity
        .map(|e| format!("entity={}&", encode(e)))
        .unwrap_or_default();
    let list = ui
        .get(
            &session,
            &format!("/audit?{filter}{}", page_query(query.cursor.as_deref())),
        )
        .await?;
    let base = match entity {
        Some(e) => format!("/ui/audit?entity={}", encode(e)),
        None => "/ui/audit".to_owned(),
    };
    ok(page(
        Some(&session),
        "Audit",
        html! {
            h1 { "Audit trail" }
            form method="get" action="/ui/audit" {
                label { "Entity " input name="entity" value=[entity] placeholder="repo, interface_change, graph, …"; }
                " " button type="submit" { "Filter" }
            }
            (list_table("audit", &items(&list), &[("Recorded", "recorded_at"), ("Entity", "entity"), ("Key", "key"), ("Action", "action"), ("Actor", "actor"), ("Detail", "detail")], None))
            (pager(&base, "cursor", query.cursor.as_deref(), &list))
        },
    ))
}
