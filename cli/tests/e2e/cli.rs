//! The client commands, run as the real binary against a test fleet with
//! `SWITCHYARD_URL` and `SWITCHYARD_TOKEN` set: topologies, mutations from a file and
//! from stdin with `--wait` and its exit codes, `failed` (and the
//! `GET /mutations?status=failed` it reads), `tail` resuming after its connection is
//! cut (through a proxy the test controls), `graph migrate`, HTTP errors, `https://`
//! URLs (through a TLS front the test runs) and URLs with credentials, `tail` against a stream that closes at once, and
//! the refusal of a zero token TTL.

use crate::harness;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::{TestFleet, token};
use reqwest::StatusCode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use sqlx::PgPool;
use switchyard_api::auth::Role;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{ChildStdout, Command};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// What a finished command left behind.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", self.stdout))
    }
}

/// `switchyard` speaking to `url` with `token`, nothing else from the environment.
fn switchyard(url: &str, token: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command
        .env("SWITCHYARD_URL", url)
        .env("SWITCHYARD_TOKEN", token)
        .env_remove("SWITCHYARD_CONFIG")
        .kill_on_drop(true);
    command
}

/// Runs `switchyard args` against `url` as an admin of `fleet`, with `stdin` piped in.
async fn run_at(fleet: &TestFleet, url: &str, args: &[&str], stdin: Option<&str>) -> Ran {
    let mut child = switchyard(url, &token(&fleet.config, Role::Admin))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning switchyard");
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .await
        .unwrap();
    drop(input);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("switchyard {args:?} did not finish within 60s"))
        .unwrap();
    Ran {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

async fn run(fleet: &TestFleet, args: &[&str], stdin: Option<&str>) -> Ran {
    run_at(fleet, &fleet.base, args, stdin).await
}

fn file(dir: &tempfile::TempDir, name: &str, content: &Value) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, content.to_string()).unwrap();
    path.to_str().unwrap().to_owned()
}

