//! The deployment files, checked here since no container engine runs them:
//! `compose/compose.yaml` against the Compose Specification's JSON schema; each
//! switchyard service's command against the binary (`<command> --help`) and its
//! environment against the binary (`switchyard config check`) and the README's
//! configuration table; the NATS nodes' flags against the pinned nats-server; the
//! Dockerfile with hadolint.
//!
//! `COMPOSE_SCHEMA` (the schema file) and `HADOLINT_BIN` come from
//! `scripts/services.sh` (`install_compose_schema`, `install_hadolint`), which
//! `scripts/test` calls; `NATS_SERVER_BIN` from `install_nats`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const INSTALL_HINT: &str = "run scripts/test, or `. scripts/services.sh && install_compose_schema && install_hadolint && install_nats`";

/// What a user exports before `docker compose up`: every variable the file requires
/// (`${VAR:?…}`) or passes through from the shell (a key without a value).
const USER_ENV: &[(&str, &str)] = &[
    (
        "SWITCHYARD_AUTH__SECRET",
        "placeholder-secret-of-32-characters-or-more",
    ),
    (
        "SWITCHYARD_FORGE__WEBHOOK_SECRET",
        "placeholder-webhook-secret",
    ),
    ("SWITCHYARD_FORGE__URL", "https://gitea.example.com"),
    ("SWITCHYARD_FORGE__META_REPO", "acme/rfcs"),
    ("SWITCHYARD_FORGE__TOKEN", "placeholder-gitea-token"),
    ("SWITCHYARD_FORGE__BOT_USER", "switchyard-bot"),
];

#[test]
fn the_compose_file_is_valid_and_speaks_the_binarys_language() {
    let problems = compose_problems(
        &repo_file("compose/compose.yaml"),
        &repo_file("README.md"),
        USER_ENV,
    );
    assert!(
        problems.is_empty(),
        "compose/compose.yaml:\n{}",
        problems.join("\n")
    );
}

#[test]
fn a_broken_compose_file_is_refused() {
    let compose = repo_file("compose/compose.yaml");
    let readme = repo_file("README.md");
    // (what is wrong, the text changed, what it becomes, what the refusal says)
    let cases = [
        (
            "a misspelled key",
            "SWITCHYARD_BUS__REPLICAS:",
            "SWITCHYARD_BUS__REPLICA:",
            "configuration key bus.replica (SWITCHYARD_BUS__REPLICA): unknown key",
        ),
        (
            "a value out of range",
            "SWITCHYARD_BUS__REPLICAS: \"3\"",
            "SWITCHYARD_BUS__REPLICAS: \"6\"",
            "configuration key bus.replicas (SWITCHYARD_BUS__REPLICAS): must be between 1 and 5",
        ),
        (
            "a client variable",
            "SWITCHYARD_LOG__FORMAT: json",
            "SWITCHYARD_URL: http://api:8080",
            "SWITCHYARD_URL is not a switchyard configuration variable",
        ),
        (
            "a role that does not exist",
            "\"--role\", \"mutator\"",
            "\"--role\", \"mutators\"",
            "mutator: command [\"worker\", \"--role\", \"mutators\"] is not one switchyard takes",
        ),
        (
            "a flag that does not exist",
            "command: [\"api\"]",
            "command: [\"api\", \"--replicas\", \"2\"]",
            "unexpected argument '--replicas'",
        ),
        (
            "a condition Compose does not know",
            "service_completed_successfully",
            "service_completed",
            "schema: at /services/",
        ),
        (
            "a misspelled service key",
            "    healthcheck:",
            "    heathcheck:",
            "'heathcheck'",
        ),
    ];
    for (what, from, to, refusal) in cases {
        assert!(
            compose.contains(from),
            "{what}: no `{from}` in compose.yaml"
        );
        let problems = compose_problems(&compose.replace(from, to), &readme, USER_ENV).join("\n");
        assert!(
            problems.contains(refusal),
            "{what} was not refused with `{refusal}`; the problems:\n{problems}"
        );
    }

    // A key the binary takes but the README's table does not document.
    let row = readme
        .lines()
        .find(|line| line.starts_with("| `bus.replicas` |"))
        .expect("the README documents bus.replicas");
    let undocumented = readme.replace(row, "");
    let problems = compose_problems(&compose, &undocumented, USER_ENV).join("\n");
    assert!(
        problems.contains("SWITCHYARD_BUS__REPLICAS sets bus.replicas, which the README's configuration table does not document"),
        "{problems}"
    );

    // A required variable the user did not set.
    let without_secret: Vec<_> = USER_ENV
        .iter()
        .copied()
        .filter(|(name, _)| *name != "SWITCHYARD_AUTH__SECRET")
        .collect();
    let problems = compose_problems(&compose, &readme, &without_secret).join("\n");
    assert!(
        problems.contains("SWITCHYARD_AUTH__SECRET is required: set SWITCHYARD_AUTH__SECRET"),
        "{problems}"
    );
}

