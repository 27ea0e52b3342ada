//! The forge cache's tables (`rfcs`, `rfc_branches`, `rfc_pulls`,
//! `forge_parse_errors`; `forge_actions` is read here): every statement on them
//! outside the API's reads. Each write that changes a row writes its audit row and
//! returns the event that announces it; the caller stages the events in the same
//! transaction.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use switchyard_bus::payloads::{
    BranchAction, PullAction, RfcBranchChanged, RfcPullChanged, RfcUpdated,
};
use switchyard_bus::{Event, Payload, audit};
use switchyard_domain::status::{AuditEntity, BranchState, OpenedBySource, PullKind, PullState};

use super::entry::Entry;
use super::{INACTIVE_STATES, RepoName, SOURCE};

/// A cached pull request, as compared with what Gitea says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullRow {
    pub number: i64,
    pub rfc_slug: String,
    pub kind: PullKind,
    pub state: PullState,
    pub title: String,
    pub head_branch: String,
    pub head_sha: Option<String>,
    pub opener: String,
    pub opened_by: String,
    pub opened_by_source: OpenedBySource,
    pub created_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub merged_at: Option<DateTime<Utc>>,
}

/// A cached branch, as compared with what Gitea says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchRow {
    pub name: String,
    pub head_sha: String,
    pub committed_at: Option<DateTime<Utc>>,
    pub state: BranchState,
}

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
    audit_rfc(conn, &updated, action).await?;
    Ok(Some(updated.event(SOURCE)))
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
        audit_rfc(conn, &updated, "missing_upstream").await?;
        events.push(updated.event(SOURCE));
    }
    Ok(events)
}

async fn audit_rfc(
    conn: &mut PgConnection,
    rfc: &RfcUpdated,
    action: &str,
) -> Result<(), sqlx::Error> {
    let detail = serde_json::to_value(rfc).expect("payloads serialize");
    audit::record(
        conn,
        AuditEntity::Rfc,
        &rfc.slug,
        action,
        SOURCE.as_str(),
        detail,
    )
    .await
}

/// Makes the parse errors exactly `errors` (path → (blob sha, error)), auditing each
/// new or changed one and each that cleared. Returns how many rows changed.
pub async fn set_parse_errors(
    conn: &mut PgConnection,
    errors: &[(String, String, String)],
) -> Result<usize, sqlx::Error> {
    let paths: Vec<String> = errors.iter().map(|(path, _, _)| path.clone()).collect();
    let cleared = sqlx::query_scalar!(
        "delete from forge_parse_errors where path <> all($1) returning path",
        &paths,
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut changed = cleared.len();
    for path in cleared {
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
            changed += 1;
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
    Ok(changed)
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
    audit_rfc(conn, &updated, "document_updated").await?;
    Ok(Some(updated.event(SOURCE)))
}

/// The actors switchyard's actions log holds for `repo`'s pull requests, by number.
pub async fn logged_actors(
    conn: &mut PgConnection,
    repo: &RepoName,
) -> Result<HashMap<i64, String>, sqlx::Error> {
    let rows = sqlx::query!(
        "select pr_number, actor from forge_actions where repo = $1",
        repo.to_string(),
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.pr_number, r.actor)).collect())
}

/// The cached pull requests of `repo`, by number.
pub async fn pulls(
    conn: &mut PgConnection,
    repo: &RepoName,
) -> Result<HashMap<i64, PullRow>, sqlx::Error> {
    let rows = sqlx::query_as!(
        PullRow,
        r#"select number, rfc_slug, kind as "kind: PullKind", state as "state: PullState",
                title, head_branch, head_sha, opener, opened_by,
                opened_by_source as "opened_by_source: OpenedBySource",
                created_at, closed_at, merged_at
         from rfc_pulls where repo = $1"#,
        repo.to_string(),
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|row| (row.number, row)).collect())
}

