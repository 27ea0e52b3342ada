//! The one writer of the audit trail (`audit_log`): a row per state change of a
//! repo, an interface change, an inbox message, a plugin or a graph, written in the
//! transaction of the change by the API and the workers alike. The API reads it
//! back (`GET /audit`).

use serde_json::Value;
use sqlx::PgConnection;
use switchyard_domain::status::AuditEntity;

/// Records, in the caller's transaction, that `actor` did `action` to the `entity`
/// known by `key` (its slug, name or id); `detail` is the entity as changed, or what
/// the change did.
pub async fn record(
    conn: &mut PgConnection,
    entity: AuditEntity,
    key: &str,
    action: &str,
    actor: &str,
    detail: Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into audit_log (entity, entity_key, action, actor, detail)
         values ($1, $2, $3, $4, $5)",
        entity as _,
        key,
        action,
        actor,
        detail,
    )
    .execute(conn)
    .await?;
    Ok(())
}
