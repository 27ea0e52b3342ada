//! The lists of mutations: one topology's in seq order, oldest or newest first (`GET
//! /topologies/{id}/mutations`), and every topology's newest first (`GET /mutations`,
//! with `?status=failed` the failed work).

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use sqlx::{PgPool, Postgres, QueryBuilder};
use utoipa::IntoParams;
use uuid::Uuid;

use super::{MutationOut, MutationStatus};
use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Path, Query};
use crate::openapi::Refusals;
use crate::routes::{Page, PageParams, topologies};

/// Which end of a topology's seq order a list starts from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SeqOrder {
    /// Oldest first: seq 1, 2, 3, …
    #[default]
    Asc,
    /// Newest first: the latest seq, then the one before, …
    Desc,
}

/// `?status=&order=&limit=&cursor=` of `GET /topologies/{id}/mutations`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MutationListParams {
    /// Only mutations in this status.
    #[param(inline)]
    pub status: Option<MutationStatus>,
    /// `asc` (the default): in seq order, oldest first; `desc`: newest first. Pass
    /// `next_cursor` back with the same order.
    #[param(inline)]
    pub order: Option<SeqOrder>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,18}$")]
    pub cursor: Option<String>,
}

/// A topology's mutations in seq order (or newest first with `?order=desc`), a page at
/// a time.
#[utoipa::path(
    get,
    path = "/topologies/{id}/mutations",
    tag = "mutations",
    params(("id" = Uuid, Path, description = "Topology id"), MutationListParams),
    responses((status = 200, description = "A page of mutations", body = Page<MutationOut>), Refusals),
    security(("bearer" = ["viewer"]))
)]
pub(super) async fn list(
    State(app): State<AppState>,
    Path(topology_id): Path<Uuid>,
    Query(params): Query<MutationListParams>,
) -> Result<Json<Page<MutationOut>>, ApiError> {
    let page = PageParams {
        limit: params.limit,
        cursor: params.cursor,
    };
    let limit = page.limit()?;
    let cursor: Option<i64> = page.cursor()?;
    let order = params.order.unwrap_or_default();
    topologies::ensure_exists(&app.pool, topology_id).await?;
    let mut query = QueryBuilder::<Postgres>::new(
        "select id, topology_id, seq, status, ops, if_version, error, applied_version, actor, idempotency_key, created_at, finished_at from mutations where topology_id = ",
    );
    query.push_bind(topology_id);
    match (order, cursor) {
        (SeqOrder::Asc, after) => {
            query.push(" and seq > ").push_bind(after.unwrap_or(0));
        }
        (SeqOrder::Desc, Some(before)) => {
            query.push(" and seq < ").push_bind(before);
        }
        (SeqOrder::Desc, None) => {}
    }
    push_status(&mut query, params.status);
    query.push(match order {
        SeqOrder::Asc => " order by seq limit ",
        SeqOrder::Desc => " order by seq desc limit ",
    });
    query.push_bind(limit + 1);
    let rows = query.build_query_as().fetch_all(&app.pool).await?;
    Ok(Json(Page::from_rows(rows, limit, |m| m.seq.to_string())))
}

/// Adds `and status = '…'` to `query` when a status is asked for. Each status is then
/// its own statement, and the status is written into it rather than bound: a generic
/// plan of `$1 is null or status = $1` (Postgres may switch to one after five runs)
/// could never prove `status = 'failed'`, so never use a partial index such as
/// `mutations_failed`. `as_str` is one of three fixed words.
fn push_status(query: &mut QueryBuilder<Postgres>, status: Option<MutationStatus>) {
    if let Some(status) = status {
        query.push(format_args!(" and status = '{}'", status.as_str()));
    }
}

/// `?status=&limit=&cursor=` of `GET /mutations`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AllMutationsParams {
    /// Only mutations in this status (`failed`: the failed work of every topology).
    #[param(inline)]
    pub status: Option<MutationStatus>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(format = Uuid)]
    pub cursor: Option<String>,
}

/// Every topology's mutations, newest first (by id, which is creation order), a page
/// at a time; `?status=failed` lists the failed ones.
#[utoipa::path(
    get,
    path = "/mutations",
    tag = "mutations",
    params(AllMutationsParams),
    responses((status = 200, description = "A page of mutations, newest first", body = Page<MutationOut>), Refusals),
    security(("bearer" = ["viewer"]))
)]
pub(super) async fn list_all(
    State(app): State<AppState>,
    Query(params): Query<AllMutationsParams>,
) -> Result<Json<Page<MutationOut>>, ApiError> {
    let page = PageParams {
        limit: params.limit,
        cursor: params.cursor,
    };
    let limit = page.limit()?;
    let before: Option<Uuid> = page.cursor()?;
    let rows = newest_first(&app.pool, before, params.status, limit + 1).await?;
    Ok(Json(Page::from_rows(rows, limit, |m| m.id.to_string())))
}

/// Up to `limit` mutations created before the mutation `before`, newest first, in
/// `status` when given.
async fn newest_first(
    pool: &PgPool,
    before: Option<Uuid>,
    status: Option<MutationStatus>,
    limit: i64,
) -> Result<Vec<MutationOut>, sqlx::Error> {
    // Ids are UUIDv7: descending id order is newest first, and a stable keyset cursor.
    // `mutations_failed` serves `?status=failed`.
    let mut query = QueryBuilder::<Postgres>::new(
        "select id, topology_id, seq, status, ops, if_version, error, applied_version, actor, idempotency_key, created_at, finished_at from mutations where true",
    );
    if let Some(before) = before {
        query.push(" and id < ").push_bind(before);
    }
    push_status(&mut query, status);
    query.push(" order by id desc limit ").push_bind(limit);
    query.build_query_as().fetch_all(pool).await
}
