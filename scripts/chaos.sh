#!/usr/bin/env bash
# Faults of the services around the gateway (issue #5, items 7 and 8), on a
# stack of this script's own: they stop the broker and MySQL, which the shared
# test stack (scripts/test.sh) cannot allow while other tests run.
#
#   scripts/chaos.sh            # build, start everything, run the scenarios
#   scripts/chaos.sh --keep     # keep the work directory (logs) even on success
#   CHAOS_SCENARIOS="pause mysql" scripts/chaos.sh   # a subset (default: all three)
#   CHAOS_KAFKA='"debug" = "metadata"' scripts/chaos.sh  # extra librdkafka properties
#   CHAOS_STORAGE=memory scripts/chaos.sh  # tansu on memory storage (default: s3)
#
# It starts MariaDB, an S3 server (moto, pip-installed when missing) and tansu
# storing into it (s3://), all on free loopback ports, creates topic `chaos`
# (3 partitions), grants the seed app (app_key1) a group per scenario on it,
# builds the gateway (debug; DATABUS_BIN=<path> uses another binary) and runs
# one gateway process for all scenarios, with produce_timeout = 2s,
# refresh_interval = 1s, poll_timeout = 2s, session_timeout = 12s and a
# metrics endpoint. scripts/chaos.py drives the traffic and prints one
# PASS/FAIL/SKIP line per check; this script prints a summary and exits
# non-zero if any check failed. About 80 seconds once built.
#
# Broker (item 7), twice: [pause] freezes tansu (SIGSTOP) for 7 s and thaws it
# (SIGCONT): a hung broker. [restart] stops it (SIGTERM), and 7 s later starts
# a new one on the same port, which finds the topic, the records and the
# committed offsets in S3, as a Kafka broker finds its disks (with
# CHAOS_STORAGE=memory: an empty broker; the topic is created again).
# Meanwhile 4 publisher connections keep up to 20 SETs each in flight (at
# most 200 SETs/s each). Checked, each run:
#   - every SET is answered, with +OK or `-ERR kafka: ...` only, each within
#     produce_timeout + 1.5 s: nothing hangs;
#   - every SET sent while the broker was away (and due before it came back)
#     is answered `-ERR kafka: ...`, on every connection;
#   - the same 4 connections get +OK again once it is back (time to the first
#     +OK is printed); the gateway process is the same throughout;
#   - a subscriber connected throughout has each long poll answered within
#     poll_timeout while the broker is away, and receives what is published
#     after it is back, without reconnecting;
#   - a group that committed the middle offset of each partition before the
#     outage resumes exactly there (first offset delivered per partition =
#     committed + 1, on a new connection), and every SET ever answered +OK is
#     read back through it, value by value. With CHAOS_STORAGE=memory the
#     restarted broker lost them: the resume is SKIPPED, and only the SETs the
#     new broker acknowledged are read back.
#
# What tansu 0.6.0 cannot do, and how this script stays clear of it:
#   - file-backed storage (sqlite://, the libsql feature) fails produces with
#     `UnableToSend` under this load and panics after a restart: S3 it is;
#   - it fences an idempotent producer after a pause (ProducerFenced) and after
#     a restart (UnknownProducerId), for as long as we watched (a minute):
#     every SET fails meanwhile, until the gateway restarts. The gateway here
#     runs with enable.idempotence=false; CHAOS_IDEMPOTENCE=true shows it;
#   - a freeze longer than the group session timeout leaves a rejoining group
#     alternating between `Rebalance in progress` and `Unknown member` for as
#     long as we watched (40 s): the pause (7 s) stays under session_timeout
#     (12 s) less a heartbeat interval;
#   - a fetch from an offset inside a record batch returns only the batches
#     after it: the records committed against are produced one SET at a time
#     (a batch each), so the committed offset is a batch boundary;
#   - restarted on memory storage, it can answer a consumer's metadata request
#     with a topic entry that has neither name nor id, on which librdkafka
#     2.12.1 crashes the gateway (README, "Service faults").
#
# MySQL (item 8): MariaDB is stopped, then started again, under the same gateway.
#   - while it is down, refreshes fail (logged), a known app still authenticates
#     (pub and sub) from the last snapshot and publishes, a wrong secret is
#     still refused, an open connection keeps publishing;
#   - /readyz reports auth_snapshot_age_seconds at least as old as the outage and
#     growing, and auth_refresh_failures growing (SKIPPED if the build serves no
#     HTTP on [metrics] addr);
#   - after the restart, an app inserted then authenticates after two refreshes,
#     and /readyz shows a fresh snapshot again.
#
# Every scenario also checks that the gateway process runs when it starts and
# is still running when it ends: a crash is reported as such.
#
# Internal: `chaos.sh broker-pause|broker-resume|broker-stop|broker-start|
# mysql-stop|mysql-start DIR` are the faults chaos.py calls back.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PRODUCE_TIMEOUT_S=2
POLL_TIMEOUT_S=2
REFRESH_S=1
TOPIC=chaos
PARTITIONS=3

