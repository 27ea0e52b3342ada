//! The registry's audit trail: one `registry_audit` row per state change of a repo,
//! an interface change or an inbox message, written in the transaction of the change.

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
        "insert into registry_audit (entity, entity_key, action, actor, detail)
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
