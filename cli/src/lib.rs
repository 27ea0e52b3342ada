//! # switchyard (the binary's library half)
//!
//! What `main` wires together, kept in a library so end-to-end tests start exactly
//! the same fleet in-process.
//!
//! - [`config`]: layered configuration (defaults → `switchyard.toml` → environment).
//! - [`fleet`]: starting roles in one process and shutting them down in order.
//! - [`metrics`]: the process's Prometheus recorder and what `/metrics` renders.
//! - [`secret`]: the token-signing secret, configured or kept in `auth.secret_file`.
//! - [`telemetry`]: tracing subscriber: the log (text or JSON), and OpenTelemetry spans,
//!   exported over OTLP when configured.
//! - [`MIGRATOR`]: the SQL in `migrations/`, embedded.

pub mod config;
pub mod fleet;
pub mod metrics;
pub mod secret;
pub mod telemetry;

/// Every migration in `migrations/`, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Creates the database named in `url` if it does not exist yet (fresh machines),
/// waiting (with backoff) for Postgres to accept connections.
pub async fn create_database_if_missing(url: &str) -> Result<(), sqlx::Error> {
    use backon::Retryable;
    use sqlx::migrate::MigrateDatabase;
    let exists = (|| sqlx::Postgres::database_exists(url))
        .retry(fleet::startup_backoff())
        .notify(|error, delay| tracing::warn!(%error, ?delay, "Postgres not reachable yet"))
        .await?;
    if !exists {
        tracing::info!("creating database");
        sqlx::Postgres::create_database(url).await?;
    }
    Ok(())
}
