//! The forge cache's tables: `rfcs` and `forge_parse_errors` here, a repo's branches
//! and pull requests in [`repo`] (which also reads `forge_actions`): every statement
//! on them outside the API's reads. Each write that changes a row writes its audit row and
//! returns the event that announces it; the caller stages the events in the same
//! transaction.

use std::collections::HashMap;

use sqlx::PgConnection;
use switchyard_bus::payloads::{ForgeParseError, RfcUpdated};
use switchyard_bus::{Event, Payload, audit};
use switchyard_domain::status::AuditEntity;

mod repo;

pub use repo::{BranchRow, PullRow, branches, logged_actors, pulls, write_branch, write_pull};

use super::entry::Entry;
use super::{INACTIVE_STATES, RepoName, SOURCE};

/// Cached RFC entries that are present upstream: `(path, blob_sha)` → slug.
pub async fn live_entries(
    conn: &mut PgConnection,
) -> Result<HashMap<(String, String), String>, sqlx::Error> {
    let rows = sqlx::query!("select slug, path, blob_sha from rfcs where not missing_upstream")
        .fetch_all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| ((r.path, r.blob_sha), r.slug))
        .collect())
}

/// Entries that failed to parse: `(path, blob_sha)` → error.
pub async fn parse_errors(
    conn: &mut PgConnection,
) -> Result<HashMap<(String, String), String>, sqlx::Error> {
    let rows = sqlx::query!("select path, blob_sha, error from forge_parse_errors")
        .fetch_all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| ((r.path, r.blob_sha), r.error))
        .collect())
}

/// Writes `entry` (read from `path` at `blob_sha`) when it differs from the cached
/// RFC: the audit row, and the event to stage.
pub async fn upsert_rfc(
    conn: &mut PgConnection,
    path: &str,
    blob_sha: &str,
    entry: &Entry,
) -> Result<Option<Event>, sqlx::Error> {
    let row = sqlx::query!(
        r#"insert into rfcs (slug, path, blob_sha, title, state, rfc_id, repo, proposed_by,
                           proposed_at, graduated_at, graduated_by, owners, arbiters, tags, body)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
         on conflict (slug) do update
           set path = excluded.path, blob_sha = excluded.blob_sha, title = excluded.title,
               state = excluded.state, rfc_id = excluded.rfc_id, repo = excluded.repo,
               proposed_by = excluded.proposed_by, proposed_at = excluded.proposed_at,
               graduated_at = excluded.graduated_at, graduated_by = excluded.graduated_by,
               owners = excluded.owners, arbiters = excluded.arbiters, tags = excluded.tags,
               body = excluded.body, missing_upstream = false, updated_at = now()
           where (rfcs.path, rfcs.blob_sha, rfcs.missing_upstream)
                 is distinct from (excluded.path, excluded.blob_sha, false)
         returning (xmax = 0) as "created!", document_sha"#,
        entry.slug,
        path,
        blob_sha,
        entry.title,
        entry.state,
        entry.rfc_id,
        entry.repo,
        entry.proposed_by,
        entry.proposed_at,
        entry.graduated_at,
        entry.graduated_by,
        &entry.owners,
        &entry.arbiters,
        &entry.tags,
        entry.body,
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let updated = RfcUpdated {
        slug: entry.slug.clone(),
        title: entry.title.clone(),
        state: entry.state.clone(),
        path: path.to_owned(),
        blob_sha: blob_sha.to_owned(),
        missing_upstream: false,
        document_sha: row.document_sha,
    };
    let action = if row.created { "created" } else { "updated" };
    let event = audited(conn, AuditEntity::Rfc, &updated.slug, action, &updated).await?;
    Ok(Some(event))
}

/// Flags every cached RFC whose slug is not in `live` as missing upstream.
pub async fn flag_missing(
    conn: &mut PgConnection,
    live: &[String],
) -> Result<Vec<Event>, sqlx::Error> {
    let rows = sqlx::query!(
        "update rfcs set missing_upstream = true, updated_at = now()
         where not missing_upstream and slug <> all($1)
         returning slug, title, state, path, blob_sha, document_sha",
        live,
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let updated = RfcUpdated {
            slug: row.slug,
            title: row.title,
            state: row.state,
            path: row.path,
            blob_sha: row.blob_sha,
            missing_upstream: true,
            document_sha: row.document_sha,
        };
        let slug = &updated.slug;
        let entity = AuditEntity::Rfc;
        events.push(audited(conn, entity, slug, "missing_upstream", &updated).await?);
    }
    Ok(events)
}

/// Records `payload`'s change as `action` on `entity` `key` (the payload is the audit
/// row's detail) and returns the event announcing it, for the caller to stage in the
/// same transaction.
async fn audited<P: Payload>(
    conn: &mut PgConnection,
    entity: AuditEntity,
    key: &str,
    action: &str,
    payload: &P,
) -> Result<Event, sqlx::Error> {
    let detail = serde_json::to_value(payload).expect("payloads serialize");
    audit::record(conn, entity, key, action, SOURCE.as_str(), detail).await?;
    Ok(payload.event(SOURCE))
}

