#!/usr/bin/env bash
# Faults of the services around the gateway, on a stack of this script's
# own: they kill, stop and freeze Kafka nodes and MySQL, which the shared test
# stack (scripts/test.sh) cannot allow while other tests run.
#
#   scripts/chaos.sh            # build, start everything, run every scenario
#   scripts/chaos.sh --keep     # keep the work directory (logs) even on success
#   CHAOS_SCENARIOS="freeze mysql" scripts/chaos.sh   # a subset
#   CHAOS_KAFKA='"debug" = "broker"' scripts/chaos.sh  # extra librdkafka properties
#
# It starts, on free loopback ports: MariaDB; a replicated Apache Kafka
# cluster of three KRaft nodes (each controller and broker, internal topics
# with replication factor 3); a single Kafka node; and one gateway (debug
# build; DATABUS_BIN=<path> uses another binary) in its default producer
# configuration (acks=all, idempotence on), with cluster `replicated` (app
# app_key1) and cluster `single` (app single_app), produce_timeout = 5s,
# refresh_interval = 1s, poll_timeout = 2s and a metrics endpoint.
#
# Broker scenarios, each on a topic of its own (replicated: 6 partitions,
# replication factor 3, min.insync.replicas=2; single: 3 partitions):
#   leader-kill  SIGKILL the leader of the busiest partition, restart it 10 s later
#   rolling      restart the three nodes one at a time (SIGTERM, start, wait
#                until every replica is in sync again)
#   freeze       SIGSTOP the leader of the busiest partition for 15 s (longer
#                than broker.session.timeout.ms, 9 s), then SIGCONT
#   pause        SIGSTOP the single node for 12 s, then SIGCONT
#   restart      stop the single node (SIGTERM), start it again 12 s later
# Each runs under load from 4 publisher connections (up to 20 SETs in flight
# each, at most 200 SETs/s each) and checks, with every wait bounded:
#   - every SET is answered, +OK or `-ERR kafka: ...` only, within
#     produce_timeout + 1.5 s; with the single node away, every SET sent
#     meanwhile fails, on every connection;
#   - the same connections get +OK after the fault, same gateway process;
#   - a subscriber connected throughout delivers every acknowledged record
#     at least once without reconnecting;
#   - a group that committed the middle offset of each partition before the
#     fault resumes exactly there on a new connection (committed + 1);
#   - read back with Kafka's own console consumer, each partition to its end:
#     every SET ever answered +OK is in Kafka (none lost) and no record is
#     there twice (the idempotent producer).
# and prints a REPORT line: SETs acknowledged, SETs answered with an error,
# the longest reply, lost, duplicates. The summary table gathers them.
#
# mysql: MariaDB stopped, then started again, under the same gateway: known
# apps keep authenticating and publishing from the last snapshot, a wrong
# secret is still refused, /readyz reports the snapshot's age and the failed
# refreshes (from /metrics and /readyz), a row added after the restart is
# picked up.
#
# Internal: `chaos.sh node-kill|node-stop|node-start|node-freeze|node-thaw DIR
# CLUSTER NODE` and `chaos.sh mysql-stop|mysql-start DIR` are the faults
# chaos.py calls back.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PRODUCE_TIMEOUT_S=5
POLL_TIMEOUT_S=2
REFRESH_S=1
ALL_SCENARIOS="leader-kill rolling freeze pause restart mysql"

# ---------------------------------------------------------------- faults

# Values written by `run` into DIR/chaos.env.
load_env() {
    WORK="$1"
    # shellcheck disable=SC1091
    . "$WORK/chaos.env"
}

# node_pid CLUSTER NODE: pid of a running node, or die.
node_pid() {
    local dir="$WORK/kafka-$1/node-$2" pid
    pid="$(cat "$dir/kafka.pid" 2>/dev/null)" || die "no pid file in $dir"
    pid_alive "$pid" kafka.Kafka || die "Kafka node $2 of $1 (pid $pid) is not running"
    echo "$pid"
}

case "${1:-}" in
node-kill | node-stop | node-start | node-freeze | node-thaw)
    load_env "$2"
    dir="$WORK/kafka-$3/node-$4"
    case "$1" in
    node-kill)
        pid="$(node_pid "$3" "$4")"
        log "kill -KILL Kafka node $4 of $3 (pid $pid)"
        kill -KILL "$pid"
        for ((i = 0; i < 100; i++)); do pid_alive "$pid" kafka.Kafka || break; sleep 0.1; done
        rm -f "$dir/kafka.pid"
        ;;
    node-stop) stop_kafka_node "$dir" ;;
    node-start) start_kafka_node "$dir" ;;
    node-freeze) kill -STOP "$(node_pid "$3" "$4")" ;;
    node-thaw) kill -CONT "$(node_pid "$3" "$4")" ;;
    esac
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
SCENARIOS="${CHAOS_SCENARIOS:-$ALL_SCENARIOS}"