/// The deployment the issue asks for: three NATS nodes clustered with JetStream, each
/// on a named volume, the stream and consumers at three replicas, two API replicas
/// checked on `/readyz`, worker roles scaled, and a one-shot migration the rest wait
/// for.
#[test]
fn the_compose_file_lays_out_the_production_topology() {
    let user_env = USER_ENV.iter().copied().collect();
    let doc = load(&repo_file("compose/compose.yaml"), &user_env).expect("compose.yaml loads");
    let services = doc["services"].as_object().expect("services");
    let named_volumes = doc["volumes"].as_object().expect("named volumes");
    let on_named_volume = |service: &Value, path: &str| {
        service["volumes"].as_array().is_some_and(|mounts| {
            mounts.iter().filter_map(Value::as_str).any(|mount| {
                mount
                    .split_once(':')
                    .is_some_and(|(volume, at)| at == path && named_volumes.contains_key(volume))
            })
        })
    };

    let nats: Vec<&String> = services
        .keys()
        .filter(|name| {
            services[*name]["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("nats:"))
        })
        .collect();
    assert_eq!(nats.len(), 3, "NATS nodes: {nats:?}");
    let help = nats_server_help();
    let all_routes: Vec<String> = nats.iter().map(|n| format!("nats://{n}:6222")).collect();
    for name in &nats {
        let args = command(&services[*name]);
        for flag in args.iter().filter(|a| a.starts_with('-')) {
            let known = help
                .split_whitespace()
                .any(|word| word.trim_end_matches(',') == flag);
            assert!(known, "{name}: nats-server has no flag {flag}");
        }
        let value = |flag: &str| {
            let at = args.iter().position(|a| a == flag);
            at.and_then(|at| args.get(at + 1)).map(String::as_str)
        };
        assert!(args.iter().any(|a| a == "-js"), "{name}: JetStream is off");
        assert_eq!(value("--server_name"), Some(name.as_str()));
        assert_eq!(value("--cluster_name"), Some("switchyard"), "{name}");
        assert_eq!(
            value("--routes"),
            Some(all_routes.join(",").as_str()),
            "{name}"
        );
        let store = value("--store_dir").expect("--store_dir");
        assert!(
            on_named_volume(&services[*name], store),
            "{name}: {store} is not on a named volume"
        );
    }
    assert!(on_named_volume(
        &services["postgres"],
        "/var/lib/postgresql/data"
    ));

    let api = &services["api"];
    let env = environment(api);
    let setting = |key: &str| env.get(key).cloned().flatten().unwrap_or_default();
    let nats_urls: Vec<String> = nats.iter().map(|n| format!("nats://{n}:4222")).collect();
    assert_eq!(setting("NATS_URL"), nats_urls.join(","));
    assert_eq!(setting("SWITCHYARD_BUS__REPLICAS"), nats.len().to_string());
    assert_eq!(setting("SWITCHYARD_HTTP__LISTEN"), "0.0.0.0:8080");
    let probe = api["healthcheck"]["test"].to_string();
    assert!(probe.contains("http://127.0.0.1:8080/readyz"), "{probe}");

    for (name, replicas) in [("api", 2), ("mutator", 3), ("notifier", 1), ("migrator", 1)] {
        assert_eq!(services[name]["deploy"]["replicas"], replicas, "{name}");
        let after = &services[name]["depends_on"]["migrate"]["condition"];
        assert_eq!(after, "service_completed_successfully", "{name}");
    }
    assert_eq!(command(&services["migrate"]), ["migrate"]);
    assert_eq!(services["migrate"]["restart"], "no");
    assert_eq!(services["forge"]["profiles"], serde_json::json!(["forge"]));
}

#[test]
fn the_dockerfile_passes_hadolint_and_runs_the_binary_unprivileged() {
    let dockerfile = repo_file("Dockerfile");
    let lint = |text: &str| {
        let mut child = Command::new(installed("HADOLINT_BIN"))
            .arg("-")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("running hadolint");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (clean, findings) = lint(&dockerfile);
    assert!(clean, "hadolint Dockerfile:\n{findings}");
    // hadolint does look: a runtime stage left as root is one of its findings.
    let (clean, findings) = lint(&dockerfile.replace("USER 10001:10001", "USER root"));
    assert!(!clean && findings.contains("DL3002"), "{findings}");

    let runtime = dockerfile.rsplit("\nFROM ").next().unwrap();
    assert!(
        runtime.contains("\nUSER 10001:10001\n"),
        "the runtime stage runs as root"
    );
    assert!(runtime.contains("\nENTRYPOINT [\"switchyard\"]\n"));
    assert!(
        runtime.contains("\nEXPOSE 8080\n"),
        "EXPOSE the API's port, as compose sets it"
    );
    assert!(dockerfile.contains("cargo build --release --locked -p switchyard"));
    // The builder's toolchain is one the workspace builds with.
    let pinned = dockerfile
        .lines()
        .find_map(|line| line.strip_prefix("ARG RUST_VERSION="))
        .expect("ARG RUST_VERSION=");
    let version = |v: &str| -> Vec<u32> { v.split('.').map(|n| n.parse().unwrap()).collect() };
    assert!(
        version(pinned) >= version(env!("CARGO_PKG_RUST_VERSION"))[..2].to_vec(),
        "rust {pinned} is older than the workspace's rust-version"
    );
}

#[test]
fn interpolation_reads_as_compose_does() {
    let env = BTreeMap::from([("SET", "v"), ("EMPTY", "")]);
    let cases = [
        ("a$$b ${SET} $SET", Ok("a$b v v")),
        ("${EMPTY:-d} ${EMPTY-d} ${UNSET-d}", Ok("d  d")),
        ("${SET:?gone} ${SET:+alt} ${UNSET:+alt}.", Ok("v alt .")),
        (
            "${EMPTY:?needed here}",
            Err("EMPTY is required: needed here"),
        ),
        ("${UNSET}", Err("UNSET is not set and has no default")),
        ("$(date)", Err("names no variable")),
    ];
    for (text, want) in cases {
        match (interpolate(text, &env), want) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{text}"),
            (Err(got), Err(want)) => assert!(got.contains(want), "{text}: {got}"),
            (got, _) => panic!("{text}: {got:?}"),
        }
    }
}

/// Every problem with a compose file read with `user_env` as the user's environment,
/// checked against `readme`'s configuration table: none when it is right.
fn compose_problems(compose: &str, readme: &str, user_env: &[(&str, &str)]) -> Vec<String> {
    let user_env: BTreeMap<&str, &str> = user_env.iter().copied().collect();
    let doc = match load(compose, &user_env) {
        Ok(doc) => doc,
        Err(problems) => return problems,
    };
    let mut problems = schema_problems(&doc);
    let documented = documented_keys(readme);
    let services = doc["services"].as_object().cloned().unwrap_or_default();
    let built: Vec<_> = services
        .iter()
        .filter(|(_, s)| s.get("build").is_some())
        .collect();
    if built.is_empty() {
        problems.push("no service builds the switchyard image".to_owned());
    }
    for (name, service) in built {
        let args = command(service);
        let mut help: Vec<&str> = args.iter().map(String::as_str).collect();
        help.push("--help");
        if let Err(refusal) = switchyard(&help, &BTreeMap::new()) {
            problems.push(format!(
                "{name}: command {args:?} is not one switchyard takes: {refusal}"
            ));
        }
        problems.extend(environment_problems(name, service, &user_env, &documented));
    }
    problems
}

/// A switchyard service's environment: each variable must set a key the README
/// documents, and `switchyard config check` must accept them all together.
fn environment_problems(
    name: &str,
    service: &Value,
    user_env: &BTreeMap<&str, &str>,
    documented: &BTreeSet<String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut set = BTreeMap::new();
    for (variable, value) in environment(service) {
        match config_key(&variable) {
            None => problems.push(format!(
                "{name}: {variable} is not a switchyard configuration variable"
            )),
            Some(key) if !documented.contains(&key) => problems.push(format!(
                "{name}: {variable} sets {key}, which the README's configuration table does not document"
            )),
            Some(_) => {}
        }
        // A key without a value comes from the user's shell, as Compose passes it on.
        let value = value.or_else(|| user_env.get(variable.as_str()).map(|v| v.to_string()));
        if let Some(value) = value {
            set.insert(variable, value);
        }
    }
    if let Err(refusal) = switchyard(&["config", "check"], &set) {
        problems.push(format!(
            "{name}: switchyard config check refuses its environment: {refusal}"
        ));
    }
    problems
}

/// The compose file as Compose reads it: YAML with its anchors and merge keys
/// resolved, then every string interpolated from `user_env`.
fn load(compose: &str, user_env: &BTreeMap<&str, &str>) -> Result<Value, Vec<String>> {
    let mut doc: Value = serde_saphyr::from_str(compose).map_err(|e| vec![format!("YAML: {e}")])?;
    let mut problems = Vec::new();
    interpolate_all(&mut doc, user_env, &mut problems);
    if problems.is_empty() {
        Ok(doc)
    } else {
        Err(problems)
    }
}

fn interpolate_all(value: &mut Value, env: &BTreeMap<&str, &str>, problems: &mut Vec<String>) {
    match value {
        Value::String(text) => match interpolate(text, env) {
            Ok(done) => *text = done,
            Err(problem) => problems.push(problem),
        },
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| interpolate_all(v, env, problems)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|v| interpolate_all(v, env, problems)),
        _ => {}
    }
}