/// Writes `pull` (which differs from `cached`), its audit row, and returns its event.
pub async fn write_pull(
    conn: &mut PgConnection,
    repo: &RepoName,
    pull: &PullRow,
    cached: Option<&PullRow>,
) -> Result<Event, sqlx::Error> {
    sqlx::query!(
        "insert into rfc_pulls (repo, number, rfc_slug, kind, state, title, head_branch,
                                head_sha, opener, opened_by, opened_by_source, created_at,
                                closed_at, merged_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         on conflict (repo, number) do update
           set rfc_slug = excluded.rfc_slug, kind = excluded.kind, state = excluded.state,
               title = excluded.title, head_branch = excluded.head_branch,
               head_sha = excluded.head_sha, opener = excluded.opener,
               opened_by = excluded.opened_by, opened_by_source = excluded.opened_by_source,
               created_at = excluded.created_at, closed_at = excluded.closed_at,
               merged_at = excluded.merged_at, updated_at = now()",
        repo.to_string(),
        pull.number,
        pull.rfc_slug,
        pull.kind as _,
        pull.state as _,
        pull.title,
        pull.head_branch,
        pull.head_sha,
        pull.opener,
        pull.opened_by,
        pull.opened_by_source as _,
        pull.created_at,
        pull.closed_at,
        pull.merged_at,
    )
    .execute(&mut *conn)
    .await?;
    let action = match (cached, pull.state) {
        (None, _) => PullAction::Opened,
        (Some(old), PullState::Merged) if old.state != PullState::Merged => PullAction::Merged,
        (Some(old), PullState::Closed) if old.state != PullState::Closed => PullAction::Closed,
        _ => PullAction::Updated,
    };
    let changed = RfcPullChanged {
        slug: pull.rfc_slug.clone(),
        repo: repo.to_string(),
        number: pull.number,
        kind: pull.kind,
        state: pull.state,
        title: pull.title.clone(),
        opened_by: pull.opened_by.clone(),
        opened_by_source: pull.opened_by_source,
        action,
    };
    let detail = serde_json::to_value(&changed).expect("payloads serialize");
    let key = format!("{repo}#{}", pull.number);
    let verb = serde_json::to_value(action).expect("actions serialize");
    audit::record(
        conn,
        AuditEntity::RfcPull,
        &key,
        verb.as_str().unwrap_or("updated"),
        SOURCE.as_str(),
        detail,
    )
    .await?;
    Ok(changed.event(SOURCE))
}

/// The cached branches of `repo`, by name.
pub async fn branches(
    conn: &mut PgConnection,
    repo: &RepoName,
) -> Result<HashMap<String, BranchRow>, sqlx::Error> {
    let rows = sqlx::query_as!(
        BranchRow,
        r#"select name, head_sha, committed_at, state as "state: BranchState"
         from rfc_branches where repo = $1"#,
        repo.to_string(),
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.name.clone(), row))
        .collect())
}

/// Writes `branch` of `slug`'s repo (which differs from `cached`), its audit row, and
/// returns its event.
pub async fn write_branch(
    conn: &mut PgConnection,
    repo: &RepoName,
    slug: &str,
    branch: &BranchRow,
    cached: Option<&BranchRow>,
) -> Result<Event, sqlx::Error> {
    sqlx::query!(
        "insert into rfc_branches (repo, name, rfc_slug, head_sha, committed_at, state)
         values ($1, $2, $3, $4, $5, $6)
         on conflict (repo, name) do update
           set rfc_slug = excluded.rfc_slug, head_sha = excluded.head_sha,
               committed_at = excluded.committed_at, state = excluded.state,
               updated_at = now()",
        repo.to_string(),
        branch.name,
        slug,
        branch.head_sha,
        branch.committed_at,
        branch.state as _,
    )
    .execute(&mut *conn)
    .await?;
    let action = match (cached, branch.state) {
        (_, BranchState::Deleted) => BranchAction::Deleted,
        (None, _) => BranchAction::Created,
        (Some(_), _) => BranchAction::Updated,
    };
    let changed = RfcBranchChanged {
        slug: slug.to_owned(),
        repo: repo.to_string(),
        branch: branch.name.clone(),
        head_sha: branch.head_sha.clone(),
        state: branch.state,
        action,
    };
    let detail = serde_json::to_value(&changed).expect("payloads serialize");
    let key = format!("{repo}:{}", branch.name);
    let verb = serde_json::to_value(action).expect("actions serialize");
    audit::record(
        conn,
        AuditEntity::RfcBranch,
        &key,
        verb.as_str().unwrap_or("updated"),
        SOURCE.as_str(),
        detail,
    )
    .await?;
    Ok(changed.event(SOURCE))
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
