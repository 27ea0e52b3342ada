# Sourced by scripts/cluster, scripts/chaos and scripts/bench (after services.sh): the
# deployment of compose/compose.yaml on one machine, as local processes on loopback
# ports. A 3-node nats-server cluster (the pinned server) with JetStream, a Postgres
# instance of its own (not the machine's shared one on 5432), `switchyard migrate`, 2
# API processes and worker processes per role, all configured through the environment
# with the keys compose uses.
#
# Everything lives in .switchyard/cluster/ (CLUSTER_DIR):
#   cluster.env      the settings `up` chose (worker counts, binary, ports), read again
#                    by every later command
#   auth.secret      the API processes' signing secret (0600)
#   nats/nK.conf     each node's configuration; nats/nK/ its JetStream store
#   pg/data          the Postgres data directory; pg/postgres.log its log
#   logs/NAME.log    each process's output, appended across restarts
#   pids/NAME.pid    each process's id, written by the process itself before it execs
#
# Process names: n1 n2 n3 (NATS), pg (Postgres), api1 api2 …, mutator1 … mutatorN,
# notifier1 …, migrator1 …. A process is started, killed or stopped by name, alone:
# the others keep running. Only processes whose pid file names them are signalled, and
# only when the pid still runs the program it was started as.

CLUSTER_DIR="$STATE_DIR/cluster"
SY_CLUSTER_NATS_PORT="${SY_CLUSTER_NATS_PORT:-14301}"   # client ports: n1 14301, n2 14302, n3 14303
SY_CLUSTER_PG_PORT="${SY_CLUSTER_PG_PORT:-15432}"
SY_CLUSTER_API_PORT="${SY_CLUSTER_API_PORT:-18201}"     # api1 18201, api2 18202, …

cluster_say() { echo "cluster: $*" >&2; }

# Client, route and monitoring ports of NATS node $1 (1..3).
nats_client_port() { echo $((SY_CLUSTER_NATS_PORT + $1 - 1)); }
nats_route_port() { echo $((SY_CLUSTER_NATS_PORT + 10 + $1 - 1)); }
nats_monitor_port() { echo $((SY_CLUSTER_NATS_PORT + 20 + $1 - 1)); }
api_port() { echo $((SY_CLUSTER_API_PORT + $1 - 1)); }

# What every switchyard process of the cluster is given (compose sets the same keys).
cluster_database_url() { echo "postgres://postgres@127.0.0.1:$SY_CLUSTER_PG_PORT/switchyard"; }
cluster_nats_url() {
    echo "nats://127.0.0.1:$(nats_client_port 1),nats://127.0.0.1:$(nats_client_port 2),nats://127.0.0.1:$(nats_client_port 3)"
}

# Reads the settings `up` saved (worker counts, binary); defaults before the first `up`.
cluster_load() {
    CLUSTER_APIS=2 CLUSTER_MUTATORS=3 CLUSTER_NOTIFIERS=1 CLUSTER_MIGRATORS=1
    CLUSTER_BIN="$REPO_ROOT/target/release/switchyard"
    # shellcheck disable=SC1091
    [ -f "$CLUSTER_DIR/cluster.env" ] && . "$CLUSTER_DIR/cluster.env"
    return 0
}

cluster_save() {
    mkdir -p "$CLUSTER_DIR"
    cat >"$CLUSTER_DIR/cluster.env" <<EOF
CLUSTER_APIS=$CLUSTER_APIS
CLUSTER_MUTATORS=$CLUSTER_MUTATORS
CLUSTER_NOTIFIERS=$CLUSTER_NOTIFIERS
CLUSTER_MIGRATORS=$CLUSTER_MIGRATORS
CLUSTER_BIN=$CLUSTER_BIN
EOF
}