/// Compose's interpolation of one string: `$$` is `$`; `$VAR`, `${VAR}`;
/// `${VAR:-default}` (unset or empty) and `${VAR-default}` (unset);
/// `${VAR:?message}` and `${VAR?message}` fail; `${VAR:+other}`, `${VAR+other}`.
/// An unset variable without a default is a problem too (Compose would warn and
/// put in nothing).
fn interpolate(text: &str, env: &BTreeMap<&str, &str>) -> Result<String, String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let (expression, after) = match rest.strip_prefix('{') {
            Some(braced) => {
                let end = braced
                    .find('}')
                    .ok_or_else(|| format!("{text:?}: no closing brace"))?;
                (&braced[..end], &braced[end + 1..])
            }
            None => rest.split_at(rest.find(|c| !is_name(c)).unwrap_or(rest.len())),
        };
        let name_end = expression.find(|c| !is_name(c)).unwrap_or(expression.len());
        let (name, operation) = expression.split_at(name_end);
        if name.is_empty() {
            return Err(format!("{text:?}: `${expression}` names no variable"));
        }
        let value = env.get(name).copied();
        let Some(op) = [":-", ":?", ":+", "-", "?", "+"]
            .into_iter()
            .find(|op| operation.starts_with(op))
        else {
            out.push_str(value.ok_or_else(|| format!("{name} is not set and has no default"))?);
            rest = after;
            continue;
        };
        let word = &operation[op.len()..];
        let present = if op.starts_with(':') {
            value.is_some_and(|v| !v.is_empty())
        } else {
            value.is_some()
        };
        match (op.trim_start_matches(':'), present) {
            ("-", true) | ("?", true) => out.push_str(value.unwrap_or_default()),
            ("-", false) | ("+", true) => out.push_str(word),
            ("?", false) => return Err(format!("{name} is required: {word}")),
            _ => {}
        }
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

