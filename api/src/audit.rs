//! The audit trail: one `audit_log` row per state change of a repo, an interface
//! change, an inbox message, a plugin or a graph, written in the transaction of the
//! change. (Mutations have their own `mutation_audit`; migration runs are their own
//! history.)

use serde_json::Value;
use sqlx::PgConnection;

/// Records that `actor` did `action` to the `entity` known by `key`.
pub async fn record(
    conn: &mut PgConnection,
    entity: &str,
    key: &str,
    action: &str,
    actor: &str,
    detail: Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into audit_log (entity, entity_key, action, actor, detail)
         values ($1, $2, $3, $4, $5)",
    )
    .bind(entity)
    .bind(key)
    .bind(action)
    .bind(actor)
    .bind(detail)
    .execute(conn)
    .await?;
    Ok(())
}
