//! One NATS, and the right one: a process refuses a server that lacks what
//! switchyard needs, naming the server and what is missing, before it declares a
//! stream or a consumer there.

use crate::harness;

use std::time::Duration;

use harness::{PrivateNats, Process, isolated_config};
use sqlx::PgPool;

/// Runs `switchyard worker` against `nats` and returns its exit code and log.
async fn worker_against(pool: &PgPool, nats: &PrivateNats) -> (Option<i32>, String) {
    worker_at(pool, &nats.url()).await
}

/// Runs `switchyard worker` against the NATS server at `url`.
async fn worker_at(pool: &PgPool, url: &str) -> (Option<i32>, String) {
    let config = isolated_config();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut worker = Process::spawn_with(
        pool,
        &config,
        &["worker"],
        &[("NATS_URL", url)],
        log.reopen().unwrap(),
    );
    let code = worker.exit_code(Duration::from_secs(30)).await;
    (code, std::fs::read_to_string(log.path()).unwrap())
}

/// The stream names on `nats`: nothing may be declared on a refused server.
async fn streams_on(nats: &PrivateNats) -> Vec<String> {
    use futures::TryStreamExt;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.stream_names().try_collect().await.unwrap_or_default()
}

#[sqlx::test(migrations = "../migrations")]
async fn a_server_without_jetstream_is_refused_by_name(pool: PgPool) {
    let bin = std::env::var("NATS_SERVER_BIN").expect("NATS_SERVER_BIN is set by scripts/test");
    let nats = PrivateNats::start_with(&bin, false).await;
    let (code, output) = worker_against(&pool, &nats).await;
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains(&nats.url()), "names the server: {output}");
    assert!(
        output.contains("JetStream is not enabled on the server"),
        "{output}"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn a_server_older_than_2_10_is_refused_and_left_untouched(pool: PgPool) {
    // Debian's nats-server 2.9, which machines of this kind run on 4222.
    let old = std::env::var("NATS_OLD_SERVER_BIN")
        .expect("NATS_OLD_SERVER_BIN is set by scripts/test (Debian's nats-server)");
    let nats = PrivateNats::start_with(&old, true).await;
    let (code, output) = worker_against(&pool, &nats).await;
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains("nats-server 2.9"),
        "names the version: {output}"
    );
    assert!(
        output.contains("needs nats-server 2.10.0 or newer"),
        "{output}"
    );
    assert_eq!(streams_on(&nats).await, Vec::<String>::new());
}

#[sqlx::test(migrations = "../migrations")]
async fn an_account_without_jetstream_is_refused_at_once(pool: PgPool) {
    let nats = PrivateNats::start_configured(
        "accounts { APP: { users: [ {user: app, password: app} ] } }",
    )
    .await;
    let url = format!("nats://app:app@127.0.0.1:{}", nats.port);
    let (code, output) = worker_at(&pool, &url).await;
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains("JetStream is not enabled for this account"),
        "{output}"
    );
    assert!(
        !output.contains("app:app"),
        "credentials are not shown: {output}"
    );
    assert!(output.contains("nats://***@127.0.0.1"), "{output}");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_refused_login_is_not_waited_for(pool: PgPool) {
    let nats = PrivateNats::start_configured(
        "accounts { APP: { users: [ {user: app, password: app} ], jetstream: enabled } }",
    )
    .await;
    let url = format!("nats://app:wrong@127.0.0.1:{}", nats.port);
    let started = std::time::Instant::now();
    let (code, output) = worker_at(&pool, &url).await;
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("authorization violation"), "{output}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "retried a refused login"
    );
    // With the right password (taken from the URL), the same server is used.
    let url = format!("nats://app:app@127.0.0.1:{}", nats.port);
    let config = isolated_config();
    let mut worker = Process::spawn_with(
        &pool,
        &config,
        &["worker"],
        &[("NATS_URL", url.as_str())],
        std::process::Stdio::null(),
    );
    harness::eventually(Duration::from_secs(20), || async {
        streams_on_as(&url).await.contains(&config.bus.stream)
    })
    .await;
    worker.signal("TERM");
    assert_eq!(worker.exit_code(Duration::from_secs(20)).await, Some(0));
}

/// The stream names the account behind `url` sees.
async fn streams_on_as(url: &str) -> Vec<String> {
    use futures::TryStreamExt;
    let (user, rest) = url.trim_start_matches("nats://").split_once('@').unwrap();
    let (user, password) = user.split_once(':').unwrap();
    let Ok(client) =
        async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
            .connect(rest)
            .await
    else {
        return Vec::new();
    };
    let js = async_nats::jetstream::new(client);
    js.stream_names().try_collect().await.unwrap_or_default()
}
