//! The forge cache's bookkeeping, for operators: `GET /forge/repos` (each repo ever
//! refreshed, its last error and whether a refresh holds its claim), `GET
//! /forge/parse-errors` (meta-repo entries that are not RFCs), the sweeps ([`sweeps`]:
//! listed, asked for, rebuilds), and `POST /forge/actions`, the actions log: who asked
//! switchyard to open a pull request through the bot account.
//!
//! The forge worker role writes every table here but `forge_actions`; this module only
//! reads them. Recording an action stages a `forge.{owner}.{repo}.changed` event, so
//! the forge role reads that repo again and resolves the pull request's `opened_by`.
//! The cached RFCs themselves are [`super::rfcs`].

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use switchyard_bus::payloads::{ForgeChanged, ForgeTrigger};
use switchyard_bus::{OutboxTx, Payload, Source};
use switchyard_domain::status::{AuditEntity, ForgeRepoRole};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{KeyPageParams, Page, PageParams};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{Body, Query};
use crate::openapi::Refusals;
use crate::{AppState, audit, validate};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_repos))
        .routes(routes!(list_parse_errors))
        .routes(routes!(record_action))
        .merge(sweeps::router())
}

pub mod sweeps;

pub use switchyard_domain::forge::RepoName;

/// Reads `owner/name` given as `field` ([`RepoName::parse`]); 422 naming the field
/// otherwise.
pub fn parse_repo(field: &str, text: &str) -> Result<RepoName, ApiError> {
    RepoName::parse(text).ok_or_else(|| {
        ApiError::Unprocessable(format!(
            "{field} {text:?} is not a Gitea repo: expected owner/name, each 1 to {} letters, digits, '-', '_' or '.'",
            switchyard_domain::forge::MAX_NAME
        ))
    })
}

/// The event asking the forge role to read `repo` again.
pub fn changed(repo: &RepoName, trigger: ForgeTrigger) -> ForgeChanged {
    ForgeChanged {
        owner: repo.owner.clone(),
        name: repo.name.clone(),
        trigger,
        gitea_event: None,
        delivery_id: None,
    }
}

/// A repo the forge cache has refreshed, and how its refreshes go.
#[derive(Debug, Serialize, ToSchema)]
pub struct ForgeRepoOut {
    /// `owner/name`, lower case.
    pub repo: String,
    pub role: ForgeRepoRole,
    /// When a refresh last succeeded.
    pub refreshed_at: Option<DateTime<Utc>>,
    /// Why the last refresh failed; null once one succeeds.
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// A refresh holds the repo's claim right now (unexpired).
    pub claimed: bool,
}

/// Every repo the forge cache has refreshed, by name, a page at a time.
#[utoipa::path(
    get,
    path = "/forge/repos",
    tag = "forge",
    params(KeyPageParams),
    responses((status = 200, description = "A page of repos", body = Page<ForgeRepoOut>), Refusals),
    security(("bearer" = ["viewer"]))
)]
async fn list_repos(
    State(app): State<AppState>,
    Query(params): Query<KeyPageParams>,
) -> Result<Json<Page<ForgeRepoOut>>, ApiError> {
    let page = PageParams::from(params);
    let limit = page.limit()?;
    let after: Option<String> = page.cursor()?;
    let rows = sqlx::query_as!(
        ForgeRepoOut,
        r#"select repo, role as "role: ForgeRepoRole", refreshed_at, last_error, last_error_at,
                coalesce(claimed_by is not null and claim_expires_at > now(), false) as "claimed!"
         from forge_repos
         where ($1::text is null or repo > $1)
         order by repo
         limit $2"#,
        after,
        limit + 1,
    )
    .fetch_all(&app.pool)
    .await?;
    Ok(Json(Page::from_rows(rows, limit, |r| r.repo.clone())))
}

/// A meta-repo entry that could not be read as an RFC.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParseErrorOut {
    /// The entry's path in the meta repo, `rfcs/<file>.md`.
    pub path: String,
    /// The blob that failed; a new blob at the path is read again.
    pub blob_sha: String,
    /// What is wrong with it.
    pub error: String,
    pub seen_at: DateTime<Utc>,
}

/// The meta-repo entries that are not RFCs, by path, a page at a time.
#[utoipa::path(
    get,
    path = "/forge/parse-errors",
    tag = "forge",
    params(KeyPageParams),
    responses((status = 200, description = "A page of parse errors", body = Page<ParseErrorOut>), Refusals),
    security(("bearer" = ["viewer"]))
)]
async fn list_parse_errors(
    State(app): State<AppState>,
    Query(params): Query<KeyPageParams>,
) -> Result<Json<Page<ParseErrorOut>>, ApiError> {
    let page = PageParams::from(params);
    let limit = page.limit()?;
    let after: Option<String> = page.cursor()?;
    let rows = sqlx::query_as!(
        ParseErrorOut,
        "select path, blob_sha, error, seen_at from forge_parse_errors
         where ($1::text is null or path > $1)
         order by path
         limit $2",
        after,
        limit + 1,
    )
    .fetch_all(&app.pool)
    .await?;
    Ok(Json(Page::from_rows(rows, limit, |e| e.path.clone())))
}

