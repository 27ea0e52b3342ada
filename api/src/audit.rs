//! The audit trail: one `audit_log` row per state change of a repo, an interface
//! change, an inbox message, a plugin or a graph, written in the transaction of the
//! change. (Mutations have their own `mutation_audit`; migration runs are their own
//! history.) The notifier writes `inbox_message` rows the same way; admins read the
//! trail with `GET /audit` ([`crate::routes::audit`]).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgExecutor, Postgres, QueryBuilder};
use switchyard_domain::status::AuditEntity;
use utoipa::ToSchema;

/// One recorded change, as `GET /audit` returns it.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct AuditEntryOut {
    /// Increases with every row written; the cursor of the list.
    pub id: i64,
    /// `repo`, `interface_change`, `inbox_message`, `plugin` or `graph`.
    pub entity: String,
    /// The entity's slug, name or id.
    pub key: String,
    /// What happened, for example `registered`, `edited`, `archived`, `published`.
    pub action: String,
    /// The token subject that made the change, or the worker (`switchyard/notifier`).
    pub actor: String,
    /// The entity as changed, or what the change did.
    pub detail: Value,
    /// When the change was made: the start of the transaction that made it.
    pub recorded_at: DateTime<Utc>,
}

/// The one writer of `audit_log`, shared with the workers.
pub use switchyard_bus::audit::record;

/// Up to `limit` entries older than the entry `before`, newest first, of `entity`
/// (and `key`) when given.
pub async fn page(
    db: impl PgExecutor<'_>,
    entity: Option<AuditEntity>,
    key: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditEntryOut>, sqlx::Error> {
    // Each combination of filters is its own statement, rather than `($1 is null or
    // entity = $1)`: a prepared statement's generic plan (Postgres may switch to one
    // after five runs) cannot use an index for a condition that may be switched off.
    // The entity is written into the statement, not bound, so that even a generic plan
    // knows how rare it is: a page of plugins reads `audit_log_entity_id`, a page of
    // inbox messages walks the newest rows. It is one of the fixed words of `AuditEntity`.
    let mut query = QueryBuilder::<Postgres>::new(
        "select id, entity, entity_key as key, action, actor, detail, recorded_at
         from audit_log
         where true",
    );
    if let Some(entity) = entity {
        query.push(format_args!(" and entity = '{}'", entity.as_str()));
    }
    if let Some(key) = key {
        query.push(" and entity_key = ").push_bind(key);
    }
    if let Some(before) = before {
        query.push(" and id < ").push_bind(before);
    }
    query.push(" order by id desc limit ").push_bind(limit);
    query.build_query_as().fetch_all(db).await
}