/// What the Compose Specification's schema (`COMPOSE_SCHEMA`) says about `doc`.
fn schema_problems(doc: &Value) -> Vec<String> {
    let path = installed("COMPOSE_SCHEMA");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let validator = jsonschema::validator_for(&schema).expect("the Compose schema compiles");
    validator
        .iter_errors(doc)
        .map(|error| format!("schema: at {}: {error}", error.instance_path()))
        .collect()
}

/// The keys of the README's configuration table: its rows `| \`bus.replicas\` | …`.
fn documented_keys(readme: &str) -> BTreeSet<String> {
    let section = readme
        .split("\n## Configuration\n")
        .nth(1)
        .unwrap_or_default();
    let section = section.split("\n## ").next().unwrap_or_default();
    section
        .lines()
        .filter_map(|line| Some(line.strip_prefix("| `")?.split_once('`')?.0.to_owned()))
        .collect()
}

/// The key a variable sets: `DATABASE_URL` is `database.url`, `NATS_URL` `bus.url`,
/// `SWITCHYARD_BUS__REPLICAS` `bus.replicas`; anything else sets none.
fn config_key(variable: &str) -> Option<String> {
    match variable {
        "DATABASE_URL" => Some("database.url".to_owned()),
        "NATS_URL" => Some("bus.url".to_owned()),
        _ => variable
            .strip_prefix("SWITCHYARD_")
            .filter(|rest| rest.contains("__"))
            .map(|rest| rest.to_ascii_lowercase().replace("__", ".")),
    }
}