# ---------------------------------------------------------------- faults

# Values written by `run` into DIR/chaos.env.
load_env() {
    WORK="$1"
    # shellcheck disable=SC1091
    . "$WORK/chaos.env"
}

broker_start() {
    start_tansu "$TANSU_PORT" "$WORK/tansu.log" "$WORK/tansu.pid"
    create_topic "$TANSU_PORT" "$TOPIC" "$PARTITIONS"
}

# broker_signal SIG: sends SIG to the running tansu.
broker_signal() {
    local pid
    pid="$(cat "$WORK/tansu.pid")"
    pid_alive "$pid" tansu || die "tansu (pid $pid) is not running"
    log "kill -$1 tansu (pid $pid)"
    kill "-$1" "$pid"
}

case "${1:-}" in
broker-pause)
    load_env "$2"
    broker_signal STOP
    exit 0
    ;;
broker-resume)
    load_env "$2"
    broker_signal CONT
    exit 0
    ;;
broker-stop)
    load_env "$2"
    stop_tansu "$WORK/tansu.pid"
    exit 0
    ;;
broker-start)
    load_env "$2"
    broker_start
    exit 0
    ;;
mysql-stop)
    load_env "$2"
    stop_mariadb "$WORK/mysql"
    exit 0
    ;;
mysql-start)
    load_env "$2"
    start_mariadb "$WORK/mysql" "$MYSQL_PORT"
    exit 0
    ;;
"" | --keep) ;;
*) die "usage: $0 [--keep]" ;;
esac

# ---------------------------------------------------------------- run

KEEP=0
[[ "${1:-}" == --keep ]] && KEEP=1
cd "$REPO_ROOT"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/databus-chaos.XXXXXX")"
STATUS=1

# shellcheck disable=SC2317  # invoked from the trap
cleanup() {
    local rc=$?
    trap - EXIT
    [[ -z "${GATEWAY_PID:-}" ]] || stop_pid "$GATEWAY_PID" databus 20
    # Restarted services are not this shell's children: stop them by pid file
    # (a frozen broker first thaws, or it could not stop).
    if [[ -f "$WORK/tansu.pid" ]] && pid_alive "$(cat "$WORK/tansu.pid")" tansu; then
        kill -CONT "$(cat "$WORK/tansu.pid")" 2>/dev/null || true
    fi
    stop_tansu "$WORK/tansu.pid"
    stop_mariadb "$WORK/mysql"
    stop_all
    if [[ "$STATUS" == 0 && "$KEEP" == 0 ]]; then
        rm -rf "$WORK"
    else
        log "logs kept in $WORK (gateway.log, tansu.log, s3.log, mysql/error.log)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z "${DATABUS_BIN:-}" ]]; then
    log "cargo build --bin databus"
    cargo build --quiet --bin databus
    DATABUS_BIN="$REPO_ROOT/target/debug/databus"
fi

TANSU="$(find_tansu)" || die "tansu $TANSU_VERSION not found: run scripts/setup.sh"
case "${CHAOS_STORAGE:=s3}" in
s3)
    ensure_python_module moto 'moto[server]>=5.1,<6'
    start_s3 "$(free_port)" "$WORK/s3.log" tansu
    TANSU_STORAGE=s3://tansu/
    ;;
memory) TANSU_STORAGE=memory://tansu/ ;;
*) die "CHAOS_STORAGE must be s3 or memory, not '$CHAOS_STORAGE'" ;;
esac
MYSQL_PORT="$(free_port)"
start_mariadb "$WORK/mysql" "$MYSQL_PORT"
load_schema "$MYSQL_PORT"
TANSU_PORT="$(free_port)"
GATEWAY_PORT="$(free_port)"
METRICS_PORT="$(free_port)"

