//! `switchyard`: one binary, one subcommand per way of running it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use switchyard::config::Config;
use switchyard::fleet::{self, Fleet, Roles};
use switchyard::secret::{self, SecretError, SecretSource};
use switchyard_api::auth::{Authenticator, Role};
use tokio_util::sync::CancellationToken;

mod client;

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "A message-bus worker fleet on Postgres and NATS JetStream",
    after_help = client::EXIT_CODES
)]
struct Cli {
    /// Configuration file (default: ./switchyard.toml when present).
    #[arg(long, global = true, env = "SWITCHYARD_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    client: client::ClientArgs,
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
        /// Which role this process runs; processes of a role share its durable consumer.
        #[arg(long, value_enum, default_value_t = WorkerRole::All)]
        role: WorkerRole,
    },
    /// Create the database if missing and apply pending migrations, then exit.
    Migrate,
    /// The forge metadata cache: read Gitea now (`sweep`), or drop the cache and read
    /// everything again (`rebuild`). Prints the sweep's report as JSON.
    Forge {
        #[command(subcommand)]
        action: ForgeAction,
    },
    /// The configuration, loaded as every other command loads it (the file, then
    /// DATABASE_URL / NATS_URL, then SWITCHYARD_* variables), without connecting to
    /// anything.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Mint an API token signed with auth.secret and print it.
    Token {
        /// viewer reads; operator also enqueues and edits; admin also manages.
        #[arg(long, value_enum)]
        role: TokenRole,
        /// How long the token is valid, e.g. 15m, 12h, 30d (at least 1s).
        #[arg(long, value_parser = token_ttl, default_value = "12h")]
        ttl: Duration,
        /// Who the token speaks for; recorded as the actor in audit rows.
        #[arg(long, default_value = "cli")]
        sub: String,
    },
    #[command(flatten)]
    Client(client::Command),
}

/// `--ttl`: a token must outlive its minting (tokens count whole seconds).
fn token_ttl(raw: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(raw).map_err(|error| error.to_string())?;
    if ttl < Duration::from_secs(1) {
        return Err("a token must be valid for at least 1s".to_owned());
    }
    Ok(ttl)
}

#[derive(Clone, Copy, ValueEnum)]
enum WorkerRole {
    /// Applies topology mutations (consumer `mutator`).
    Mutator,
    /// Delivers published interface changes to inboxes (consumer `notifier`).
    Notifier,
    /// Runs graph schema migrations (consumer `migrator`).
    Migrator,
    /// Keeps the forge metadata cache from Gitea, and sweeps it (consumer `forge`).
    Forge,
    /// Every worker role.
    All,
}

#[derive(Clone, Copy, Subcommand)]
enum ForgeAction {
    /// Read the meta repo and every active RFC repo now, as the periodic sweep does.
    Sweep,
    /// Drop the cache (RFCs, branches, pull requests, parse errors) and rebuild it from
    /// Gitea. The actions log is kept.
    Rebuild,
}

#[derive(Clone, Copy, Subcommand)]
enum ConfigAction {
    /// Validate the configuration and print it as TOML, defaults included and secrets
    /// masked (***); exit 2 with the error naming the key when it is not valid.
    Check,
}

#[derive(Clone, Copy, ValueEnum)]
enum TokenRole {
    Viewer,
    Operator,
    Admin,
}

