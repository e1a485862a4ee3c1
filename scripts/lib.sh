# shellcheck shell=bash
# Shared helpers for databus's local test stack (MariaDB + tansu, a Kafka
# compatible broker). Source it from the other scripts:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Every background process started here is recorded (LIB_PIDS) so that a
# calling script can stop them all with `trap stop_all EXIT` (see
# install_cleanup_trap).

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TANSU_VERSION="0.6.0"
SCHEMA_SQL="$REPO_ROOT/config/schema.sql"

# Background processes started by this shell: "pid:name" where name is a
# string that must appear in /proc/PID/cmdline (guards against pid reuse).
LIB_PIDS=()

log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }
die() {
    printf '[%s] ERROR: %s\n' "$(basename "$0")" "$*" >&2
    exit 1
}

# Ask the kernel for a free TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# True if PORT can be bound on 127.0.0.1 (nobody listens there).
# SO_REUSEADDR as servers use it: connections of an earlier run lingering
# in TIME_WAIT do not make the port busy.
port_is_free() {
    python3 -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()' "$1"
}

# PREFERRED if it is free, else a kernel-chosen free port.
port_or_free() {
    if port_is_free "$1"; then echo "$1"; else free_port; fi
}

# True if something accepts TCP connections on 127.0.0.1:PORT.
port_accepts() {
    # shellcheck disable=SC2016  # $1 expands in the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# ---------------------------------------------------------------------------
# Process bookkeeping

register_pid() { LIB_PIDS+=("$1:$2"); }

# pid_alive PID NAME: the process exists and its command line mentions NAME,
# or it is a child of this shell that has not exec'd NAME yet.
pid_alive() {
    local pid="$1" name="$2" stat
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$name" && return 0
    stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"   # fields after "(comm) ": state ppid ...
    read -r _ stat _ <<<"$stat"
    [[ "$stat" == "$$" || "$stat" == "${BASHPID:-$$}" ]]
}

# stop_pid PID NAME TIMEOUT: SIGTERM, wait up to TIMEOUT seconds for a clean
# shutdown, then SIGKILL. Does nothing if PID is gone or is not NAME.
stop_pid() {
    local pid="$1" name="$2" timeout="$3" i
    pid_alive "$pid" "$name" || return 0
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < timeout * 10; i++)); do
        pid_alive "$pid" "$name" || return 0
        sleep 0.1
    done
    log "$name (pid $pid) did not stop within ${timeout}s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        pid_alive "$pid" "$name" || return 0
        sleep 0.1
    done
}