#[sqlx::test(migrations = "../migrations")]
async fn topologies_and_mutations_from_the_command_line(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let dir = tempfile::tempdir().unwrap();
    let document = file(&dir, "document.json", &json!({"nodes": {}}));

    let created = run(
        &fleet,
        &[
            "topology",
            "create",
            "--name",
            "edge-west",
            "--document",
            &document,
            "--json",
        ],
        None,
    )
    .await;
    assert_eq!(created.code, Some(0), "{}", created.stderr);
    let topology = created.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(created.json()["document"], json!({"nodes": {}}));

    let shown = run(&fleet, &["topology", "show", &topology], None).await;
    assert_eq!(shown.code, Some(0), "{}", shown.stderr);
    assert!(shown.stdout.contains("edge-west"), "{}", shown.stdout);
    assert!(shown.stdout.contains("version: 0"), "{}", shown.stdout);
    let listed = run(&fleet, &["topology", "list", "--json"], None).await;
    assert_eq!(listed.json()["items"][0]["id"], topology.as_str());

    // From a file, waiting: applied is exit 0.
    let ops = file(
        &dir,
        "ops.json",
        &json!([{"op": "add", "path": "/nodes/r1", "value": {"kind": "router"}}]),
    );
    let applied = run(
        &fleet,
        &["mutation", "enqueue", &topology, "--ops", &ops, "--wait"],
        None,
    )
    .await;
    assert_eq!(applied.code, Some(0), "{}", applied.stderr);
    assert!(
        applied.stdout.contains("applied") && applied.stdout.contains("version 1"),
        "{}",
        applied.stdout
    );

    // From stdin, waiting: a failing `test` is exit 3, with the mutation's error.
    let failing = json!([{"op": "test", "path": "/nodes/r1/kind", "value": "switch"}]).to_string();
    let failed = run(
        &fleet,
        &["mutation", "enqueue", &topology, "--wait", "--json"],
        Some(&failing),
    )
    .await;
    assert_eq!(failed.code, Some(3), "{}", failed.stderr);
    let failed_id = failed.json()["id"].as_str().unwrap().to_owned();
    let (_, stored) = fleet.get(&format!("/mutations/{failed_id}")).await;
    assert_eq!(stored["status"], "failed");
    let error = stored["error"].as_str().unwrap();
    assert!(failed.stderr.contains(error), "{}", failed.stderr);

    // `mutation show`: --wait exits as the outcome says; without it, showing is success.
    let shown = run(&fleet, &["mutation", "show", &failed_id, "--wait"], None).await;
    assert_eq!(shown.code, Some(3), "{}", shown.stderr);
    let shown = run(&fleet, &["mutation", "show", &failed_id], None).await;
    assert_eq!(shown.code, Some(0), "{}", shown.stderr);
    assert!(shown.stdout.contains(error), "{}", shown.stdout);
    let first = fleet
        .get(&format!("/topologies/{topology}/mutations"))
        .await
        .1["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let shown = run(
        &fleet,
        &["mutation", "show", &first, "--wait", "--json"],
        None,
    )
    .await;
    assert_eq!(shown.code, Some(0), "{}", shown.stderr);
    assert_eq!(shown.json()["status"], "applied");
    assert_eq!(shown.json()["applied_version"], 1);

    // The same idempotency key twice: one mutation.
    let key_args = [
        "mutation",
        "enqueue",
        &topology,
        "--idempotency-key",
        "add-r2",
        "--json",
    ];
    let add = json!([{"op": "add", "path": "/nodes/r2", "value": {}}]).to_string();
    let once = run(&fleet, &key_args, Some(&add)).await;
    let again = run(&fleet, &key_args, Some(&add)).await;
    assert_eq!(
        (once.code, again.code),
        (Some(0), Some(0)),
        "{}",
        again.stderr
    );
    assert_eq!(once.json()["id"], again.json()["id"]);

    // `failed` lists the failed mutation, and only failed ones.
    let listed = run(&fleet, &["failed"], None).await;
    assert_eq!(listed.code, Some(0), "{}", listed.stderr);
    assert!(
        listed.stdout.contains(&failed_id) && listed.stdout.contains(error),
        "{}",
        listed.stdout
    );
    assert!(!listed.stdout.contains(&first), "{}", listed.stdout);
    let listed = run(&fleet, &["failed", "--json"], None).await;
    let items = listed.json()["mutations"]["items"].clone();
    assert_eq!(items.as_array().unwrap().len(), 1, "{items}");
    assert_eq!(items[0]["id"], failed_id.as_str());
    assert_eq!(listed.json()["migration_runs"], json!([]));
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn failed_mutations_of_every_topology_are_listed_newest_first(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let failing = json!([{"op": "remove", "path": "/missing"}]);
    let mut failed = Vec::new();
    for name in ["a", "b", "c"] {
        let topology = fleet.create_topology(name, json!({})).await;
        failed.push(fleet.enqueue(topology, failing.clone()).await);
        fleet.enqueue(topology, harness::add("ok", json!(1))).await;
    }
    fleet.settle(Duration::from_secs(20)).await;

    let (status, page) = fleet.get("/mutations?status=failed&limit=2").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let ids = |page: &Value| -> Vec<Uuid> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                assert_eq!(m["status"], "failed", "{m}");
                m["id"].as_str().unwrap().parse().unwrap()
            })
            .collect()
    };
    assert_eq!(ids(&page), vec![failed[2], failed[1]]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = fleet
        .get(&format!("/mutations?status=failed&limit=2&cursor={cursor}"))
        .await;
    assert_eq!(ids(&rest), vec![failed[0]]);
    assert!(rest["next_cursor"].is_null(), "{rest}");

    let (_, all) = fleet.get("/mutations?limit=500").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 6, "every status");
    let (status, body) = fleet.get("/mutations?status=lost").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = fleet.get("/mutations?cursor=7").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn errors_name_the_status_and_the_message(pool: PgPool) {
    // No mutator: mutations stay pending.
    let fleet = TestFleet::api_only(&pool).await;
    let topology = fleet.create_topology("t", json!({})).await.to_string();
    let unknown = Uuid::now_v7().to_string();

    let missing = run(&fleet, &["topology", "show", &unknown], None).await;
    assert_eq!(missing.code, Some(1));
    assert!(
        missing.stderr.contains("404")
            && missing
                .stderr
                .contains(&format!("topology {unknown} does not exist")),
        "{}",
        missing.stderr
    );
    let invalid = run(&fleet, &["topology", "create", "--name", "  "], None).await;
    assert_eq!(invalid.code, Some(1));
    assert!(
        invalid.stderr.contains("422") && invalid.stderr.contains("name must be"),
        "{}",
        invalid.stderr
    );
    let forged = switchyard(&fleet.base, "not-a-token")
        .args(["topology", "show", &topology])
        .output()
        .await
        .unwrap();
    assert_eq!(forged.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&forged.stderr).contains("401"));

    // Nothing listening: the URL it tried.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = format!("http://127.0.0.1:{port}");
    let unreachable = run_at(&fleet, &nowhere, &["topology", "show", &topology], None).await;
    assert_eq!(unreachable.code, Some(1));
    assert!(
        unreachable
            .stderr
            .contains(&format!("{nowhere}/api/v1/topologies/{topology}")),
        "{}",
        unreachable.stderr
    );

    // Input that is not an array of operations, or not there: usage, exit 2.
    let object = run(&fleet, &["mutation", "enqueue", &topology], Some("{}")).await;
    assert_eq!(object.code, Some(2), "{}", object.stderr);
    assert!(object.stderr.contains("--ops"), "{}", object.stderr);
    let absent = run(
        &fleet,
        &[
            "mutation",
            "enqueue",
            &topology,
            "--ops",
            "/nonexistent/ops.json",
        ],
        None,
    )
    .await;
    assert_eq!(absent.code, Some(2), "{}", absent.stderr);

    // Waiting runs out while the mutation is pending: exit 4.
    let add = json!([{"op": "add", "path": "/a", "value": 1}]).to_string();
    let waited = run(
        &fleet,
        &[
            "mutation",
            "enqueue",
            &topology,
            "--wait",
            "--timeout",
            "1s",
        ],
        Some(&add),
    )
    .await;
    assert_eq!(waited.code, Some(4), "{}", waited.stderr);
    assert!(waited.stderr.contains("still pending"), "{}", waited.stderr);

    // A stream that cannot be opened (a 4xx) is not retried.
    let tail = run(&fleet, &["tail", &format!("topology/{unknown}")], None).await;
    assert_eq!(tail.code, Some(1));
    assert!(tail.stderr.contains("404"), "{}", tail.stderr);
    fleet.stop().await;
}