/// A service's command as arguments: Compose takes a list, or a string it splits.
fn command(service: &Value) -> Vec<String> {
    match &service["command"] {
        Value::String(line) => line.split_whitespace().map(str::to_owned).collect(),
        Value::Array(args) => args
            .iter()
            .map(scalar)
            .map(Option::unwrap_or_default)
            .collect(),
        _ => Vec::new(),
    }
}

/// A service's environment, a map or a list of `NAME=value`; `None` for a name without
/// a value, which Compose passes on from the shell when set there.
fn environment(service: &Value) -> BTreeMap<String, Option<String>> {
    match &service["environment"] {
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), scalar(v))).collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|item| match item.split_once('=') {
                Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                None => (item.to_owned(), None),
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// A YAML scalar as the string a container sees (`3`, `true`); `None` for null.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

/// Runs the switchyard binary with `args` and only the variables `env`, from an empty
/// directory (so no switchyard.toml is read): its stdout, or how it failed.
fn switchyard(args: &[&str], env: &BTreeMap<String, String>) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env_clear()
        .envs(env)
        .current_dir(dir.path())
        .output()
        .expect("running switchyard");
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(format!(
        "{}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// `nats-server --help` of the pinned server (`NATS_SERVER_BIN`).
fn nats_server_help() -> String {
    let out = Command::new(installed("NATS_SERVER_BIN"))
        .arg("--help")
        .output()
        .expect("running nats-server --help");
    // It prints its usage on stdout or stderr, depending on the version.
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A tool or file `scripts/services.sh` installs, named by the variable it exports.
fn installed(variable: &str) -> PathBuf {
    let path = std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{variable} is not set: {INSTALL_HINT}"));
    assert!(
        path.exists(),
        "{variable}={} does not exist: {INSTALL_HINT}",
        path.display()
    );
    path
}

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}