# Every switchyard process name the saved settings call for, APIs first.
cluster_switchyard_names() {
    local i
    for i in $(seq 1 "$CLUSTER_APIS"); do echo "api$i"; done
    for i in $(seq 1 "$CLUSTER_MUTATORS"); do echo "mutator$i"; done
    for i in $(seq 1 "$CLUSTER_NOTIFIERS"); do echo "notifier$i"; done
    for i in $(seq 1 "$CLUSTER_MIGRATORS"); do echo "migrator$i"; done
}

# The pid of process $1 when it is running (and still the program it was started as).
cluster_pid() {
    local file="$CLUSTER_DIR/pids/$1.pid" pid program
    [ -f "$file" ] || return 1
    pid="$(cat "$file")"
    case "$1" in n[0-9]*) program=nats-server ;; *) program=switchyard ;; esac
    alive "$pid" && [ "$(ps -p "$pid" -o comm= 2>/dev/null)" = "$program" ] && echo "$pid"
}

# Starts `$@` detached (its own session, so a Ctrl-C in the caller's terminal does not
# reach it) as process $name, appending to its log; the process writes its own pid.
cluster_spawn() {
    local name="$1"
    shift
    mkdir -p "$CLUSTER_DIR/logs" "$CLUSTER_DIR/pids"
    rm -f "$CLUSTER_DIR/pids/$name.pid"
    # A subshell that exits at once: the process is no child of this shell (a later
    # `wait` does not wait for it) and holds none of its file descriptors.
    (
        cd "$CLUSTER_DIR" || exit 1
        setsid sh -c 'echo $$ >"$0"; exec "$@"' "$CLUSTER_DIR/pids/$name.pid" "$@" \
            >>"$CLUSTER_DIR/logs/$name.log" 2>&1 </dev/null &
    )
    local _
    for _ in $(seq 1 50); do
        [ -s "$CLUSTER_DIR/pids/$name.pid" ] && return 0
        sleep 0.1
    done
    cluster_say "$name did not start; see $CLUSTER_DIR/logs/$name.log"
    return 1
}

# ---- NATS ---------------------------------------------------------------------------

nats_config() {
    local n="$1" conf="$CLUSTER_DIR/nats/n$1.conf"
    mkdir -p "$CLUSTER_DIR/nats/n$n"
    cat >"$conf" <<EOF
# Written by scripts/cluster up: node n$n of the switchyard cluster.
server_name: n$n
listen: 127.0.0.1:$(nats_client_port "$n")
http: 127.0.0.1:$(nats_monitor_port "$n")
jetstream {
  store_dir: "$CLUSTER_DIR/nats/n$n"
  max_memory_store: 256MB
  max_file_store: 8GB
}
cluster {
  name: switchyard
  listen: 127.0.0.1:$(nats_route_port "$n")
  routes: [
    nats-route://127.0.0.1:$(nats_route_port 1)
    nats-route://127.0.0.1:$(nats_route_port 2)
    nats-route://127.0.0.1:$(nats_route_port 3)
  ]
}
EOF
}

nats_start() {
    local n="${1#n}"
    if cluster_pid "n$n" >/dev/null; then return 0; fi
    [ -f "$CLUSTER_DIR/nats/n$n.conf" ] || nats_config "$n"
    cluster_spawn "n$n" "$NATS_SERVER_BIN" -c "$CLUSTER_DIR/nats/n$n.conf"
}

# Waits until node $1's JetStream answers healthy (it has joined the cluster's meta
# group and caught up), up to $2 seconds (default 60).
nats_wait_healthy() {
    local n="${1#n}" seconds="${2:-60}" _
    for _ in $(seq 1 $((seconds * 5))); do
        curl -fs "http://127.0.0.1:$(nats_monitor_port "$n")/healthz" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    cluster_say "NATS node n$n not healthy after ${seconds}s; see $CLUSTER_DIR/logs/n$n.log"
    return 1
}

# ---- Postgres -----------------------------------------------------------------------

pg_bin() {
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
    [ -n "$dir" ] && [ -x "$dir/initdb" ] && echo "$dir"
}

