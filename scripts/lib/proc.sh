# shellcheck shell=bash
# Processes and ports: logging, free loopback ports, and the bookkeeping that
# lets a script stop every background process it started (LIB_PIDS,
# stop_all, install_cleanup_trap). Sourced by scripts/lib.sh.

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

# free_ports N: N distinct free TCP ports on 127.0.0.1, one per line (held
# open together while chosen, so the kernel cannot hand out one twice).
free_ports() {
    python3 -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()' "$1"
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
        # mariadbd may need a while to flush InnoDB, a Kafka node for its
        # controlled shutdown (leadership moved to the other nodes).
        case "$entry" in
        *:mariadbd* | *:kafka.Kafka*) stop_pid "${entry%%:*}" "${entry#*:}" 60 ;;
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

