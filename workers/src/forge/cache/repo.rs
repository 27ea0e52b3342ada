//! The cache's rows of one repo's branches and pull requests (`rfc_branches`,
//! `rfc_pulls`), and the actions log read for `opened_by` (`forge_actions`): every
//! statement on them outside the API. Each write writes its audit row and returns the
//! event that announces it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use switchyard_bus::Event;
use switchyard_bus::payloads::{BranchAction, PullAction, RfcBranchChanged, RfcPullChanged};
use switchyard_domain::status::{AuditEntity, BranchState, OpenedBySource, PullKind, PullState};

use super::super::RepoName;
use super::audited;

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
    let key = format!("{repo}#{}", pull.number);
    audited(conn, AuditEntity::RfcPull, &key, action.as_str(), &changed).await
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
    let key = format!("{repo}:{}", branch.name);
    audited(
        conn,
        AuditEntity::RfcBranch,
        &key,
        action.as_str(),
        &changed,
    )
    .await
}
