//! The quick start's credentials: `up` keeps its generated secret in the state
//! directory (owner-only), prints a ready-to-paste `export TOKEN=…` line, and the
//! token still works after a restart; `token` and `api` use the same file; a
//! configured secret wins and is never written; `api` without any secret is a
//! configuration error (exit 2) before anything is contacted.

use crate::harness;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::{database_url, eventually, nats_url};
use sqlx::PgPool;
use uuid::Uuid;

/// `switchyard <args>` from `dir`, on this test's database and a stream of its own,
/// with no secret in the environment. Stdout goes to `dir/stdout`.
fn switchyard(dir: &Path, pool: &PgPool, tag: &str, port: u16, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command
        .args(args)
        .current_dir(dir)
        .env("DATABASE_URL", database_url(pool))
        .env("NATS_URL", nats_url())
        .env("SWITCHYARD_HTTP__LISTEN", format!("localhost:{port}"))
        .env("SWITCHYARD_BUS__STREAM", format!("SYQ_{tag}"))
        .env("SWITCHYARD_BUS__SUBJECT_PREFIX", format!("q{tag}"))
        .env("SWITCHYARD_DATABASE__MAX_CONNECTIONS", "4")
        .env("SWITCHYARD_LOG__FILTER", "warn")
        .env_remove("SWITCHYARD_AUTH__SECRET")
        .stdin(Stdio::null());
    command
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `up` until its API answers, then returns the token it printed and stops it.
async fn up_once(dir: &Path, pool: &PgPool, tag: &str) -> (String, u16) {
    let port = free_port();
    let stdout = dir.join(format!("up-{port}.out"));
    let mut up = switchyard(dir, pool, tag, port, &["up"])
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut token = String::new();
    eventually(Duration::from_secs(60), || {
        let text = std::fs::read_to_string(&stdout).unwrap_or_default();
        token = text
            .lines()
            .find_map(|l| l.strip_prefix("export TOKEN="))
            .unwrap_or_default()
            .to_owned();
        let found = !token.is_empty();
        async move { found }
    })
    .await;
    let answer = get(port, &token).await;
    assert_eq!(answer, 200, "the printed token is accepted");
    let _ = up.kill();
    let _ = up.wait();
    (token, port)
}

async fn get(port: u16, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/api/v1/topologies"))
        .bearer_auth(token)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[sqlx::test(migrations = false)]
async fn up_keeps_its_secret_and_its_tokens_survive_restarts(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let tag = Uuid::now_v7().simple().to_string();
    let (first, _) = up_once(dir.path(), &pool, &tag).await;

    let secret_file = dir.path().join(".switchyard/auth-secret");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&secret_file), 0o600);
    assert_eq!(mode(&dir.path().join(".switchyard")), 0o700);
    let secret = std::fs::read_to_string(&secret_file).unwrap();

    // Restarted: the same secret, so the first run's token still works.
    let port = free_port();
    let mut up = switchyard(dir.path(), &pool, &tag, port, &["up"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(60), || async {
        get(port, &first).await == 200
    })
    .await;
    assert_eq!(std::fs::read_to_string(&secret_file).unwrap(), secret);

    // `token` on the same checkout signs with the same secret.
    let minted = switchyard(
        dir.path(),
        &pool,
        &tag,
        port,
        &["token", "--role", "viewer"],
    )
    .output()
    .unwrap();
    assert!(minted.status.success(), "{minted:?}");
    let viewer = String::from_utf8(minted.stdout).unwrap();
    assert_eq!(get(port, viewer.trim()).await, 200);
    let _ = up.kill();
    let _ = up.wait();

    // An `api` replica reads the same file, and prints no token.
    let port = free_port();
    let stdout = dir.path().join("api.out");
    let mut api = switchyard(dir.path(), &pool, &tag, port, &["api"])
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(60), || async {
        get(port, &first).await == 200
    })
    .await;
    let _ = api.kill();
    let _ = api.wait();
    let printed = std::fs::read_to_string(&stdout).unwrap();
    assert!(!printed.contains("TOKEN"), "{printed}");
}

#[sqlx::test(migrations = false)]
async fn a_configured_secret_wins_is_never_printed_and_nothing_is_written(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let tag = Uuid::now_v7().simple().to_string();
    let port = free_port();
    let secret = format!("configured-{}", "s".repeat(32));
    let stdout = dir.path().join("up.out");
    let mut up = switchyard(dir.path(), &pool, &tag, port, &["up"])
        .env("SWITCHYARD_AUTH__SECRET", &secret)
        .env("SWITCHYARD_LOG__FILTER", "info")
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(dir.path().join("up.err")).unwrap())
        .spawn()
        .unwrap();
    let ready = format!("http://127.0.0.1:{port}/readyz");
    eventually(Duration::from_secs(60), || async {
        matches!(reqwest::get(&ready).await, Ok(r) if r.status().is_success())
    })
    .await;
    let _ = up.kill();
    let _ = up.wait();
    let printed = std::fs::read_to_string(&stdout).unwrap()
        + &std::fs::read_to_string(dir.path().join("up.err")).unwrap();
    assert!(!printed.contains(&secret));
    assert!(!printed.contains("export TOKEN="), "{printed}");
    assert!(!dir.path().join(".switchyard").exists());
    // Start-up names each role it runs.
    for role in ["mutator", "notifier", "migrator"] {
        assert!(
            printed.contains(&format!("role=\"{role}\""))
                || printed.contains(&format!("role={role}")),
            "{role} not logged: {printed}"
        );
    }
    assert!(printed.contains("api listening"), "{printed}");
}

#[sqlx::test(migrations = false)]
async fn api_without_a_secret_is_a_configuration_error_before_connecting(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let tag = Uuid::now_v7().simple().to_string();
    let started = Instant::now();
    // Nothing listens on port 1: connecting would retry for half a minute.
    let out = switchyard(dir.path(), &pool, &tag, free_port(), &["api"])
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .env("NATS_URL", "nats://127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(started.elapsed() < Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("auth.secret is not set"), "{stderr}");
    assert!(stderr.contains(".switchyard/auth-secret"), "{stderr}");
    let token = switchyard(dir.path(), &pool, &tag, 1, &["token", "--role", "admin"])
        .output()
        .unwrap();
    assert_eq!(token.status.code(), Some(2));
}
