//! One NATS, and the right one: a process refuses a server that lacks what
//! switchyard needs, naming the server and what is missing, before it declares a
//! stream or a consumer there.

mod harness;

use std::time::Duration;

use harness::{PrivateNats, Process, isolated_config};
use sqlx::PgPool;

/// Debian's nats-server, which machines of this kind run on 4222 (2.9: too old).
const DISTRIBUTION_SERVER: &str = "/usr/sbin/nats-server";

/// Runs `switchyard worker` against `nats` and returns its exit code and log.
async fn worker_against(pool: &PgPool, nats: &PrivateNats) -> (Option<i32>, String) {
    let config = isolated_config();
    let log = tempfile::NamedTempFile::new().unwrap();
    let url = nats.url();
    let mut worker = Process::spawn_with(
        pool,
        &config,
        &["worker"],
        &[("NATS_URL", url.as_str())],
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
    if !std::path::Path::new(DISTRIBUTION_SERVER).exists() {
        eprintln!("{DISTRIBUTION_SERVER} is not installed on this machine; nothing to refuse");
        return;
    }
    let nats = PrivateNats::start_with(DISTRIBUTION_SERVER, true).await;
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