/// A local port that speaks no TLS: it reads what each connection sends (a request,
/// or a TLS hello), answers with `reply` as plain bytes and hangs up. Counts the
/// connections it took.
async fn plain_server(reply: &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let taken = Arc::new(AtomicUsize::new(0));
    let count = taken.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let mut head = vec![0; 16 * 1024];
            let _ = socket.read(&mut head).await;
            let _ = socket.write_all(reply).await;
        }
    });
    (addr, taken)
}

/// Runs `switchyard args` against `url`, where no fleet is, to its end.
async fn run_against(url: &str, args: &[&str]) -> Ran {
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        switchyard(url, "a-token").args(args).output(),
    )
    .await
    .unwrap_or_else(|_| panic!("switchyard {args:?} did not finish within 60s"))
    .unwrap();
    Ran {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

#[tokio::test]
async fn https_is_spoken_and_a_failed_handshake_names_the_url() {
    let id = Uuid::now_v7().to_string();
    let show = ["topology", "show", id.as_str()];
    // A port that hangs up at once, and one that speaks plain HTTP: TLS fails on both,
    // and the error names the URL it tried (exit 1), as when nothing answers.
    let plain_http = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    for (reply, server) in [
        (&b""[..], "hangs up"),
        (&plain_http[..], "speaks plain HTTP"),
    ] {
        let (addr, taken) = plain_server(reply).await;
        let url = format!("https://{addr}");
        let ran = run_against(&url, &show).await;
        assert_eq!(ran.code, Some(1), "{server}: {}", ran.stderr);
        let tried = format!("cannot reach the API at {url}/api/v1/topologies/{id}: ");
        assert!(ran.stderr.contains(&tried), "{server}: {}", ran.stderr);
        assert!(
            ran.stderr.contains("tls handshake eof")
                || ran.stderr.contains("the TLS handshake failed"),
            "{server}: not a TLS failure: {}",
            ran.stderr
        );
        assert!(
            taken.load(Ordering::SeqCst) >= 1,
            "{server}: never connected"
        );
    }
    let (addr, _) = plain_server(plain_http).await;
    let ran = run_against(&format!("https://{addr}"), &show).await;
    assert!(
        ran.stderr.contains("the server may speak plain HTTP"),
        "{}",
        ran.stderr
    );

    // Credentials in the URL are never shown.
    let ran = run_against(&format!("https://someone:hunter2@{addr}"), &show).await;
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr.contains(&format!("https://{addr}/api/v1"))
            && !ran.stderr.contains("hunter2")
            && !ran.stderr.contains("someone"),
        "{}",
        ran.stderr
    );
    // Nor in a refused URL, whose error names the setting (usage, exit 2).
    let ran = run_against(&format!("ftp://someone:hunter2@{addr}"), &show).await;
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("SWITCHYARD_URL")
            && ran.stderr.contains(&format!("ftp://{addr}"))
            && !ran.stderr.contains("hunter2"),
        "{}",
        ran.stderr
    );
}