# Runs a Postgres server program as the owner of the data directory: the `postgres`
# user when this shell is root (initdb and postgres refuse root), else this user.
as_pg_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_ensure_installed() {
    if [ -z "$(pg_bin)" ]; then
        cluster_say "installing PostgreSQL from Debian's packages"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    PG_BIN="$(pg_bin)"
}

pg_init() {
    pg_ensure_installed
    local dir="$CLUSTER_DIR/pg"
    [ -f "$dir/data/PG_VERSION" ] && return 0
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then
        # The postgres user must reach the data directory: traverse-only (o+x, no
        # listing) on the directories above it, which keep their files owner-only.
        chmod o+x "$STATE_DIR" "$CLUSTER_DIR"
        chown postgres: "$dir"
    fi
    chmod 700 "$dir"
    cluster_say "initdb $dir/data (trust on loopback)"
    as_pg_owner "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 \
        >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; return 1; }
    cat >>"$dir/data/postgresql.conf" <<EOF
# scripts/cluster: loopback TCP only, no Unix socket; room for every process's pool.
listen_addresses = '127.0.0.1'
port = $SY_CLUSTER_PG_PORT
unix_socket_directories = ''
max_connections = 400
shared_buffers = 256MB
EOF
}

pg_running() {
    [ -n "${PG_BIN:-}" ] || PG_BIN="$(pg_bin)"
    [ -n "$PG_BIN" ] && [ -f "$CLUSTER_DIR/pg/data/PG_VERSION" ] \
        && as_pg_owner "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/pg/data" status >/dev/null 2>&1
}

pg_start() {
    pg_init
    pg_running && return 0
    as_pg_owner "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/pg/data" -l "$CLUSTER_DIR/pg/postgres.log" \
        -w -t 60 start >/dev/null
}

# Stops the cluster's Postgres: `immediate` (the chaos suite's crash: no checkpoint, WAL
# replayed at the next start) or `fast` (down: sessions ended, a clean checkpoint).
pg_stop() {
    pg_running || return 0
    as_pg_owner "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/pg/data" -m "${1:-fast}" -w -t 60 stop >/dev/null
}

# ---- switchyard processes -----------------------------------------------------------

# Starts switchyard process $1 (api2, mutator3, …) with the cluster's environment. Any
# SWITCHYARD_* variable of the caller passes through as well, so a scenario can start
# one API with a tiny pool: SWITCHYARD_DATABASE__MAX_CONNECTIONS=2 cluster_start api3.
cluster_start_switchyard() {
    local name="$1"
    if cluster_pid "$name" >/dev/null; then return 0; fi
    local -a command
    local -a listen=()
    case "$name" in
        api[0-9]*) command=(api); listen=("SWITCHYARD_HTTP__LISTEN=127.0.0.1:$(api_port "${name#api}")") ;;
        mutator[0-9]*) command=(worker --role mutator) ;;
        notifier[0-9]*) command=(worker --role notifier) ;;
        migrator[0-9]*) command=(worker --role migrator) ;;
        *) cluster_say "no process is called $name"; return 2 ;;
    esac
    cluster_spawn "$name" env \
        DATABASE_URL="$(cluster_database_url)" \
        NATS_URL="$(cluster_nats_url)" \
        SWITCHYARD_BUS__REPLICAS=3 \
        SWITCHYARD_AUTH__SECRET="$(cat "$CLUSTER_DIR/auth.secret")" \
        SWITCHYARD_LOG__FORMAT=json \
        "${listen[@]}" \
        "$CLUSTER_BIN" "${command[@]}"
}

