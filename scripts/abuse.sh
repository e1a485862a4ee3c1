#!/usr/bin/env bash
# Hostile clients by the hundred against a real gateway: the heavy version of
# the tests' bad-client cases, on a stack of this script's own (one scenario
# freezes the Kafka node, which the shared test stack cannot allow).
#
#   scripts/abuse.sh            # build, start everything, run every scenario
#   scripts/abuse.sh --keep     # keep the work directory (logs) even on success
#   ABUSE_SCENARIOS="unread-echo descriptors" scripts/abuse.sh   # a subset
#   DATABUS_BIN=target/release/databus scripts/abuse.sh           # no build
#
# It builds the gateway (release), starts MariaDB and one Apache Kafka node
# on free loopback ports, creates the topics (abuse_pub: 3 partitions,
# abuse_sub: 4) and grants them: app_key1 group `abuse` (pub) and
# `abuse_sub` (sub), app_key1 group `G` and a second app, app_b, group
# `G-eu` on abuse_pub. Then, per scenario, `abuse.py SCENARIO --work DIR`
# starts a gateway of its own (config and log in DIR/SCENARIO/), attacks it,
# samples its VmRSS every 20 ms for the peak, and stops it:
#
#   unread-echo         500 unauthenticated connections pipeline ECHO 16 KiB
#                       and never read (write_timeout 2s, auth_timeout 300s so
#                       that only write_timeout can close them): all closed,
#                       RSS growth < 300 MiB, a fresh client gets +PONG.
#                       Connections whose every byte the gateway took (replies
#                       all in kernel buffers, no write pending) are attacked
#                       again, up to 5 rounds
#   unread-hello        max_connections 50, 50 connections pipeline HELLO 3
#                       and never read (auth_timeout 300s): a real client gets
#                       a slot within write_timeout (5s) + 10 s
#   unfinished-auth     500 x `AUTH $1000000` + 10,000 bytes: each gets the
#                       unauthenticated bulk length error and is closed, RSS
#                       growth < 50 MiB
#   unfinished-request  500 x an unfinished 15 KB ECHO, auth_timeout 3s: each
#                       gets `-ERR auth timeout` and is closed, growth < 100 MiB
#   frozen-broker       Kafka SIGSTOPped, 40 publishers pipeline 900 KB SETs
#                       and never read: growth < 700 MiB, the gateway lives,
#                       after SIGCONT a fresh SET gets +OK within 60 s
#   color-hijack        a color that would join another app's consumer group,
#                       and invalid colors: the exact refusals, 100 each
#   subscribers         max_subscribers 200, 250 subscribers AUTH: 200 +OK,
#                       50 `-ERR max number of subscribers reached`
#   descriptors         refuses to start under RLIMIT_NOFILE 1024 with
#                       max_connections 10000; out of descriptors at run time,
#                       300 new clients are each answered, none hangs
#
# Each prints PASS/FAIL lines and a REPORT line; the summary table gathers
# them. Exit status 1 if any verdict is FAIL. The work directory is removed
# on success (unless --keep) and kept with every log on failure.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ALL_SCENARIOS="unread-echo unread-hello unfinished-auth unfinished-request frozen-broker color-hijack subscribers descriptors"
PUB_TOPIC=abuse_pub
SUB_TOPIC=abuse_sub

case "${1:-}" in
"" | --keep) ;;
*) die "usage: $0 [--keep]" ;;
esac
KEEP=0
[[ "${1:-}" == --keep ]] && KEEP=1

SCENARIOS="${ABUSE_SCENARIOS:-$ALL_SCENARIOS}"
seen=" "
for scenario in $SCENARIOS; do
    [[ " $ALL_SCENARIOS " == *" $scenario "* ]] || die "unknown scenario $scenario (scenarios: $ALL_SCENARIOS)"
    [[ "$seen" != *" $scenario "* ]] || die "scenario $scenario is listed twice in ABUSE_SCENARIOS"
    seen+="$scenario "
done

cd "$REPO_ROOT"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/databus-abuse.XXXXXX")"
STATUS=1