# shellcheck disable=SC2317  # invoked from the trap
cleanup() {
    local rc=$?
    trap - EXIT
    [[ -z "${GATEWAY_PID:-}" ]] || stop_pid "$GATEWAY_PID" databus 20
    # Nodes restarted by a fault are not this shell's children: they are
    # stopped by pid file there, a frozen one thawed first.
    stop_private_stack "$WORK" "$STATUS" "$KEEP" \
        "gateway.log, kafka-*/node-*/server.log, mysql/error.log"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ensure_kafka
if [[ -z "${DATABUS_BIN:-}" ]]; then
    log "cargo build --bin databus"
    cargo build --quiet --bin databus
    DATABUS_BIN="$REPO_ROOT/target/debug/databus"
fi

MYSQL_PORT="$(free_port)"
start_mariadb "$WORK/mysql" "$MYSQL_PORT"
load_schema "$MYSQL_PORT"
start_kafka_cluster "$WORK/kafka-replicated" 3
BOOTSTRAP_REPLICATED="$KAFKA_BOOTSTRAP"
start_kafka_cluster "$WORK/kafka-single" 1
BOOTSTRAP_SINGLE="$KAFKA_BOOTSTRAP"

# A topic, a group that commits and resumes and a group connected throughout
# per scenario, granted to the app of the scenario's cluster.
grants=""
for scenario in $SCENARIOS; do
    topic="chaos_$scenario"
    case "$scenario" in
    pause | restart)
        create_topic "$BOOTSTRAP_SINGLE" "$topic" 3 1
        app=2
        ;;
    leader-kill | rolling | freeze | mysql)
        create_topic "$BOOTSTRAP_REPLICATED" "$topic" 6 3 min.insync.replicas=2
        app=1
        ;;
    *) die "unknown scenario $scenario (scenarios: $ALL_SCENARIOS)" ;;
    esac
    grants+="($app, '$topic', 3, '$topic'), ($app, '${topic}_live', 1, '$topic'),"
done
mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$MYSQL_PORT" -uroot databus_db -e "
    UPDATE app SET cluster = 'replicated' WHERE id = 1;
    INSERT INTO app (id, app_key, app_secret, cluster) VALUES (2, 'single_app', 'single_secret', 'single');
    INSERT INTO auth (app_id, group_name, operation, topic) VALUES ${grants%,};" \
    || die "could not grant the chaos topics"

mapfile -t ports < <(free_ports 2)
GATEWAY_PORT="${ports[0]}"
METRICS_PORT="${ports[1]}"
cat >"$WORK/chaos.env" <<ENV
KAFKA_HOME=$KAFKA_HOME
KAFKA_TOOLS_LOG4J=$(kafka_tools_log4j)
BOOTSTRAP_REPLICATED=$BOOTSTRAP_REPLICATED
BOOTSTRAP_SINGLE=$BOOTSTRAP_SINGLE
MYSQL_PORT=$MYSQL_PORT
GATEWAY_ADDR=127.0.0.1:$GATEWAY_PORT
METRICS_ADDR=127.0.0.1:$METRICS_PORT
PRODUCE_TIMEOUT_S=$PRODUCE_TIMEOUT_S
POLL_TIMEOUT_S=$POLL_TIMEOUT_S
REFRESH_S=$REFRESH_S
ENV

cat >"$WORK/databus.toml" <<TOML
[server]
addr = "127.0.0.1:$GATEWAY_PORT"
shards = 2
produce_timeout = "${PRODUCE_TIMEOUT_S}s"
sub_idle_timeout = "60s"

[auth]
mysql_url = "mysql://root@127.0.0.1:$MYSQL_PORT/databus_db"
refresh_interval = "${REFRESH_S}s"

# The producer as users run it: acks=all, idempotence on (the defaults).
[clusters.replicated]
brokers = "$BOOTSTRAP_REPLICATED"
auto_offset_reset = "earliest"

[clusters.replicated.kafka]
${CHAOS_KAFKA:-}

[clusters.single]
brokers = "$BOOTSTRAP_SINGLE"
auto_offset_reset = "earliest"

[clusters.single.kafka]
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
for scenario in $SCENARIOS; do
    log "scenario: $scenario"
    (cd "$REPO_ROOT/scripts" && python3 chaos.py "$scenario" --work "$WORK") | tee -a "$WORK/results.txt"
    [[ "${PIPESTATUS[0]}" == 0 ]] || rc=1
done
set -e

echo
echo "| scenario | SETs acknowledged | SETs answered with an error | longest reply (s) | lost | duplicates | errors written anyway | SETs failing for (s) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
sed -n 's/^REPORT //p' "$WORK/results.txt" | while read -r name figures; do
    declare -A f=()
    for kv in $figures; do f[${kv%%=*}]="${kv#*=}"; done
    echo "| $name | ${f[acked]} | ${f[errors]} | ${f[longest_reply_s]} | ${f[lost]} | ${f[duplicates]} | ${f[errors_written_anyway]} | ${f[failing_s]} |"
done
pass=$(grep -c '^PASS' "$WORK/results.txt" || true)
fail=$(grep -c '^FAIL' "$WORK/results.txt" || true)
skipped=$(grep -c '^SKIP' "$WORK/results.txt" || true)
echo
echo "summary: $pass passed, $fail failed, $skipped skipped"
if [[ "$rc" == 0 && "$fail" == 0 ]]; then
    STATUS=0
fi
exit "$STATUS"