/// A certificate authority, and a certificate it signed for 127.0.0.1, made in `dir`
/// with the `openssl` command: the CA's PEM file, and the server's chain and key.
fn certificates(
    dir: &Path,
) -> (
    PathBuf,
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
) {
    let openssl = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(Stdio::null())
            .status()
            .expect("running openssl");
        assert!(status.success(), "openssl {args:?}");
    };
    let new_key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let ca = [
        "req",
        "-x509",
        "-days",
        "1",
        "-subj",
        "/CN=switchyard test CA",
    ];
    openssl(&[&ca[..], &new_key, &["-keyout", "ca.key", "-out", "ca.pem"]].concat());
    let request = ["req", "-subj", "/CN=127.0.0.1"];
    openssl(
        &[
            &request[..],
            &new_key,
            &["-keyout", "server.key", "-out", "server.csr"],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    let chain = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    (dir.join("ca.pem"), chain, key)
}

/// A TLS front for the API at `upstream` (`http://…`), as a load balancer would be:
/// its `https://` URL.
async fn tls_front(
    upstream: &str,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> String {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let upstream: SocketAddr = upstream.trim_start_matches("http://").parse().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut client) = acceptor.accept(client).await else {
                    return;
                };
                let Ok(mut server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    format!("https://{addr}")
}

#[sqlx::test(migrations = "../migrations")]
async fn https_reaches_the_api_when_its_certificate_is_trusted(pool: PgPool) {
    let fleet = TestFleet::api_only(&pool).await;
    let topology = fleet
        .create_topology("over-tls", json!({}))
        .await
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let (ca, chain, key) = certificates(dir.path());
    let url = tls_front(&fleet.base, chain, key).await;
    let show = |trust: Option<&Path>| {
        let mut command = switchyard(&url, &token(&fleet.config, Role::Viewer));
        command
            .args(["topology", "show", &topology])
            .env_remove("SSL_CERT_DIR");
        match trust {
            Some(file) => command.env("SSL_CERT_FILE", file),
            None => command.env_remove("SSL_CERT_FILE"),
        };
        command.output()
    };

    // The platform verifier reads the trusted roots from SSL_CERT_FILE on Linux.
    let trusted = show(Some(&ca)).await.unwrap();
    let stderr = String::from_utf8_lossy(&trusted.stderr);
    assert_eq!(trusted.status.code(), Some(0), "{stderr}");
    let stdout = String::from_utf8_lossy(&trusted.stdout);
    assert!(
        stdout.contains("over-tls") && stdout.contains(&topology),
        "{stdout}"
    );

    // The system's own roots do not know the test CA: the certificate is refused.
    let untrusted = show(None).await.unwrap();
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert_eq!(untrusted.status.code(), Some(1), "{stderr}");
    let refused = format!(
        "cannot reach the API at {url}/api/v1/topologies/{topology}: \
         the TLS handshake failed: invalid peer certificate: UnknownIssuer"
    );
    assert!(stderr.contains(&refused), "{stderr}");
    fleet.stop().await;
}

#[tokio::test]
async fn tail_backs_off_from_a_stream_that_closes_as_it_opens() {
    // 200 with an event stream, then nothing: each connection ends as it opens.
    let (addr, taken) = plain_server(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n",
    )
    .await;
    let mut tail = switchyard(&format!("http://{addr}"), "a-token")
        .args(["tail", &format!("topology/{}", Uuid::now_v7())])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    tail.kill().await.unwrap();
    let mut stderr = String::new();
    tail.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    // Pauses of 200 ms, 400 ms, 800 ms, … (with up to as much again of jitter) allow
    // at most 5 connections in 3 s; without them there are hundreds.
    let connections = taken.load(Ordering::SeqCst);
    assert!(
        (2..=5).contains(&connections),
        "{connections} connections: {stderr}"
    );
    assert!(
        stderr.contains(
            "the server closed the stream right after it opened; resuming after event the start in "
        ),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_token_must_outlive_its_minting() {
    let mint = |ttl: &str| {
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["token", "--role", "viewer", "--ttl", ttl])
            .env(
                "SWITCHYARD_AUTH__SECRET",
                "a-secret-of-at-least-thirty-two-characters",
            )
            .env_remove("SWITCHYARD_CONFIG")
            .output()
    };
    for ttl in ["0s", "0ms", "500ms"] {
        let refused = mint(ttl).await.unwrap();
        assert_eq!(refused.status.code(), Some(2), "{ttl}");
        assert!(refused.stdout.is_empty(), "{ttl}: no token printed");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("--ttl"), "{ttl}: {stderr}");
    }
    let minted = mint("1s").await.unwrap();
    assert_eq!(
        minted.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&minted.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&minted.stdout).matches('.').count(),
        2,
        "a JWT"
    );
}

/// A TCP proxy in front of the API that the test can cut, dropping the connections
/// through it, and that records the head of every request.
struct Proxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
}