# shellcheck disable=SC2317  # invoked from the trap
cleanup() {
    local rc=$? pidfile
    trap - EXIT
    # A gateway left by an interrupted abuse.py (it writes DIR/SCENARIO/*.pid
    # and removes it once the gateway stopped).
    for pidfile in "$WORK"/*/gateway*.pid; do
        if [[ -f "$pidfile" ]]; then stop_pid "$(cat "$pidfile")" databus 20; fi
    done
    # The node frozen by frozen-broker is thawed there, or it could not stop.
    stop_private_stack "$WORK" "$STATUS" "$KEEP" \
        "SCENARIO/gateway*.log, SCENARIO/gateway*.toml, kafka/node-1/server.log, mysql/error.log"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ensure_kafka
if [[ -z "${DATABUS_BIN:-}" ]]; then
    log "cargo build --release --bin databus"
    cargo build --release --quiet --bin databus
    DATABUS_BIN="$REPO_ROOT/target/release/databus"
fi
[[ -x "$DATABUS_BIN" ]] || die "no gateway binary at $DATABUS_BIN"
DATABUS_BIN="$(cd "$(dirname "$DATABUS_BIN")" && pwd)/$(basename "$DATABUS_BIN")"

MYSQL_PORT="$(free_port)"
start_mariadb "$WORK/mysql" "$MYSQL_PORT"
load_schema "$MYSQL_PORT"
start_kafka_cluster "$WORK/kafka" 1

# Only the topics the chosen scenarios use (each creation starts a JVM).
need_pub=0
need_sub=0
for scenario in $SCENARIOS; do
    case "$scenario" in
    unread-hello | frozen-broker | color-hijack | descriptors) need_pub=1 ;;
    subscribers) need_sub=1 ;;
    esac
done
((need_pub == 0)) || create_topic "$KAFKA_BOOTSTRAP" "$PUB_TOPIC" 3 1
((need_sub == 0)) || create_topic "$KAFKA_BOOTSTRAP" "$SUB_TOPIC" 4 1
mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$MYSQL_PORT" -uroot databus_db -e "
    INSERT INTO app (id, app_key, app_secret, cluster) VALUES (2, 'app_b', 'secret_b', 'cluster1');
    INSERT INTO auth (app_id, group_name, operation, topic) VALUES
        (1, 'abuse', 3, '$PUB_TOPIC'),
        (1, 'abuse_sub', 1, '$SUB_TOPIC'),
        (1, 'G', 3, '$PUB_TOPIC'),
        (2, 'G-eu', 3, '$PUB_TOPIC');" \
    || die "could not grant the abuse topics"

cat >"$WORK/abuse.env" <<ENV
DATABUS_BIN=$DATABUS_BIN
MYSQL_PORT=$MYSQL_PORT
KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP
KAFKA_NODE_DIR=$WORK/kafka/node-1
PUB_TOPIC=$PUB_TOPIC
SUB_TOPIC=$SUB_TOPIC
ENV

set +e
: >"$WORK/results.txt"
declare -A verdict=()
for scenario in $SCENARIOS; do
    log "scenario: $scenario"
    (cd "$REPO_ROOT/scripts" && python3 -u abuse.py "$scenario" --work "$WORK") | tee "$WORK/$scenario.out"
    rc="${PIPESTATUS[0]}"
    cat "$WORK/$scenario.out" >>"$WORK/results.txt"
    if [[ "$rc" == 0 ]] && ! grep -q "^FAIL $scenario" "$WORK/$scenario.out" \
        && grep -q "^REPORT $scenario " "$WORK/$scenario.out"; then
        verdict[$scenario]=PASS
    else
        verdict[$scenario]=FAIL
    fi
done
set -e

# bytes -> "12.3 MiB" and the like.
human() {
    awk -v b="$1" 'BEGIN {
        split("B KiB MiB GiB TiB", u, " "); i = 1
        while (b >= 1024 && i < 5) { b /= 1024; i++ }
        printf(i == 1 ? "%d %s" : "%.1f %s", b, u[i]) }'
}

echo
echo "| scenario | connections | sent | peak RSS (MiB) | verdict |"
echo "| --- | ---: | ---: | ---: | --- |"
fail=0
for scenario in $SCENARIOS; do
    read -r _ _ conns sent peak < <(grep "^REPORT $scenario " "$WORK/$scenario.out" | tail -n 1) || true
    if [[ -n "${conns:-}" ]]; then
        echo "| $scenario | $conns | $(human "$sent") | $(awk -v k="$peak" 'BEGIN { printf("%.1f", k / 1024) }') | ${verdict[$scenario]} |"
    else
        echo "| $scenario | ? | ? | ? | ${verdict[$scenario]} |"
    fi
    [[ "${verdict[$scenario]}" == PASS ]] || fail=$((fail + 1))
    conns="" sent="" peak=""
done
pass=$(grep -c '^PASS' "$WORK/results.txt" || true)
failed=$(grep -c '^FAIL' "$WORK/results.txt" || true)
echo
echo "summary: $((${#verdict[@]} - fail)) of ${#verdict[@]} scenarios passed ($pass checks passed, $failed failed)"
if ((fail == 0)); then
    STATUS=0
fi
exit "$STATUS"
