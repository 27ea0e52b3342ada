//! Liveness and readiness probes. Unversioned and outside `/api/v1` so load balancers
//! and orchestrators can reach them without credentials.

use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::RETRY_AFTER_SECONDS;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// 200 while the process serves requests.
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// 200 when Postgres answers and NATS is connected, else 503 naming what is down,
/// with `Retry-After` like every 503.
async fn readyz(State(app): State<AppState>) -> Response {
    let ping = sqlx::query_scalar!("select 1").fetch_optional(&app.pool);
    let postgres = matches!(
        tokio::time::timeout(Duration::from_secs(2), ping).await,
        Ok(Ok(_))
    );
    let nats = app.nats.connection_state() == async_nats::connection::State::Connected;
    let word = |up: bool| if up { "ok" } else { "unreachable" };
    let status = if postgres && nats {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({ "postgres": word(postgres), "nats": word(nats) });
    let retry = [(header::RETRY_AFTER, RETRY_AFTER_SECONDS.to_string())];
    if status == StatusCode::OK {
        (status, Json(body)).into_response()
    } else {
        (status, retry, Json(body)).into_response()
    }
}
