//! A repo's refresh claim (`forge_repos`): the one table that serializes the two
//! writers of the forge cache. Every statement on `forge_repos` is here.
//!
//! A claim is a lease (`claim_expires_at`) fenced by `claim_generation`: taking it
//! bumps the generation, and a refresh writes only while the row still carries its
//! holder id and generation ([`hold`], inside the writing transaction, with a row
//! lock). A holder that died is replaced once its lease expires; if it wakes up, its
//! write is fenced out.

use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use switchyard_domain::status::ForgeRepoRole;
use uuid::Uuid;

use super::RepoName;

/// A held claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The process holding it ([`super::Forge::holder`]).
    pub holder: Uuid,
    /// Bumped each time the claim is taken: a write fenced on it fails once another
    /// refresh took the claim over.
    pub generation: i64,
}

/// Takes `repo`'s claim for `holder` for `ttl`; `None` while another holds it.
pub async fn take(
    pool: &PgPool,
    repo: &RepoName,
    role: ForgeRepoRole,
    holder: Uuid,
    ttl: Duration,
) -> Result<Option<Claim>, sqlx::Error> {
    let generation = sqlx::query_scalar!(
        "insert into forge_repos (repo, role, claimed_by, claim_expires_at, claim_generation,
                                  claimed_at)
         values ($1, $2, $3, now() + make_interval(secs => $4), 1, now())
         on conflict (repo) do update
           set role = excluded.role, claimed_by = excluded.claimed_by,
               claim_expires_at = excluded.claim_expires_at, claimed_at = now(),
               claim_generation = forge_repos.claim_generation + 1
           where forge_repos.claimed_by is null or forge_repos.claim_expires_at < now()
         returning claim_generation",
        repo.to_string(),
        role as _,
        holder,
        ttl.as_secs_f64(),
    )
    .fetch_optional(pool)
    .await?;
    Ok(generation.map(|generation| Claim { holder, generation }))
}

/// Whether `claim` is still held, locking the row for the rest of `tx` so it cannot be
/// taken over before the writes commit.
pub async fn hold(
    tx: &mut PgConnection,
    repo: &RepoName,
    claim: Claim,
) -> Result<bool, sqlx::Error> {
    let held = sqlx::query_scalar!(
        "select 1 from forge_repos
         where repo = $1 and claimed_by = $2 and claim_generation = $3
         for update",
        repo.to_string(),
        claim.holder,
        claim.generation,
    )
    .fetch_optional(tx)
    .await?;
    Ok(held.is_some())
}

/// Releases `claim` after a successful refresh (in the writing transaction).
pub async fn release(
    tx: &mut PgConnection,
    repo: &RepoName,
    claim: Claim,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update forge_repos
         set claimed_by = null, claim_expires_at = null, refreshed_at = now(),
             read_from = claimed_at, last_error = null, last_error_at = null
         where repo = $1 and claimed_by = $2 and claim_generation = $3",
        repo.to_string(),
        claim.holder,
        claim.generation,
    )
    .execute(tx)
    .await?;
    Ok(())
}

/// Releases `claim` after a failed refresh, recording why it failed.
pub async fn release_failed(
    pool: &PgPool,
    repo: &RepoName,
    claim: Claim,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update forge_repos
         set claimed_by = null, claim_expires_at = null, last_error = $4, last_error_at = now()
         where repo = $1 and claimed_by = $2 and claim_generation = $3",
        repo.to_string(),
        claim.holder,
        claim.generation,
        error,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// When the last successful refresh of `repo` began reading Gitea, if any: a change
/// announced before then is already in the cache.
pub async fn read_from(
    pool: &PgPool,
    repo: &RepoName,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, sqlx::Error> {
    let read_from = sqlx::query_scalar!(
        "select read_from from forge_repos where repo = $1",
        repo.to_string(),
    )
    .fetch_optional(pool)
    .await?;
    Ok(read_from.flatten())
}

/// Those of `repos` never refreshed (nor being refreshed now), in one query.
pub async fn never_read(
    tx: &mut PgConnection,
    repos: &[String],
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select r as "repo!" from unnest($1::text[]) r
         where not exists (select 1 from forge_repos f where f.repo = r)"#,
        repos,
    )
    .fetch_all(tx)
    .await
}
