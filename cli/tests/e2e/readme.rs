//! The README, executed: its shell blocks run in order, in one bash session, against
//! a fresh `switchyard up`, and every documented answer is checked.
//!
//! ## The convention (also in the README's Development section)
//! - Every ` ```sh ` block runs, top to bottom, unless the line before its fence is
//!   `<!-- readme-test: skip … -->` (the Quick start itself, recipes for other
//!   machines, streams that never end).
//! - A comment `# → 201` or `# → 201 {"status": "pending"}`, at the end of a
//!   command's last line or on a line of its own right after the command, is that
//!   command's documented answer: the HTTP status of its last request, and a JSON
//!   value the answer's body must contain (objects: these members, recursively;
//!   arrays: these elements, in order, and no more; anything else: equal). Words
//!   after a colon are for the reader: `# → 409: already archived`.
//! - `# → eventually 200 {…}` on a one-line command re-runs it (for up to 20 s) until
//!   the answer matches: for work a worker finishes after the API has answered.
//!
//! Two substitutions are made, and nothing else: the README's `127.0.0.1:8080`
//! becomes this fleet's address, and `command curl` (inside the README's `curl`
//! function) becomes a function that also records each answer's headers and body.

use crate::harness;

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::{database_url, eventually, nats_url};
use sqlx::PgPool;
use uuid::Uuid;

/// The documented answer after a command.
enum Expectation {
    /// `# → [eventually] STATUS [JSON]`: its last request's answer.
    Answer {
        eventually: bool,
        status: u16,
        body: String,
    },
    /// `# → exit N`: the command's exit status (a CLI command that fails on purpose).
    Exit(i32),
}

/// Reads `# → [eventually] STATUS [JSON]` or `# → exit N` out of a line's comment.
fn expectation(line: &str) -> Option<(usize, Expectation)> {
    assert!(
        !line.contains("# ->"),
        "README: `{line}`: write the arrow as `# →`, or it is not checked"
    );
    let hash = line.find("# →")?;
    let mut rest = line[hash + "# →".len()..].trim();
    if let Some(code) = rest.strip_prefix("exit ") {
        let digits = code
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(code.len());
        let code = code[..digits]
            .parse()
            .unwrap_or_else(|_| panic!("README: `{line}`: expected `# → exit N`"));
        return Some((hash, Expectation::Exit(code)));
    }
    let eventually = rest.starts_with("eventually ");
    if eventually {
        rest = rest["eventually ".len()..].trim_start();
    }
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let status = rest[..digits]
        .parse()
        .unwrap_or_else(|_| panic!("README: `{line}`: expected `# → STATUS [JSON][: words]`"));
    // An optional JSON value, then optional words for the reader (`: read-only now`).
    let tail = rest[digits..].trim_start();
    let body = if tail.starts_with(['{', '[']) {
        let mut values = serde_json::Deserializer::from_str(tail).into_iter::<serde_json::Value>();
        values
            .next()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("README: `{line}`: the expected body is not JSON"))
            .to_string()
    } else {
        String::new()
    };
    Some((
        hash,
        Expectation::Answer {
            eventually,
            status,
            body,
        },
    ))
}

/// Single-quotes `text` for bash.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The README's runnable blocks as one bash script, with the checks inserted.
fn script(readme: &str, address: &str) -> (String, usize) {
    let mut out = String::from(RUNTIME);
    let mut blocks = 0;
    let lines: Vec<&str> = readme.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let fence = lines[i].trim_start();
        if !(fence == "```sh" || fence == "```bash") {
            i += 1;
            continue;
        }
        let skipped = lines[..i]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| l.trim_start().starts_with("<!-- readme-test: skip"));
        let first = i + 1;
        let mut block = Vec::new();
        i += 1;
        while i < lines.len() && lines[i].trim_start() != "```" {
            block.push((i + 1, lines[i]));
            i += 1;
        }
        i += 1;
        if !skipped {
            blocks += 1;
            writeln!(out, "sy_block {}", first + 1).unwrap();
            emit_block(&mut out, &block, address);
        }
    }
    out.push_str("sy_done\n");
    (out, blocks)
}