cat >"$WORK/chaos.env" <<ENV
TANSU=$TANSU
TANSU_PORT=$TANSU_PORT
MYSQL_PORT=$MYSQL_PORT
GATEWAY_ADDR=127.0.0.1:$GATEWAY_PORT
METRICS_ADDR=127.0.0.1:$METRICS_PORT
GATEWAY_LOG=$WORK/gateway.log
PRODUCE_TIMEOUT_S=$PRODUCE_TIMEOUT_S
POLL_TIMEOUT_S=$POLL_TIMEOUT_S
REFRESH_S=$REFRESH_S
TOPIC=$TOPIC
PARTITIONS=$PARTITIONS
export TANSU_STORAGE=$TANSU_STORAGE
ENV
if [[ "$CHAOS_STORAGE" == s3 ]]; then
    # broker-start runs in a new process: it needs the endpoint too.
    for var in AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_DEFAULT_REGION AWS_ENDPOINT AWS_ALLOW_HTTP; do
        echo "export $var=${!var}" >>"$WORK/chaos.env"
    done
fi
broker_start

mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$MYSQL_PORT" -uroot databus_db -e "
    INSERT INTO auth (app_id, group_name, operation, topic) VALUES
        (1, 'chaos', 3, '$TOPIC'),
        (1, 'chaos_pause', 3, '$TOPIC'), (1, 'chaos_pause_live', 1, '$TOPIC'),
        (1, 'chaos_restart', 3, '$TOPIC'), (1, 'chaos_restart_live', 1, '$TOPIC');"

cat >"$WORK/databus.toml" <<TOML
[server]
addr = "127.0.0.1:$GATEWAY_PORT"
shards = 2
produce_timeout = "${PRODUCE_TIMEOUT_S}s"
sub_idle_timeout = "60s"

[auth]
mysql_url = "mysql://root@127.0.0.1:$MYSQL_PORT/databus_db"
refresh_interval = "${REFRESH_S}s"

[clusters.cluster1]
brokers = "127.0.0.1:$TANSU_PORT"
auto_offset_reset = "earliest"

[clusters.cluster1.kafka]
# tansu 0.6.0 keeps fencing an idempotent producer after a pause
# (ProducerFenced) and after a restart (UnknownProducerId): every SET then
# fails until the gateway restarts. CHAOS_IDEMPOTENCE=true shows it.
"enable.idempotence" = "${CHAOS_IDEMPOTENCE:-false}"
${CHAOS_KAFKA:-}

[consumer]
poll_timeout = "${POLL_TIMEOUT_S}s"
session_timeout = "12s"
batch_window = "100ms"

[metrics]
addr = "127.0.0.1:$METRICS_PORT"
TOML
log "starting the gateway on 127.0.0.1:$GATEWAY_PORT (log: $WORK/gateway.log)"
RUST_LOG="info,databus=debug,librdkafka=warn,rdkafka=warn" NO_COLOR=1 \
    "$DATABUS_BIN" --config "$WORK/databus.toml" </dev/null >"$WORK/gateway.log" 2>&1 &
GATEWAY_PID=$!
echo "GATEWAY_PID=$GATEWAY_PID" >>"$WORK/chaos.env"
for ((i = 0; i < 300; i++)); do
    grep -q "databus ready on" "$WORK/gateway.log" && break
    pid_alive "$GATEWAY_PID" databus || { tail -n 20 "$WORK/gateway.log" >&2; die "the gateway exited"; }
    sleep 0.1
done
((i < 300)) || die "the gateway did not start within 30 s"

set +e
rc=0
: >"$WORK/results.txt"
for scenario in ${CHAOS_SCENARIOS:-pause restart mysql}; do
    log "scenario: $scenario"
    python3 "$REPO_ROOT/scripts/chaos.py" "$scenario" --work "$WORK" | tee -a "$WORK/results.txt"
    [[ "${PIPESTATUS[0]}" == 0 ]] || rc=1
done
set -e

pass=$(grep -c '^PASS' "$WORK/results.txt" || true)
fail=$(grep -c '^FAIL' "$WORK/results.txt" || true)
skipped=$(grep -c '^SKIP' "$WORK/results.txt" || true)
echo "summary: $pass passed, $fail failed, $skipped skipped"
if [[ "$rc" == 0 && "$fail" == 0 ]]; then
    STATUS=0
fi
exit "$STATUS"
