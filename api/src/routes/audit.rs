//! `GET /audit` (admins): the audit trail, newest first, a page at a time, optionally
//! of one kind of entity or one entity. The rows are written by each change's own
//! transaction ([`crate::audit`]); this module only reads them.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Page, PageParams};
use crate::AppState;
use crate::audit::{self, AuditEntryOut};
use crate::error::ApiError;
use crate::extract::Query;
use crate::openapi::Refusals;
use switchyard_domain::status::AuditEntity;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// `?entity=&key=&limit=&cursor=` of `GET /audit`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only this kind of entity: `repo`, `interface_change`, `inbox_message`, `plugin`
    /// or `graph`.
    #[param(schema_with = entity_schema)]
    pub entity: Option<String>,
    /// Only the entity with this slug, name or id; needs `entity` (keys are unique only
    /// within one kind).
    pub key: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The `entity` parameter's schema: one of [`AuditEntity`]'s names, so clients and fuzzers see
/// the closed set the handler accepts.
fn entity_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(AuditEntity::ALL.iter().map(|entity| entity.as_str())))
        .build()
}

/// Read the audit trail, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/audit",
    tag = "audit",
    params(AuditParams),
    responses((status = 200, description = "A page of audit entries", body = Page<AuditEntryOut>), Refusals),
    security(("bearer" = ["admin"]))
)]
async fn list(
    State(app): State<AppState>,
    Query(params): Query<AuditParams>,
) -> Result<Json<Page<AuditEntryOut>>, ApiError> {
    let entity = match params.entity.as_deref() {
        None => None,
        Some(name) => Some(AuditEntity::parse(name).ok_or_else(|| {
            let known: Vec<&str> = AuditEntity::ALL.iter().map(|e| e.as_str()).collect();
            ApiError::Unprocessable(format!(
                "entity {name:?} is not one the audit trail records; expected one of {}",
                known.join(", ")
            ))
        })?),
    };
    if params.key.is_some() && params.entity.is_none() {
        return Err(ApiError::Unprocessable(
            "key needs entity, since keys are unique only within one kind: for example ?entity=repo&key=billing".to_owned(),
        ));
    }
    let page = PageParams {
        limit: params.limit,
        cursor: params.cursor,
    };
    let limit = page.limit()?;
    let before: Option<i64> = page.cursor()?;
    let rows = audit::page(&app.pool, entity, params.key.as_deref(), before, limit + 1).await?;
    Ok(Json(Page::from_rows(rows, limit, |e| e.id.to_string())))
}
