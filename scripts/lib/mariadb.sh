# shellcheck shell=bash
# A private MariaDB on a loopback port, its data in a directory of the
# caller's, and the schema with the sample rows of config/schema.sql.
# Sourced by scripts/lib.sh.

SCHEMA_SQL="$REPO_ROOT/config/schema.sql"

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

