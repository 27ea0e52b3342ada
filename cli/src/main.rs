//! `switchyard`: one binary, one subcommand per way of running it.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use switchyard::config::Config;
use switchyard::fleet::{self, Fleet, Roles};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "A message-bus worker fleet on Postgres and NATS JetStream"
)]
struct Cli {
    /// Configuration file (default: ./switchyard.toml when present).
    #[arg(long, global = true, env = "SWITCHYARD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Migrate, then run the API and every worker role in this process.
    Up,
    /// Run only the HTTP API (plus the relay and reconciler).
    Api,
    /// Run worker roles (plus the relay and reconciler).
    Worker {
        #[arg(long, value_enum, default_value_t = Role::All)]
        role: Role,
    },
    /// Create the database if missing and apply pending migrations, then exit.
    Migrate,
}

#[derive(Clone, Copy, ValueEnum)]
enum Role {
    Mutator,
    All,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("switchyard: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    switchyard::telemetry::init(&config.log);
    match run(cli.command, config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    let roles = match command {
        Command::Migrate => return migrate(&config).await.map(drop),
        Command::Up => {
            migrate(&config).await?;
            Roles::ALL
        }
        Command::Api => Roles {
            api: true,
            mutator: false,
        },
        Command::Worker {
            role: Role::Mutator | Role::All,
        } => Roles {
            api: false,
            mutator: true,
        },
    };
    let pool = fleet::connect_pool(&config.database)
        .await
        .context("connecting to Postgres")?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let fleet = Fleet::start(&config, pool, roles, shutdown).await?;
    fleet.wait().await?;
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn migrate(config: &Config) -> anyhow::Result<sqlx::PgPool> {
    switchyard::create_database_if_missing(&config.database.url)
        .await
        .context("creating the database")?;
    let pool = fleet::connect_pool(&config.database)
        .await
        .context("connecting to Postgres")?;
    switchyard::MIGRATOR
        .run(&pool)
        .await
        .context("applying migrations")?;
    tracing::info!("database migrated");
    Ok(pool)
}

/// Fires `shutdown` on SIGINT or SIGTERM.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: finishing in-flight work");
    shutdown.cancel();
}