# Waits until API $1 answers /readyz with 200, up to $2 seconds (default 60).
cluster_wait_api() {
    local name="$1" seconds="${2:-60}" port _
    port="$(api_port "${name#api}")"
    for _ in $(seq 1 $((seconds * 5))); do
        curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
        cluster_pid "$name" >/dev/null || { cluster_say "$name exited; see $CLUSTER_DIR/logs/$name.log"; return 1; }
        sleep 0.2
    done
    cluster_say "$name not ready after ${seconds}s; see $CLUSTER_DIR/logs/$name.log"
    return 1
}

# Waits until worker $1 has logged that its role started since byte $2 of its log.
cluster_wait_worker() {
    local name="$1" from="${2:-0}" seconds="${3:-60}" _
    for _ in $(seq 1 $((seconds * 5))); do
        tail -c +$((from + 1)) "$CLUSTER_DIR/logs/$name.log" 2>/dev/null \
            | grep -q 'worker role started' && return 0
        cluster_pid "$name" >/dev/null || { cluster_say "$name exited; see $CLUSTER_DIR/logs/$name.log"; return 1; }
        sleep 0.2
    done
    cluster_say "$name did not start its role in ${seconds}s; see $CLUSTER_DIR/logs/$name.log"
    return 1
}

log_size() { stat -c %s "$CLUSTER_DIR/logs/$1.log" 2>/dev/null || echo 0; }

# ---- by name ------------------------------------------------------------------------

# Starts process $1 (n2, pg, api1, mutator3, …) and waits until it is ready.
cluster_start() {
    local name="$1" from
    case "$name" in
        n[1-3]) nats_start "$name" && nats_wait_healthy "$name" ;;
        pg) pg_start ;;
        api[0-9]*) cluster_start_switchyard "$name" && cluster_wait_api "$name" ;;
        *) from="$(log_size "$name")"
           cluster_start_switchyard "$name" && cluster_wait_worker "$name" "$from" ;;
    esac
}

# Sends signal $2 (default KILL) to process $1; with TERM, waits up to 30 s for it to
# exit, then kills it.
cluster_signal() {
    local name="$1" signal="${2:-KILL}" pid _
    if [ "$name" = pg ]; then
        if [ "$signal" = KILL ]; then pg_stop immediate; else pg_stop fast; fi
        return
    fi
    pid="$(cluster_pid "$name")" || { rm -f "$CLUSTER_DIR/pids/$name.pid"; return 0; }
    kill -"$signal" "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        cluster_say "$name (pid $pid) did not stop in 30s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$CLUSTER_DIR/pids/$name.pid"
}

# Whether process $1 runs (a zombie, dead but not yet reaped by its parent, does not).
alive() {
    local state
    state="$(ps -p "$1" -o stat= 2>/dev/null)" && [ "${state#Z}" = "$state" ]
}

cluster_kill() { cluster_signal "$1" KILL; }
cluster_stop() { cluster_signal "$1" TERM; }