/// Body of `POST /forge/actions`: switchyard opened pull request `pr_number` of
/// `repo` through the bot account, on behalf of `actor`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgeActionIn {
    /// `owner/name` on Gitea; stored lower case. Each part is 1 to 100 letters,
    /// digits, `-`, `_` and `.`, but not `.` or `..`.
    #[schema(
        pattern = "^([A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}|[.][A-Za-z0-9_-][A-Za-z0-9_.-]{0,98}|[.][.][A-Za-z0-9_.-]{1,98})/([A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}|[.][A-Za-z0-9_-][A-Za-z0-9_.-]{0,98}|[.][.][A-Za-z0-9_.-]{1,98})$"
    )]
    pub repo: String,
    #[schema(minimum = 1)]
    pub pr_number: i64,
    /// The RFC the pull request is about.
    #[schema(value_type = validate::Slug)]
    pub rfc_slug: String,
    /// The person behind the pull request, as `opened_by` will show them.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub actor: String,
    /// What switchyard did, for example `propose`.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub action: String,
}

/// An actions-log entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct ForgeActionOut {
    /// `owner/name`, lower case.
    pub repo: String,
    pub pr_number: i64,
    pub rfc_slug: String,
    pub actor: String,
    pub action: String,
    pub recorded_at: DateTime<Utc>,
}

/// The action's fields, checked: 422 naming the first one that is wrong.
fn check_action(input: &ForgeActionIn) -> Result<(RepoName, String, String), ApiError> {
    let repo = parse_repo("repo", &input.repo)?;
    if input.pr_number < 1 {
        return Err(ApiError::Unprocessable(format!(
            "pr_number must be a pull request number (1 or more), not {}",
            input.pr_number
        )));
    }
    validate::slug("rfc_slug", &input.rfc_slug)?;
    let actor = printable("actor", &input.actor, 200)?;
    let action = printable("action", &input.action, 64)?;
    Ok((repo, actor, action))
}

/// [`validate::text`] without control characters.
fn printable(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let value = validate::text(field, value, max)?;
    if value.chars().any(char::is_control) {
        return Err(ApiError::Unprocessable(format!(
            "{field} must not contain control characters (line breaks, tabs, …)"
        )));
    }
    Ok(value)
}

/// Record who asked switchyard to open a pull request. Recording it again replaces
/// the entry. The forge role then reads the repo again, so the pull request's
/// `opened_by` becomes the actor.
#[utoipa::path(
    post,
    path = "/forge/actions",
    tag = "forge",
    request_body = ForgeActionIn,
    responses((status = 201, description = "Recorded", body = ForgeActionOut), Refusals),
    security(("bearer" = ["operator"]))
)]
async fn record_action(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Body(input): Body<ForgeActionIn>,
) -> Result<(StatusCode, Json<ForgeActionOut>), ApiError> {
    let (repo, actor, action) = check_action(&input)?;
    let mut tx = OutboxTx::begin(&app.pool).await?;
    let recorded = sqlx::query_as!(
        ForgeActionOut,
        "insert into forge_actions (repo, pr_number, rfc_slug, actor, action)
         values ($1, $2, $3, $4, $5)
         on conflict (repo, pr_number) do update
         set rfc_slug = excluded.rfc_slug, actor = excluded.actor, action = excluded.action,
             recorded_at = now()
         returning repo, pr_number, rfc_slug, actor, action, recorded_at",
        repo.to_string(),
        input.pr_number,
        &input.rfc_slug,
        &actor,
        &action,
    )
    .fetch_one(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        AuditEntity::ForgeAction,
        &format!("{}#{}", recorded.repo, recorded.pr_number),
        "recorded",
        &caller.subject,
        json!(recorded),
    )
    .await?;
    let event = changed(&repo, ForgeTrigger::Action).event(Source::Api);
    tx.stage(std::slice::from_ref(&event));
    tx.commit(&app.doorbell).await?;
    Ok((StatusCode::CREATED, Json(recorded)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repos_are_gitea_names_in_lower_case() {
        let repo = parse_repo("repo", "Acme/RFC.meta").unwrap();
        assert_eq!(repo.to_string(), "acme/rfc.meta");
        for bad in [
            "acme",
            "acme/",
            "/meta",
            "acme/meta/x",
            "acme/me ta",
            "acme/..",
            "./meta",
            "acme/mé",
            &format!("acme/{}", "a".repeat(101)),
        ] {
            let error = parse_repo("repo", bad).unwrap_err().to_string();
            assert!(error.starts_with("repo "), "{bad}: {error}");
        }
        assert!(parse_repo("repo", &format!("a/{}", "b".repeat(100))).is_ok());
    }

    #[test]
    fn actions_name_the_field_that_is_wrong() {
        let good = || ForgeActionIn {
            repo: "acme/meta".into(),
            pr_number: 7,
            rfc_slug: "cache".into(),
            actor: "Ada Lovelace".into(),
            action: "propose".into(),
        };
        assert!(check_action(&good()).is_ok());
        type Spoil = fn(&mut ForgeActionIn);
        let cases: [(&str, Spoil); 5] = [
            ("repo", |a| a.repo = "meta".into()),
            ("pr_number", |a| a.pr_number = 0),
            ("rfc_slug", |a| a.rfc_slug = "Cache".into()),
            ("actor", |a| a.actor = "Ada\nLovelace".into()),
            ("action", |a| a.action = "x".repeat(65)),
        ];
        for (field, spoil) in cases {
            let mut input = good();
            spoil(&mut input);
            let error = check_action(&input).unwrap_err().to_string();
            assert!(error.starts_with(field), "{field}: {error}");
        }
    }
}