/// One block's lines (numbered as in the README), each followed by its check.
fn emit_block(out: &mut String, block: &[(usize, &str)], address: &str) {
    let lines: Vec<String> = block
        .iter()
        .map(|(_, line)| {
            line.replace("127.0.0.1:8080", address)
                .replace("command curl", "sy_curl")
        })
        .collect();
    // A command expected to fail may: from its first line (continued lines end in
    // `\`) to the check after its last.
    let mut lenient_from = std::collections::HashSet::new();
    for (j, line) in lines.iter().enumerate() {
        if let Some((_, Expectation::Exit(_))) = expectation(line) {
            let mut k = j;
            while k > 0 && lines[k - 1].trim_end().ends_with('\\') {
                k -= 1;
            }
            lenient_from.insert(k);
        }
    }
    for (j, line) in lines.iter().enumerate() {
        let number = block[j].0;
        if lenient_from.contains(&j) {
            out.push_str("sy_allow_failure\n");
        }
        out.push_str(line);
        out.push('\n');
        match expectation(line) {
            None => {}
            Some((_, Expectation::Exit(code))) => {
                writeln!(out, "sy_expect_exit {number} {code} $?").unwrap();
            }
            Some((
                hash,
                Expectation::Answer {
                    eventually,
                    status,
                    body,
                },
            )) => {
                let body = quoted(&body);
                if eventually {
                    let command = line[..hash].trim();
                    assert!(
                        !command.is_empty() && !command.ends_with('\\'),
                        "README.md:{number}: `# → eventually` belongs on a one-line command"
                    );
                    let command = quoted(command);
                    writeln!(out, "sy_eventually {number} {status} {body} {command}").unwrap();
                } else {
                    writeln!(out, "sy_expect {number} {status} {body}").unwrap();
                }
            }
        }
    }
}

/// Bash functions the generated script starts with.
const RUNTIME: &str = r#"set -eEuo pipefail
# Answers and checks in one stream, in order (captures keep their own stdout).
exec 1>&2
SY_AT="README.md"
SY_TRAP='echo "FAILED: a command in the block at $SY_AT exited $?" >&2'
trap "$SY_TRAP" ERR
# `# → exit N`: the command may fail; its status is checked right after it.
sy_allow_failure() { set +e; trap - ERR; }
sy_expect_exit() {
    local line=$1 want=$2 got=$3
    set -e
    trap "$SY_TRAP" ERR
    if [ "$got" != "$want" ]; then
        echo "FAILED: README.md:$line: exit $got, documented exit $want" >&2
        exit 1
    fi
}
sy_curl() {
    : >"$SY_DIR/headers"; : >"$SY_DIR/body"
    local rc=0
    command curl -D "$SY_DIR/headers" -o "$SY_DIR/body" "$@" || rc=$?
    cat "$SY_DIR/body"
    return $rc
}
sy_block() { SY_AT="README.md:$1"; printf "\n--- block at %s\n" "$SY_AT" >&2; }
sy_check() {
    if [ ! -f "$SY_DIR/headers" ]; then
        echo "no request was made since the last check" >&2
        return 1
    fi
    python3 - "$SY_DIR/headers" "$SY_DIR/body" "$2" "$3" <<'PY'
import json, re, sys
headers, body, want_status, want = sys.argv[1:5]
statuses = re.findall(r"^HTTP/\S+ (\d{3})", open(headers).read(), re.M)
got_status = statuses[-1] if statuses else "(no answer)"
text = open(body).read()
def contains(got, want, at):
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return f"{at}: expected an object, got {json.dumps(got)[:200]}"
        for key, value in want.items():
            if key not in got:
                return f"{at}: no member {key!r}"
            problem = contains(got[key], value, f"{at}.{key}")
            if problem:
                return problem
        return None
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return f"{at}: expected {len(want)} elements, got {json.dumps(got)[:200]}"
        for n, (g, w) in enumerate(zip(got, want)):
            problem = contains(g, w, f"{at}[{n}]")
            if problem:
                return problem
        return None
    return None if got == want else f"{at}: expected {json.dumps(want)}, got {json.dumps(got)[:200]}"
problem = None
if got_status != want_status:
    problem = f"status {got_status}, documented {want_status}"
elif want:
    try:
        problem = contains(json.loads(text), json.loads(want), "body")
    except ValueError:
        problem = "the body is not JSON"
if problem:
    print(f"{problem}\n  body: {text[:600]}", file=sys.stderr)
    sys.exit(1)
PY
}
sy_expect() {
    if ! sy_check "$@"; then
        echo "FAILED: README.md:$1: the documented answer ($2 $3) was not given" >&2
        exit 1
    fi
    # Each answer is checked once: a later check must see a request of its own.
    rm -f "$SY_DIR/headers"
}
sy_eventually() {
    local line=$1 status=$2 want=$3 command=$4
    for _ in $(seq 1 100); do
        if sy_check "$line" "$status" "$want" 2>/dev/null; then
            rm -f "$SY_DIR/headers"
            return 0
        fi
        sleep 0.2
        eval "$command" >/dev/null
    done
    sy_expect "$line" "$status" "$want"
}
sy_done() { echo "--- README ran to the end" >&2; }
"#;