# Every process name with a pid file, whatever the settings say (a scenario's extra API).
cluster_started_names() {
    local file
    for file in "$CLUSTER_DIR"/pids/*.pid; do
        [ -e "$file" ] && basename "$file" .pid
    done
    return 0
}

# ---- the whole cluster --------------------------------------------------------------

cluster_up() {
    mkdir -p "$CLUSTER_DIR"
    chmod 700 "$CLUSTER_DIR"
    if ! [ -s "$CLUSTER_DIR/auth.secret" ]; then
        (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$CLUSTER_DIR/auth.secret")
    fi
    cluster_save
    install_nats
    local n name
    for n in 1 2 3; do nats_start "n$n"; done
    pg_start
    for n in 1 2 3; do nats_wait_healthy "n$n"; done
    cluster_say "NATS cluster up: $(cluster_nats_url)"
    cluster_say "Postgres up: $(cluster_database_url)"
    env DATABASE_URL="$(cluster_database_url)" NATS_URL="$(cluster_nats_url)" \
        SWITCHYARD_LOG__FORMAT=json "$CLUSTER_BIN" migrate >>"$CLUSTER_DIR/logs/migrate.log" 2>&1 \
        || { cluster_say "switchyard migrate failed; see $CLUSTER_DIR/logs/migrate.log"; return 1; }
    local -A from=()
    for name in $(cluster_switchyard_names); do
        from[$name]="$(log_size "$name")"
        cluster_start_switchyard "$name"
    done
    for name in $(cluster_switchyard_names); do
        case "$name" in
            api*) cluster_wait_api "$name" 120 ;;
            *) cluster_wait_worker "$name" "${from[$name]}" 120 ;;
        esac
    done
    cluster_say "up: $CLUSTER_APIS APIs on $(api_port 1)…, $CLUSTER_MUTATORS mutators, $CLUSTER_NOTIFIERS notifiers, $CLUSTER_MIGRATORS migrators"
}

# Stops every process the cluster started (switchyard first, gracefully; then NATS and
# Postgres), and only those.
cluster_down() {
    local name
    local -a stopping=()
    for name in $(cluster_started_names); do
        case "$name" in n[0-9]*) ;; *) cluster_stop "$name" & stopping+=($!) ;; esac
    done
    # Only these: a caller's other children (a load driver) are none of our business.
    [ ${#stopping[@]} = 0 ] || wait "${stopping[@]}"
    stopping=()
    for name in $(cluster_started_names); do cluster_stop "$name" & stopping+=($!); done
    [ ${#stopping[@]} = 0 ] || wait "${stopping[@]}"
    pg_stop fast
}

cluster_status() {
    local name pid state
    printf '%-12s %-8s %s\n' process pid state
    for name in n1 n2 n3; do
        pid="$(cluster_pid "$name" || true)"
        state=down
        [ -n "$pid" ] && state="up, client port $(nats_client_port "${name#n}")"
        [ -n "$pid" ] && ! curl -fs "http://127.0.0.1:$(nats_monitor_port "${name#n}")/healthz" >/dev/null 2>&1 \
            && state="$state, JetStream not healthy"
        printf '%-12s %-8s %s\n' "$name" "${pid:--}" "$state"
    done
    state=down
    pg_running && state="up, port $SY_CLUSTER_PG_PORT"
    printf '%-12s %-8s %s\n' pg - "$state"
    for name in $( (cluster_switchyard_names; cluster_started_names) | grep -v '^n[0-9]' | sort -u -V); do
        pid="$(cluster_pid "$name" || true)"
        state=down
        if [ -n "$pid" ]; then
            state=up
            case "$name" in
                api*) state="up, http://127.0.0.1:$(api_port "${name#api}")"
                      curl -fs "http://127.0.0.1:$(api_port "${name#api}")/readyz" >/dev/null 2>&1 \
                          || state="$state (not ready)" ;;
            esac
        fi
        printf '%-12s %-8s %s\n' "$name" "${pid:--}" "$state"
    done
}

# Fails, saying so, when any process of the cluster runs: for scripts that start every
# run on fresh data (scripts/chaos, `scripts/bench scaling`), which must not delete
# the data of a cluster someone is using.
cluster_refuse_if_up() {
    local name
    for name in $(cluster_started_names); do
        if cluster_pid "$name" >/dev/null; then
            cluster_say "a cluster is up ($name runs): $1 starts each run on fresh data in $CLUSTER_DIR; stop it first with scripts/cluster down"
            return 1
        fi
    done
    if pg_running; then
        cluster_say "the cluster's Postgres runs: stop it first with scripts/cluster down"
        return 1
    fi
}

# Deletes the cluster's data (NATS stores, Postgres, logs); nothing may be running.
cluster_purge() {
    local name
    for name in $(cluster_started_names); do
        if cluster_pid "$name" >/dev/null; then
            cluster_say "$name is still running: scripts/cluster down first"
            return 1
        fi
    done
    if pg_running; then cluster_say "Postgres is still running: scripts/cluster down first"; return 1; fi
    rm -rf "$CLUSTER_DIR/nats" "$CLUSTER_DIR/pg" "$CLUSTER_DIR/logs" "$CLUSTER_DIR/pids"
}