# Stop everything this shell started, newest first.
stop_all() {
    local i entry
    for ((i = ${#LIB_PIDS[@]} - 1; i >= 0; i--)); do
        entry="${LIB_PIDS[i]}"
        # mariadbd may need a while to flush InnoDB; tansu stops at once.
        case "$entry" in
        *:mariadbd*) stop_pid "${entry%%:*}" "${entry#*:}" 60 ;;
        *) stop_pid "${entry%%:*}" "${entry#*:}" 15 ;;
        esac
    done
    LIB_PIDS=()
}

# Stop all recorded processes on exit, Ctrl-C or SIGTERM, keeping the exit
# status.
# shellcheck disable=SC2317  # invoked from a trap
__lib_on_exit() {
    local rc=$?
    trap - EXIT
    stop_all
    exit "$rc"
}
install_cleanup_trap() {
    trap __lib_on_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# ---------------------------------------------------------------------------
# Installation

APT_UPDATED=0

pkg_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

# ensure_apt_packages PKG...: install only the packages dpkg says are missing.
ensure_apt_packages() {
    local missing=() p sudo=()
    for p in "$@"; do
        pkg_installed "$p" || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        log "apt packages already installed: $*"
        return 0
    fi
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null || die "need root (or sudo) to install: ${missing[*]}"
        sudo=(sudo)
    fi
    if [[ "$APT_UPDATED" == 0 ]]; then
        log "apt-get update"
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
        APT_UPDATED=1
    fi
    log "installing apt packages: ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        || die "apt-get install failed for: ${missing[*]}"
}

# ensure_python_module MODULE REQUIREMENT: pip install REQUIREMENT unless
# python3 can import MODULE already.
ensure_python_module() {
    local module="$1" requirement="$2" pip_log
    if python3 -c "import $module" 2>/dev/null; then
        log "python module $module already installed"
        return 0
    fi
    log "installing python module $module (pip install '$requirement')"
    pip_log="$(mktemp)"
    if ! python3 -m pip install --quiet "$requirement" >"$pip_log" 2>&1; then
        if grep -q externally-managed "$pip_log"; then
            log "pip refused (externally managed environment): retrying with --break-system-packages"
            python3 -m pip install --quiet --break-system-packages "$requirement" \
                || die "pip install '$requirement' failed"
        else
            cat "$pip_log" >&2
            die "pip install '$requirement' failed"
        fi
    fi
    rm -f "$pip_log"
    python3 -c "import $module" || die "python3 still cannot import $module after pip install"
}

# Path of a tansu binary of the wanted version, or nothing.
find_tansu() {
    local c
    for c in "$(command -v tansu 2>/dev/null || true)" "${CARGO_HOME:-$HOME/.cargo}/bin/tansu"; do
        [[ -n "$c" && -x "$c" ]] || continue
        if "$c" --version 2>/dev/null | grep -qw -- "$TANSU_VERSION"; then
            echo "$c"
            return 0
        fi
    done
    return 1
}

# ensure_tansu: make sure tansu $TANSU_VERSION is installed; sets TANSU.
ensure_tansu() {
    local i
    if TANSU="$(find_tansu)"; then
        log "tansu $TANSU_VERSION already installed: $TANSU"
        return 0
    fi
    # Another `cargo install tansu` (e.g. from a concurrent setup) would
    # fight over the same target: wait for it (at most 30 min) instead.
    if pgrep -f 'cargo install tansu' >/dev/null 2>&1; then
        log "a 'cargo install tansu' is already running: waiting for it (up to 30 min)"
        for ((i = 0; i < 360; i++)); do
            pgrep -f 'cargo install tansu' >/dev/null 2>&1 || break
            sleep 5
        done
        if TANSU="$(find_tansu)"; then
            log "tansu $TANSU_VERSION installed by the other process: $TANSU"
            return 0
        fi
    fi
    command -v cargo >/dev/null || die "cargo not found: install Rust (rustup) first"
    log "installing tansu $TANSU_VERSION with cargo (takes about 11 minutes on 2 cores)"
    # dynostore provides the memory:// storage engine used by the test stack.
    cargo install tansu --version "$TANSU_VERSION" --features dynostore --locked \
        || die "cargo install tansu $TANSU_VERSION failed"
    TANSU="$(find_tansu)" || die "tansu installed but '$TANSU_VERSION' not reported by 'tansu --version' (is ${CARGO_HOME:-$HOME/.cargo}/bin on PATH?)"
    log "tansu installed: $TANSU"
}

# ---------------------------------------------------------------------------
# MariaDB

# Unix socket of the MariaDB in DIR. Socket paths are limited to 107 bytes,
# so fall back to /tmp for deep directories.
mariadb_socket() {
    local dir="$1" port="$2" sock
    sock="$dir/mysqld.sock"
    if ((${#sock} > 100)); then sock="/tmp/databus-mariadb-$port.sock"; fi
    echo "$sock"
}

# start_mariadb DIR PORT: private MariaDB on 127.0.0.1:PORT, data in DIR/data,
# socket, pid file and error log in DIR. root@127.0.0.1 has no password.
start_mariadb() {
    local dir="$1" port="$2" sock pid i
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    sock="$(mariadb_socket "$dir" "$port")"
    command -v mariadbd >/dev/null || PATH="$PATH:/usr/sbin"
    command -v mariadbd >/dev/null || die "mariadbd not found: run scripts/setup.sh"

    if [[ -f "$dir/mysqld.pid" ]] && pid_alive "$(cat "$dir/mysqld.pid")" "$dir/data"; then
        log "a MariaDB from an earlier run still uses $dir: stopping it"
        stop_mariadb "$dir"
    fi

    if [[ ! -f "$dir/.initialised" ]]; then
        log "initialising MariaDB data directory $dir/data"
        rm -rf "$dir/data"
        mkdir -p "$dir/data"
        mariadb-install-db --no-defaults --datadir="$dir/data" --user="$(id -un)" \
            --auth-root-authentication-method=normal --skip-test-db \
            >"$dir/install.log" 2>&1 \
            || { tail -n 30 "$dir/install.log" >&2; die "mariadb-install-db failed (log: $dir/install.log)"; }
        touch "$dir/.initialised"
    fi

    rm -f "$sock" "$dir/mysqld.pid"
    echo "$sock" >"$dir/socket.path"
    log "starting MariaDB on 127.0.0.1:$port (data: $dir/data, log: $dir/error.log)"
    # --no-defaults: ignore /etc/mysql/*.cnf (system socket, bind address...).
    # --skip-name-resolve: no DNS look-ups; root@127.0.0.1 is granted below.
    # --innodb-use-native-aio=0: io_uring/libaio may be unavailable in sandboxes.
    mariadbd --no-defaults \
        --user="$(id -un)" \
        --datadir="$dir/data" \
        --socket="$sock" \
        --pid-file="$dir/mysqld.pid" \
        --log-error="$dir/error.log" \
        --port="$port" \
        --bind-address=127.0.0.1 \
        --skip-networking=0 \
        --skip-name-resolve \
        --innodb-use-native-aio=0 \
        --innodb-buffer-pool-size=64M \
        --character-set-server=utf8mb4 \
        --collation-server=utf8mb4_general_ci \
        --max-connections=500 \
        </dev/null >>"$dir/error.log" 2>&1 &
    pid=$!
    register_pid "$pid" "mariadbd"
    echo "$pid" >"$dir/mariadbd.pid"

    # Readiness: mariadbd needs a few seconds for InnoDB recovery and to open
    # its socket; give it up to 60 s, and fail fast if it exits.
    for ((i = 0; i < 120; i++)); do
        if ! pid_alive "$pid" mariadbd; then
            tail -n 30 "$dir/error.log" >&2
            die "mariadbd exited during start-up (log: $dir/error.log)"
        fi
        if mariadb-admin --no-defaults --socket="$sock" -uroot ping >/dev/null 2>&1; then
            break
        fi
        sleep 0.5
    done
    if ((i == 120)); then
        tail -n 30 "$dir/error.log" >&2
        die "MariaDB did not become ready within 60 s (log: $dir/error.log)"
    fi

    # With --skip-name-resolve a TCP client from 127.0.0.1 does not match
    # root@localhost: make sure root@127.0.0.1 exists, without a password.
    mariadb --no-defaults --socket="$sock" -uroot -e "
        CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';
        ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '';
        GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
        FLUSH PRIVILEGES;" \
        || die "could not grant root@127.0.0.1 (log: $dir/error.log)"
    mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$port" -uroot -e 'SELECT 1' >/dev/null \
        || die "MariaDB does not accept root over TCP on 127.0.0.1:$port"
    log "MariaDB ready: mysql://root@127.0.0.1:$port"
}

# load_schema PORT: load config/schema.sql (database databus_db).
load_schema() {
    local port="$1"
    [[ -f "$SCHEMA_SQL" ]] || die "missing $SCHEMA_SQL"
    mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$port" -uroot <"$SCHEMA_SQL" \
        || die "loading $SCHEMA_SQL into 127.0.0.1:$port failed"
    log "schema loaded into databus_db on 127.0.0.1:$port"
}

# stop_mariadb DIR: clean shutdown of the MariaDB started with DIR.
stop_mariadb() {
    local dir="$1" pid
    for f in "$dir/mysqld.pid" "$dir/mariadbd.pid"; do
        [[ -f "$f" ]] || continue
        pid="$(cat "$f")"
        # Up to 60 s: InnoDB flushes its buffer pool on shutdown.
        stop_pid "$pid" mariadbd 60
    done
    rm -f "$dir/mysqld.pid" "$dir/mariadbd.pid"
}

# ---------------------------------------------------------------------------
# tansu (Kafka API broker)

# start_tansu PORT LOGFILE [PIDFILE]: broker on 127.0.0.1:PORT; sets
# TANSU_PID. Storage is in memory (gone with the process) unless
# TANSU_STORAGE names another engine, e.g. s3://BUCKET/ with the AWS_*
# variables of an S3 endpoint (see start_s3).
start_tansu() {
    local port="$1" logfile="$2" pidfile="${3:-}" i
    [[ -n "${TANSU:-}" ]] || TANSU="$(find_tansu)" || die "tansu $TANSU_VERSION not found: run scripts/setup.sh"
    mkdir -p "$(dirname "$logfile")"
    log "starting tansu on 127.0.0.1:$port (log: $logfile)"
    # Explicit flags override any CLUSTER_ID/LISTENER_URL/STORAGE_ENGINE
    # variables that happen to be set. memory:// and s3:// need the dynostore
    # feature.
    RUST_LOG="${TANSU_RUST_LOG:-${RUST_LOG:-warn}}" "$TANSU" broker \
        --cluster-id databus-test \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine "${TANSU_STORAGE:-memory://tansu/}" \
        </dev/null >>"$logfile" 2>&1 &
    TANSU_PID=$!
    register_pid "$TANSU_PID" tansu
    [[ -z "$pidfile" ]] || echo "$TANSU_PID" >"$pidfile"

    # tansu listens within a second or so; allow 30 s on a loaded machine.
    for ((i = 0; i < 60; i++)); do
        if ! pid_alive "$TANSU_PID" tansu; then
            tail -n 30 "$logfile" >&2
            die "tansu exited during start-up (log: $logfile)"
        fi
        port_accepts "$port" && break
        sleep 0.5
    done
    if ((i == 60)); then
        tail -n 30 "$logfile" >&2
        die "tansu did not accept connections on 127.0.0.1:$port within 30 s (log: $logfile)"
    fi
    log "tansu ready: 127.0.0.1:$port"
}

# stop_tansu [PIDFILE]: stop the broker (from PIDFILE, else TANSU_PID).
stop_tansu() {
    local pid="${TANSU_PID:-}"
    if [[ -n "${1:-}" ]]; then
        [[ -f "$1" ]] || return 0
        pid="$(cat "$1")"
    fi
    [[ -z "$pid" ]] || stop_pid "$pid" tansu 15
    [[ -z "${1:-}" ]] || rm -f "$1"
}

# topic_partitions PORT NAME: partition count of topic NAME as the broker
# reports it in a Metadata response (`tansu topic list` prints the response
# as JSON), or nothing if the topic is unknown. kcat is no use here: the
# librdkafka 2.0.2 in Debian 12's kcat rejects tansu 0.6.0's ApiVersions v3
# response ("Read underflow").
topic_partitions() {
    local port="$1" name="$2"
    [[ -n "${TANSU:-}" ]] || TANSU="$(find_tansu)" || die "tansu $TANSU_VERSION not found: run scripts/setup.sh"
    "$TANSU" topic list --broker "tcp://127.0.0.1:$port" 2>/dev/null | python3 -c '
import json, sys
name = sys.argv[1]
for line in sys.stdin:  # tansu logs errors on stdout too: take the JSON line
    if line.startswith("["):
        for topic in json.loads(line):
            if topic.get("name") == name:
                print(len(topic.get("partitions") or []))
' "$name" || true
}

# create_topic PORT NAME PARTITIONS: create the topic with tansu's admin
# client (a CreateTopics request) and check its partition count (Metadata).
create_topic() {
    local port="$1" name="$2" partitions="$3" out got i
    [[ -n "${TANSU:-}" ]] || TANSU="$(find_tansu)" || die "tansu $TANSU_VERSION not found: run scripts/setup.sh"
    if ! out="$("$TANSU" topic create "$name" --partitions "$partitions" \
        --broker "tcp://127.0.0.1:$port" 2>&1)"; then
        # It may already exist (e.g. created by an earlier call): the
        # partition check below decides.
        # shellcheck disable=SC2001  # strip tansu's colour codes
        log "tansu topic create $name: $(sed 's/\x1b\[[0-9;]*m//g' <<<"$out")"
    fi
    # Metadata may lag the create by a moment: retry for up to 10 s.
    for ((i = 0; i < 20; i++)); do
        got="$(topic_partitions "$port" "$name")"
        [[ "$got" == "$partitions" ]] && {
            log "topic $name has $partitions partitions"
            return 0
        }
        sleep 0.5
    done
    die "topic $name on 127.0.0.1:$port has '${got:-no}' partitions, expected $partitions"
}

# ---------------------------------------------------------------------------
# S3 on loopback (moto), for a tansu whose storage outlives the broker process

# start_s3 PORT LOGFILE BUCKET [PIDFILE]: moto's S3 server on 127.0.0.1:PORT
# with BUCKET created; exports the AWS_* variables tansu's s3:// storage
# (the object_store crate) reads. moto keeps objects in its own memory: a
# restarted broker finds its topics, records and committed offsets, as a
# Kafka broker does on its disks. Needs `ensure_python_module moto
# 'moto[server]...'` first. Sets S3_PID.
start_s3() {
    local port="$1" logfile="$2" bucket="$3" pidfile="${4:-}" i
    mkdir -p "$(dirname "$logfile")"
    log "starting S3 (moto) on 127.0.0.1:$port (log: $logfile)"
    python3 -m moto.server -H 127.0.0.1 -p "$port" </dev/null >>"$logfile" 2>&1 &
    S3_PID=$!
    register_pid "$S3_PID" moto.server
    [[ -z "$pidfile" ]] || echo "$S3_PID" >"$pidfile"
    for ((i = 0; i < 60; i++)); do
        pid_alive "$S3_PID" moto.server || { tail -n 30 "$logfile" >&2; die "moto exited during start-up"; }
        port_accepts "$port" && break
        sleep 0.5
    done
    ((i < 60)) || die "moto did not accept connections on 127.0.0.1:$port within 30 s (log: $logfile)"
    export AWS_ACCESS_KEY_ID=databus AWS_SECRET_ACCESS_KEY=databus AWS_DEFAULT_REGION=us-east-1 \
        AWS_ENDPOINT="http://127.0.0.1:$port" AWS_ALLOW_HTTP=true
    python3 -c 'import sys, boto3
boto3.client("s3", endpoint_url=sys.argv[1]).create_bucket(Bucket=sys.argv[2])' "$AWS_ENDPOINT" "$bucket" \
        || die "could not create S3 bucket $bucket"
    log "S3 ready: $AWS_ENDPOINT, bucket $bucket"
}