impl From<TokenRole> for Role {
    fn from(role: TokenRole) -> Self {
        match role {
            TokenRole::Viewer => Role::Viewer,
            TokenRole::Operator => Role::Operator,
            TokenRole::Admin => Role::Admin,
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // reqwest is built with rustls but no default provider (see Cargo.toml): the API
    // client and the forge's Gitea client both need this one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    // Client commands talk to an API over HTTP; they never read the server's config.
    if let Command::Client(command) = cli.command {
        return client::run(command, cli.client).await;
    }
    let mut config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("switchyard: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    if let Command::Config {
        action: ConfigAction::Check,
    } = cli.command
    {
        println!("# the configuration in force; secrets read ***");
        print!("{}", config.masked_toml());
        return std::process::ExitCode::SUCCESS;
    }
    // Before connecting to anything: a process that cannot sign or check tokens is
    // misconfigured (exit 2), not a dependency waited for.
    let secret = match resolve_secret(&cli.command, &mut config) {
        Ok(source) => source,
        Err(error) => {
            eprintln!("switchyard: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    // Asked for by name, the forge role must have a Gitea to read: a configuration
    // error, like any other (exit 2).
    let forge_asked = matches!(
        cli.command,
        Command::Worker {
            role: WorkerRole::Forge
        } | Command::Forge { .. }
    );
    if forge_asked && config.forge.url.is_none() {
        eprintln!(
            "switchyard: forge.url is not set: the forge role needs Gitea's base URL and forge.meta_repo (SWITCHYARD_FORGE__URL, SWITCHYARD_FORGE__META_REPO)"
        );
        return std::process::ExitCode::from(2);
    }
    if let Command::Token { role, ttl, sub } = &cli.command {
        return print_token(&config, (*role).into(), *ttl, sub);
    }
    let telemetry = match switchyard::telemetry::init(
        &config.log,
        &config.telemetry,
        process_role(&cli.command),
    ) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("switchyard: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = run(cli.command, config, secret).await;
    if let Err(error) = &result {
        tracing::error!("{error:#}");
    }
    telemetry.shutdown().await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::FAILURE,
    }
}

/// What the process runs, as its spans' `switchyard.role` names it.
fn process_role(command: &Command) -> &'static str {
    match command {
        Command::Up => "up",
        Command::Api => "api",
        Command::Worker { role } => match role {
            WorkerRole::Mutator => "mutator",
            WorkerRole::Notifier => "notifier",
            WorkerRole::Migrator => "migrator",
            WorkerRole::Forge => "forge",
            WorkerRole::All => "worker",
        },
        Command::Migrate => "migrate",
        Command::Forge { .. } => "forge-cli",
        Command::Token { .. } | Command::Config { .. } | Command::Client(_) => "cli",
    }
}

/// The signing secret for the commands that need one: `up` creates the quick-start
/// secret file when nothing is configured; `api` and `token` only read it.
fn resolve_secret(
    command: &Command,
    config: &mut Config,
) -> Result<Option<SecretSource>, SecretError> {
    match command {
        Command::Up => secret::resolve(config, true).map(Some),
        Command::Api | Command::Token { .. } => secret::resolve(config, false).map(Some),
        _ => Ok(None),
    }
}

fn print_token(config: &Config, role: Role, ttl: Duration, sub: &str) -> std::process::ExitCode {
    let secret = config.auth.secret.as_deref().expect("resolved before");
    println!(
        "{}",
        Authenticator::new(secret.as_bytes()).mint(sub, role, ttl)
    );
    std::process::ExitCode::SUCCESS
}

async fn run(command: Command, config: Config, secret: Option<SecretSource>) -> anyhow::Result<()> {
    let is_up = matches!(command, Command::Up);
    let roles = match command {
        Command::Migrate => return migrate(&config).await.map(drop),
        Command::Token { .. } | Command::Config { .. } => {
            unreachable!("handled before logging starts")
        }
        Command::Client(_) => unreachable!("handled before the configuration is loaded"),
        Command::Up => {
            migrate(&config).await?;
            Roles::ALL
        }
        Command::Api => Roles {
            api: true,
            ..Roles::NONE
        },
        Command::Worker { role } => match role {
            WorkerRole::Mutator => Roles {
                mutator: true,
                ..Roles::NONE
            },
            WorkerRole::Notifier => Roles {
                notifier: true,
                ..Roles::NONE
            },
            WorkerRole::Migrator => Roles {
                migrator: true,
                ..Roles::NONE
            },
            WorkerRole::Forge => Roles {
                forge: true,
                ..Roles::NONE
            },
            WorkerRole::All => Roles::WORKERS,
        },
        Command::Forge { action } => return forge(&config, action).await,
    };
    let pool = fleet::connect_pool(&config.database)
        .await
        .context("connecting to Postgres")?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let fleet = Fleet::start(&config, pool, roles, shutdown).await?;
    // Only `up`, the quick start: an `api` replica reading a mounted secret file must
    // not write an admin token to its logs on every start.
    if is_up && matches!(secret, Some(SecretSource::File | SecretSource::Created)) {
        print_quick_start_token(&config, secret == Some(SecretSource::Created));
    }
    fleet.wait().await?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// With the quick-start secret (never a configured one), prints an admin token as a
/// ready-to-paste `export` line of its own on stdout, after the API is listening.
fn print_quick_start_token(config: &Config, created: bool) {
    let token = Authenticator::new(config.auth.secret.as_deref().unwrap_or_default().as_bytes())
        .mint("admin", Role::Admin, QUICK_START_TOKEN_TTL);
    let file = config.auth.secret_file.display();
    let how = if created { "created" } else { "kept" };
    println!(
        "\nauth: no auth.secret configured; signing with the secret {how} in {file}.\n\
         An admin token, valid 24 h (mint more with `switchyard token --role viewer|operator|admin`):\n\n\
         export TOKEN={token}\n"
    );
}

/// How long the token `up` prints stays valid.
const QUICK_START_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

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

/// `switchyard forge sweep|rebuild`: runs in this process against the database and
/// Gitea; the events it commits are published by the fleet's relay.
async fn forge(config: &Config, action: ForgeAction) -> anyhow::Result<()> {
    let pool = migrate(config).await?;
    // No relay here: the fleet's relay sweep publishes what this commits.
    let (doorbell, _unused) = switchyard_bus::Doorbell::channel(1);
    let forge = switchyard_workers::forge::Forge::new(pool, doorbell, config.forge.clone())?;
    let report = match action {
        ForgeAction::Sweep => {
            forge
                .sweep(switchyard_domain::status::SweepTrigger::Request, "cli")
                .await?
        }
        ForgeAction::Rebuild => forge.rebuild("cli").await?,
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    if !report.unreachable.is_empty() {
        anyhow::bail!("{} repo(s) could not be read", report.unreachable.len());
    }
    Ok(())
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