#[test]
fn the_runner_reads_the_convention() {
    let readme = "intro\n```sh\nA=1 # → 201 {\"a\": 1}: words\nB=2 # → 409: words\n```\n```sh\necho a \\\n  | false   # → exit 1\n```\n<!-- readme-test: skip: elsewhere -->\n```sh\nnot run\n```\n```toml\nx = 1\n```\n```sh\ncurl -s http://127.0.0.1:8080/x # → eventually 200\n```\n";
    let (script, blocks) = script(readme, "127.0.0.1:9");
    assert_eq!(blocks, 3);
    assert!(
        script
            .contains("sy_allow_failure\necho a \\\n  | false   # → exit 1\nsy_expect_exit 8 1 $?"),
        "{script}"
    );
    assert!(script.contains("sy_expect 3 201 '{\"a\":1}'"), "{script}");
    assert!(script.contains("sy_expect 4 409 ''"), "{script}");
    assert!(!script.contains("not run"));
    assert!(!script.contains("x = 1"));
    assert!(
        script.contains("sy_eventually 18 200 '' 'curl -s http://127.0.0.1:9/x'"),
        "{script}"
    );
}

#[sqlx::test(migrations = false)]
async fn the_readme_runs_top_to_bottom(pool: PgPool) {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("reading README.md");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let (script, blocks) = script(&readme, &address);
    assert!(blocks >= 10, "only {blocks} README blocks would run");

    // A checkout of its own: `up` keeps its secret in ./.switchyard, as on a laptop.
    let home = tempfile::tempdir().unwrap();
    let tag = Uuid::now_v7().simple().to_string();
    let fleet_log = home.path().join("fleet.log");
    let fleet = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("up")
        .current_dir(home.path())
        .env("DATABASE_URL", database_url(&pool))
        .env("NATS_URL", nats_url())
        .env("SWITCHYARD_HTTP__LISTEN", &address)
        .env("SWITCHYARD_BUS__STREAM", format!("SYR_{tag}"))
        .env("SWITCHYARD_BUS__SUBJECT_PREFIX", format!("r{tag}"))
        .env("SWITCHYARD_DATABASE__MAX_CONNECTIONS", "8")
        .env("SWITCHYARD_LOG__FILTER", "warn")
        .env_remove("SWITCHYARD_AUTH__SECRET")
        .stdout(Stdio::from(std::fs::File::create(&fleet_log).unwrap()))
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .append(true)
                .open(&fleet_log)
                .unwrap(),
        ))
        .spawn()
        .expect("starting switchyard up");
    // Stopped however the test ends, a panic included.
    let fleet = KillOnDrop(fleet);
    let ready = format!("http://{address}/readyz");
    eventually(Duration::from_secs(60), || async {
        matches!(reqwest::get(&ready).await, Ok(r) if r.status().is_success())
    })
    .await;

    let run = run_script(home.path(), &script);
    drop(fleet);
    if !run.status.success() {
        let fleet_log = std::fs::read_to_string(&fleet_log).unwrap_or_default();
        panic!(
            "the README did not run as printed\n--- its output (last 80 lines):\n{}\n--- the fleet's log (last 30 lines):\n{}",
            tail(&String::from_utf8_lossy(&run.stderr), 80),
            tail(&fleet_log, 30),
        );
    }
}

/// A child process killed when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `script` in bash from `dir`, with the test's `switchyard` first on PATH; a
/// command that hangs is cut off after ten minutes.
fn run_script(dir: &Path, script: &str) -> std::process::Output {
    let bin = Path::new(env!("CARGO_BIN_EXE_switchyard"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let state = dir.join("runner");
    std::fs::create_dir_all(&state).unwrap();
    let script_path = state.join("readme.sh");
    std::fs::write(&script_path, script).unwrap();
    Command::new("timeout")
        .arg("600")
        .arg("bash")
        .arg(&script_path)
        .current_dir(dir)
        .env("PATH", path)
        .env("SY_DIR", &state)
        .env_remove("SWITCHYARD_AUTH__SECRET")
        .env_remove("SWITCHYARD_URL")
        .env_remove("SWITCHYARD_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("running bash")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