#[derive(Default)]
struct ProxyState {
    /// New connections are closed at once, as if nothing were there.
    refuse: AtomicBool,
    /// Cancelled to drop every open connection.
    cut: Mutex<CancellationToken>,
    requests: Mutex<Vec<String>>,
}

impl Proxy {
    async fn start(upstream: &str) -> Self {
        let upstream: SocketAddr = upstream.trim_start_matches("http://").parse().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ProxyState::default());
        tokio::spawn(accept(listener, upstream, state.clone()));
        Self { addr, state }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drops every open connection and refuses new ones until [`Proxy::restore`].
    fn cut(&self) {
        self.state.refuse.store(true, Ordering::SeqCst);
        let mut cut = self.state.cut.lock().unwrap();
        cut.cancel();
        *cut = CancellationToken::new();
    }

    fn restore(&self) {
        self.state.refuse.store(false, Ordering::SeqCst);
    }

    fn requests(&self) -> Vec<String> {
        self.state.requests.lock().unwrap().clone()
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, state: Arc<ProxyState>) {
    while let Ok((mut client, _)) = listener.accept().await {
        if state.refuse.load(Ordering::SeqCst) {
            continue; // dropped: closed at once
        }
        let cut = state.cut.lock().unwrap().clone();
        let state = state.clone();
        tokio::spawn(async move {
            let mut head = vec![0; 16 * 1024];
            let n = client.read(&mut head).await.unwrap_or(0);
            let text = String::from_utf8_lossy(&head[..n]).into_owned();
            state.requests.lock().unwrap().push(text);
            let Ok(mut server) = TcpStream::connect(upstream).await else {
                return;
            };
            if server.write_all(&head[..n]).await.is_err() {
                return;
            }
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = cut.cancelled() => {}
            }
        });
    }
}