/// Makes the parse errors of `meta`'s entries exactly `errors` (path, blob sha, error),
/// auditing each new or changed one and each that cleared; returns their events.
pub async fn set_parse_errors(
    conn: &mut PgConnection,
    meta: &RepoName,
    errors: &[(String, String, String)],
) -> Result<Vec<Event>, sqlx::Error> {
    let announce = |path: &str, blob_sha: Option<&str>, error: Option<&str>| {
        ForgeParseError {
            owner: meta.owner.clone(),
            name: meta.name.clone(),
            path: path.to_owned(),
            blob_sha: blob_sha.map(str::to_owned),
            error: error.map(str::to_owned),
        }
        .event(SOURCE)
    };
    let mut events = Vec::new();
    let paths: Vec<String> = errors.iter().map(|(path, _, _)| path.clone()).collect();
    let cleared = sqlx::query_scalar!(
        "delete from forge_parse_errors where path <> all($1) returning path",
        &paths,
    )
    .fetch_all(&mut *conn)
    .await?;
    for path in cleared {
        events.push(announce(&path, None, None));
        let detail = serde_json::json!({ "path": path });
        audit::record(
            conn,
            AuditEntity::Rfc,
            &path,
            "parse_error_cleared",
            SOURCE.as_str(),
            detail,
        )
        .await?;
    }
    for (path, blob_sha, error) in errors {
        let written = sqlx::query!(
            "insert into forge_parse_errors (path, blob_sha, error) values ($1, $2, $3)
             on conflict (path) do update
               set blob_sha = excluded.blob_sha, error = excluded.error, seen_at = now()
               where (forge_parse_errors.blob_sha, forge_parse_errors.error)
                     is distinct from (excluded.blob_sha, excluded.error)",
            path,
            blob_sha,
            error,
        )
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if written == 1 {
            events.push(announce(path, Some(blob_sha), Some(error)));
            tracing::warn!(%path, %error, "RFC entry does not parse; skipped");
            let detail = serde_json::json!({ "path": path, "blob_sha": blob_sha, "error": error });
            audit::record(
                conn,
                AuditEntity::Rfc,
                path,
                "parse_failed",
                SOURCE.as_str(),
                detail,
            )
            .await?;
        }
    }
    Ok(events)
}

/// Repos of active RFCs (present upstream, naming a repo, not in an
/// [`INACTIVE_STATES`] state), in order.
pub async fn active_repos(conn: &mut PgConnection) -> Result<Vec<String>, sqlx::Error> {
    let inactive: Vec<String> = INACTIVE_STATES.iter().map(|s| (*s).to_owned()).collect();
    sqlx::query_scalar!(
        r#"select distinct repo as "repo!" from rfcs
         where repo is not null and not missing_upstream and lower(state) <> all($1)
         order by 1"#,
        &inactive,
    )
    .fetch_all(conn)
    .await
}

/// The active RFC whose own repo is `repo`, if any (the first by slug should two name it).
pub async fn rfc_of_repo(
    conn: &mut PgConnection,
    repo: &RepoName,
) -> Result<Option<String>, sqlx::Error> {
    let inactive: Vec<String> = INACTIVE_STATES.iter().map(|s| (*s).to_owned()).collect();
    sqlx::query_scalar!(
        "select slug from rfcs
         where repo = $1 and not missing_upstream and lower(state) <> all($2)
         order by slug limit 1",
        repo.to_string(),
        &inactive,
    )
    .fetch_optional(conn)
    .await
}

/// Records `RFC.md` of `slug`'s repo (`None`: there is none) when it changed.
pub async fn set_document(
    conn: &mut PgConnection,
    slug: &str,
    document: Option<(&str, &str)>,
) -> Result<Option<Event>, sqlx::Error> {
    let (sha, body) = document.unzip();
    let row = sqlx::query!(
        "update rfcs set document_sha = $2, document_body = $3, updated_at = now()
         where slug = $1 and document_sha is distinct from $2
         returning title, state, path, blob_sha, missing_upstream",
        slug,
        sha,
        body,
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let updated = RfcUpdated {
        slug: slug.to_owned(),
        title: row.title,
        state: row.state,
        path: row.path,
        blob_sha: row.blob_sha,
        missing_upstream: row.missing_upstream,
        document_sha: sha.map(str::to_owned),
    };
    let event = audited(conn, AuditEntity::Rfc, slug, "document_updated", &updated).await?;
    Ok(Some(event))
}

/// Drops the whole cache (not the actions log, not the refresh bookkeeping), with one
/// audit row saying how much; returns the number of rows deleted.
pub async fn drop_all(conn: &mut PgConnection, meta: &RepoName) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    deleted += sqlx::query!("delete from rfc_pulls")
        .execute(&mut *conn)
        .await?
        .rows_affected();
    deleted += sqlx::query!("delete from rfc_branches")
        .execute(&mut *conn)
        .await?
        .rows_affected();
    deleted += sqlx::query!("delete from forge_parse_errors")
        .execute(&mut *conn)
        .await?
        .rows_affected();
    deleted += sqlx::query!("delete from rfcs")
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let detail = serde_json::json!({ "rows_deleted": deleted });
    audit::record(
        conn,
        AuditEntity::ForgeCache,
        &meta.to_string(),
        "dropped",
        SOURCE.as_str(),
        detail,
    )
    .await?;
    Ok(deleted)
}