/// The next line `tail --json` prints, as JSON.
async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("a line within 30s")
        .unwrap()
        .expect("tail is still running");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// Lines until the `status` event of the batch that applied seq `seq`, the last
/// event of that mutation (so the tail has printed nothing past it).
async fn lines_until_idle_after(lines: &mut Lines<BufReader<ChildStdout>>, seq: i64) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let line = next_line(lines).await;
        let done = line["event"] == "status" && line["data"]["data"]["last_seq"] == seq;
        seen.push(line);
        if done {
            return seen;
        }
    }
}

fn ids(lines: &[Value]) -> Vec<u64> {
    lines
        .iter()
        .map(|line| {
            let id = line["id"]
                .as_str()
                .unwrap_or_else(|| panic!("no id: {line}"));
            id.parse().unwrap()
        })
        .collect()
}

#[sqlx::test(migrations = "../migrations")]
async fn tail_resumes_after_a_dropped_connection_without_repeats(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let topology = fleet.create_topology("tailed", json!({})).await;
    let proxy = Proxy::start(&fleet.base).await;
    let mut tail = switchyard(&proxy.url(), &token(&fleet.config, Role::Viewer))
        .args(["tail", &format!("topology/{topology}"), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(tail.stdout.take().unwrap()).lines();

    let snapshot = next_line(&mut lines).await;
    assert_eq!(snapshot["event"], "snapshot");
    assert_eq!(snapshot["data"]["topology"]["id"], topology.to_string());
    let first = fleet.enqueue(topology, harness::add("a", json!(1))).await;
    let mut seen = vec![snapshot];
    seen.extend(lines_until_idle_after(&mut lines, 1).await);
    let applied_first = seen.iter().any(|l| {
        l["event"] == "mutation.applied" && l["data"]["data"]["mutation_id"] == first.to_string()
    });
    assert!(applied_first, "{seen:?}");
    let last_before_cut = ids(&seen).last().copied().unwrap();

    // The connection drops, and nothing answers for a while; meanwhile work goes on.
    proxy.cut();
    let second = fleet.enqueue(topology, harness::add("b", json!(2))).await;
    fleet.settle(Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.restore();
    let resumed = lines_until_idle_after(&mut lines, 2).await;
    seen.extend(resumed.iter().cloned());

    // Every event once, in order, with no second snapshot; the second mutation's events
    // came after the resume.
    let all = ids(&seen);
    assert!(
        all.windows(2).all(|w| w[0] < w[1]),
        "repeated or out of order: {all:?}"
    );
    let snapshots = seen.iter().filter(|l| l["event"] == "snapshot").count();
    assert_eq!(snapshots, 1, "{seen:?}");
    for kind in ["mutation.enqueued", "mutation.applied"] {
        let found = resumed
            .iter()
            .any(|l| l["event"] == kind && l["data"]["data"]["mutation_id"] == second.to_string());
        assert!(found, "no {kind} of the second mutation: {resumed:?}");
    }
    let resume = format!("last-event-id: {last_before_cut}");
    let requests = proxy.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.to_ascii_lowercase().contains(&resume)),
        "no request resumed with {resume}: {requests:?}"
    );
    tail.kill().await.unwrap();
    let mut stderr = String::new();
    tail.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(
        stderr.contains(&format!("resuming after event {last_before_cut}")),
        "{stderr}"
    );
    assert!(stderr.contains("retrying in"), "{stderr}");

    // Starting after an id: exactly the events after it, as the first tail saw them.
    let after = all[1];
    let mut again = switchyard(&fleet.base, &token(&fleet.config, Role::Viewer))
        .args(["tail", &format!("topology/{topology}"), "--json"])
        .args(["--last-event-id", &after.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(again.stdout.take().unwrap()).lines();
    let mut replayed = Vec::new();
    for _ in 2..seen.len() {
        replayed.push(next_line(&mut lines).await);
    }
    assert_eq!(ids(&replayed), all[2..].to_vec());
    assert_eq!(replayed, seen[2..].to_vec());
    again.kill().await.unwrap();
    fleet.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn graph_migrate_follows_the_run_to_its_end(pool: PgPool) {
    let fleet = TestFleet::up(&pool).await;
    let (status, body) = fleet
        .post(
            "/plugins",
            json!({"name": "net", "versions": [{"version": 1, "steps": []}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = fleet
        .post("/graphs", json!({"slug": "dc", "plugin": "net"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for chunk in 0..3 {
        let nodes: Vec<Value> = (0..1000)
            .map(|i| json!({"id": format!("n{chunk}-{i:04}"), "data": {"colour": "red", "weight": 1}}))
            .collect();
        let (status, body) = fleet
            .post("/graphs/dc/nodes", json!({"nodes": nodes}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let version = |n: i32, steps: Value| json!({"version": n, "steps": steps});
    let rename = json!([{"op": "rename", "from": "colour", "to": "color"}]);
    let (status, body) = fleet
        .post("/plugins/net/versions", version(2, rename))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let migrated = run(&fleet, &["graph", "migrate", "dc", "--json"], None).await;
    assert_eq!(migrated.code, Some(0), "{}", migrated.stderr);
    let events: Vec<Value> = migrated
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    ids(&events);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"migration.requested"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"migration.succeeded"), "{kinds:?}");
    assert!(kinds.contains(&"migration.progress"), "{kinds:?}");
    let run_id = &events[0]["data"]["data"]["run_id"];
    assert!(
        events
            .iter()
            .all(|e| &e["data"]["data"]["run_id"] == run_id)
    );
    let done = &events.last().unwrap()["data"]["data"];
    assert_eq!(
        (done["processed"].as_i64(), done["total"].as_i64()),
        (Some(3000), Some(3000))
    );
    let (_, graph) = fleet.get("/graphs/dc").await;
    assert_eq!(
        (graph["schema_version"].as_i64(), graph["status"].as_str()),
        (Some(2), Some("ready"))
    );

    // A run that fails: exit 3 with the run's error, and `failed` lists it.
    let (status, body) = fleet
        .post(
            "/graphs/dc/nodes",
            json!({"nodes": [{"id": "light", "data": {}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let require = json!([{"op": "require", "property": "weight"}]);
    let (status, body) = fleet
        .post("/plugins/net/versions", version(3, require))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let failed = run(&fleet, &["graph", "migrate", "dc"], None).await;
    assert_eq!(failed.code, Some(3), "{}", failed.stderr);
    assert!(failed.stdout.contains("requested"), "{}", failed.stdout);
    let (_, history) = fleet.get("/graphs/dc/migrations").await;
    let runs = history.get("items").unwrap_or(&history);
    let error = runs[0]["error"].as_str().unwrap();
    assert!(error.contains("weight"), "{error}");
    assert!(failed.stderr.contains(error), "{}", failed.stderr);

    let listed = run(&fleet, &["failed", "--json"], None).await;
    assert_eq!(listed.code, Some(0), "{}", listed.stderr);
    let runs = &listed.json()["migration_runs"];
    assert_eq!(runs[0]["graph"]["slug"], "dc", "{runs}");
    assert_eq!(runs[0]["run"]["status"], "failed", "{runs}");
    assert_eq!(runs[0]["run"]["error"], error, "{runs}");
    let shown = run(&fleet, &["graph", "show", "dc"], None).await;
    assert!(
        shown.stdout.contains("migration_failed"),
        "{}",
        shown.stdout
    );
    fleet.stop().await;
}
