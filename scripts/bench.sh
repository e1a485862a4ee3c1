#!/usr/bin/env bash
# End-to-end benchmark: the gateway against its baselines on the same machine
# and the same broker.
#
#   scripts/bench.sh [--quick]
#
# Starts a private stack (MariaDB + tansu on free ports, topics with 6
# partitions), a release build of databus and a local redis-server, then runs
# benches/loadgen.rs (`cargo bench --bench loadgen`) side by side:
#
#   produce : SET through the gateway      vs an rdkafka producer with the
#             gateway's settings (C connections/tasks, P in flight each,
#             S-byte values, T seconds per side in two halves, ABBA order),
#             plus latency at a fixed rate
#   consume : MGET pb + commit through the gateway (K subscribers of one
#             group) vs K rdkafka consumers, draining M preloaded records
#   ping    : pipelined PING to the gateway vs to redis-server (loadgen and
#             redis-benchmark -t ping -P 64 -c C)
#
# Prints one markdown table, then `ratio <name> <value>` lines. Defaults:
# C=50 P=64 S=100 T=20 s. --quick (CI smoke) uses T=2 s, fewer connections
# and a small M: well under a minute after the builds. Everything started
# here is stopped on exit; logs stay in the work directory on failure.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

QUICK=0
for arg in "$@"; do
    case "$arg" in
    --quick) QUICK=1 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument $arg (usage: $0 [--quick])" ;;
    esac
done

if ((QUICK)); then
    C=8 P=64 S=100 T=2 PING_T=2 RATE_T=2 RATE=2000 K=2 M=20000 PING_N=200000 CONSUME_TIMEOUT=60
else
    C=50 P=64 S=100 T=20 PING_T=10 RATE_T=10 RATE=10000 K=4 M=500000 PING_N=5000000 CONSUME_TIMEOUT=180
fi
PARTITIONS=6

"$REPO_ROOT/scripts/setup.sh"
ensure_apt_packages redis-server redis-tools

# Build first, so the services do not sit idle meanwhile.
log "cargo build --release"
cargo build --release || die "cargo build --release failed"
log "cargo bench --bench loadgen --no-run"
LOADGEN="$(cargo bench --bench loadgen --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "loadgen" and m.get("executable"):
        print(m["executable"])
')" || true
[[ -n "$LOADGEN" && -x "$LOADGEN" ]] || {
    cargo bench --bench loadgen --no-run >&2 || true
    die "could not build the loadgen bench"
}
DATABUS="$REPO_ROOT/target/release/databus"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/databus-bench.XXXXXX")"
FAILED=0
# shellcheck disable=SC2317  # invoked from the trap
on_exit() {
    local rc=$?
    trap - EXIT
    stop_all
    if [[ "$rc" == 0 && "$FAILED" == 0 ]]; then
        rm -rf "$WORK"
    else
        log "logs kept in $WORK"
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- stack

mysql_port="$(free_port)"
start_mariadb "$WORK/mysql" "$mysql_port"
load_schema "$mysql_port"

kafka_port="$(free_port)"
[[ "$kafka_port" != "$mysql_port" ]] || kafka_port="$(free_port)"
start_tansu "$kafka_port" "$WORK/tansu.log"
BROKERS="127.0.0.1:$kafka_port"

# Separate topics, so that neither side writes into a log the other filled.
TOPIC_GW=bench_produce_gateway
TOPIC_DIRECT=bench_produce_direct
TOPIC_CONSUME=bench_consume
for t in "$TOPIC_GW" "$TOPIC_DIRECT" "$TOPIC_CONSUME"; do
    create_topic "$kafka_port" "$t" "$PARTITIONS"
done
# Grants are loaded at the gateway's start: insert them before.
mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$mysql_port" -uroot databus_db -e "
    INSERT INTO auth (app_id, group_name, operation, topic) VALUES
        (1, 'group_name1', 3, '$TOPIC_GW'),
        (1, 'group_name1', 3, '$TOPIC_CONSUME');" \
    || die "could not grant the bench topics"

gw_port="$(free_port)"
cat >"$WORK/databus.toml" <<TOML
[server]
addr = "127.0.0.1:$gw_port"

[auth]
mysql_url = "mysql://root@127.0.0.1:$mysql_port/databus_db"

[clusters.cluster1]
brokers = "$BROKERS"
auto_offset_reset = "earliest"

[consumer]
session_timeout = "6s"   # as loadgen's consume-direct

[metrics]
addr = ""
TOML
log "starting databus on 127.0.0.1:$gw_port (log: $WORK/databus.log)"
RUST_LOG="info,librdkafka=warn,rdkafka=warn" NO_COLOR=1 \
    "$DATABUS" --config "$WORK/databus.toml" </dev/null >"$WORK/databus.log" 2>&1 &
register_pid $! databus
gw_pid=$!
for ((i = 0; i < 60; i++)); do
    grep -q "databus ready on" "$WORK/databus.log" && break
    pid_alive "$gw_pid" databus || {
        tail -n 30 "$WORK/databus.log" >&2
        die "databus exited during start-up"
    }
    sleep 0.5
done
((i < 60)) || {
    tail -n 30 "$WORK/databus.log" >&2
    die "databus not ready within 30 s"
}
GW="127.0.0.1:$gw_port"

redis_port="$(free_port)"
log "starting redis-server on 127.0.0.1:$redis_port"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    </dev/null >"$WORK/redis.log" 2>&1 &
register_pid $! redis-server
for ((i = 0; i < 40; i++)); do
    port_accepts "$redis_port" && break
    sleep 0.25
done
((i < 40)) || die "redis-server did not start (log: $WORK/redis.log)"

DSN_PUB="app_key1:app_secret1@group_name1/topic=$TOPIC_GW&role=pub"
DSN_SUB="app_key1:app_secret1@group_name1/topic=$TOPIC_CONSUME&role=sub"

# ---------------------------------------------------------------- runs

# loadgen VAR MODE ARGS...: runs a mode (time-bounded), stores its result
# line in VAR ("" on failure, which fails the script at the end).
loadgen() {
    local var="$1" mode="$2" out
    shift 2
    log "loadgen $mode $*"
    if out="$(timeout 600 "$LOADGEN" "$mode" "$@" 2>>"$WORK/loadgen.log")"; then
        out="$(grep '^result ' <<<"$out" | tail -n 1)"
        log "$out"
    else
        log "loadgen $mode failed: $(tail -n 3 "$WORK/loadgen.log" | tr '\n' ' ')"
        out=""
        FAILED=1
    fi
    printf -v "$var" '%s' "$out"
}

# redis_bench VAR PORT [PASSWORD]: PING_MBULK requests/s of redis-benchmark,
# or "". redis-benchmark 7 starts with CONFIG GET and gives up on the
# gateway's -NOAUTH, so the gateway needs -a (AUTH with a publisher DSN).
redis_bench() {
    local var="$1" port="$2" out auth=()
    [[ -z "${3:-}" ]] || auth=(-a "$3")
    log "redis-benchmark -p $port ${auth[*]} -t ping -P $P -c $C -n $PING_N -q"
    out="$(timeout 300 redis-benchmark -h 127.0.0.1 -p "$port" "${auth[@]}" -t ping -P "$P" -c "$C" -n "$PING_N" -q 2>&1 \
        | tr '\r' '\n' | grep -E '^PING_MBULK: [0-9.]+ requests per second' | tail -n 1)" || true
    log "${out:-redis-benchmark failed}"
    out="$(sed -nE 's/^PING_MBULK: ([0-9.]+) requests per second.*/\1/p' <<<"$out")"
    printf -v "$var" '%s' "${out%%.*}"
}

# tansu (memory storage) gets slower as it holds more records: a fetch
# after a few hundred thousand records elsewhere is ~10x slower, produce a
# few % per 100k. So the consume comparison runs first, on a nearly empty
# broker, and the saturated produce runs go in ABBA order (gateway, direct,
# direct, gateway; T/2 seconds each), so both sides see the same average
# broker state.
loadgen PRELOAD preload --brokers "$BROKERS" --topic "$TOPIC_CONSUME" -m "$M" -s "$S"
loadgen CONS_GW consume-gateway --addr "$GW" --dsn "$DSN_SUB" -k "$K" -m "$M" --timeout "$CONSUME_TIMEOUT"
loadgen CONS_DIRECT consume-direct --brokers "$BROKERS" --topic "$TOPIC_CONSUME" -k "$K" -m "$M" --timeout "$CONSUME_TIMEOUT"

loadgen RATE_GW produce-gateway --addr "$GW" --dsn "$DSN_PUB" -c "$C" -p "$P" -s "$S" -t "$RATE_T" --rate "$RATE"
loadgen RATE_DIRECT produce-direct --brokers "$BROKERS" --topic "$TOPIC_DIRECT" -c "$C" -p "$P" -s "$S" -t "$RATE_T" --rate "$RATE"

PROD_GW1="" PROD_GW2="" PROD_DIRECT1="" PROD_DIRECT2=""
HALF_T="$(awk -v t="$T" 'BEGIN { printf "%g", t / 2 }')"
loadgen PROD_GW1 produce-gateway --addr "$GW" --dsn "$DSN_PUB" -c "$C" -p "$P" -s "$S" -t "$HALF_T"
loadgen PROD_DIRECT1 produce-direct --brokers "$BROKERS" --topic "$TOPIC_DIRECT" -c "$C" -p "$P" -s "$S" -t "$HALF_T"
loadgen PROD_DIRECT2 produce-direct --brokers "$BROKERS" --topic "$TOPIC_DIRECT" -c "$C" -p "$P" -s "$S" -t "$HALF_T"
loadgen PROD_GW2 produce-gateway --addr "$GW" --dsn "$DSN_PUB" -c "$C" -p "$P" -s "$S" -t "$HALF_T"

loadgen PING_GW ping-gateway --addr "$GW" --dsn "$DSN_PUB" -c "$C" -p "$P" -t "$PING_T"
loadgen PING_REDIS ping-gateway --addr "127.0.0.1:$redis_port" -c "$C" -p "$P" -t "$PING_T"
redis_bench RB_REDIS "$redis_port"
redis_bench RB_GW "$gw_port" "$DSN_PUB"

# ---------------------------------------------------------------- report

# field LINE KEY: the value of key=value in a result line, or "n/a".
field() {
    local v
    v="$(tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p" | head -n 1)"
    echo "${v:-n/a}"
}
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.3f", a / b; else printf "n/a" }'
}
ms() { awk -v u="$1" 'BEGIN { if (u ~ /^[0-9]+$/) printf "%.2f", u / 1000; else printf "n/a" }'; }
lat() { echo "$(ms "$(field "$1" p50_us)") / $(ms "$(field "$1" p99_us)") / $(ms "$(field "$1" p999_us)")"; }
row() { printf '| %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4"; }
row3() { row "$1" "$(field "$2" "$4")" "$(field "$3" "$4")" "$(ratio "$(field "$2" "$4")" "$(field "$3" "$4")")"; }

# merge LINE1 LINE2: one result line for two runs of a produce mode: sums of
# messages, time and errors; latency percentiles are the mean of the two
# runs' (equal-length runs; an approximation).
merge() {
    [[ -n "$1" && -n "$2" ]] || return 0
    awk -v a="$1" -v b="$2" -v size="$S" 'BEGIN {
        n = split(a, fa, " "); for (i = 1; i <= n; i++) { split(fa[i], kv, "="); A[kv[1]] = kv[2] }
        n = split(b, fb, " "); for (i = 1; i <= n; i++) { split(fb[i], kv, "="); B[kv[1]] = kv[2] }
        msgs = A["msgs"] + B["msgs"]; secs = A["secs"] + B["secs"]
        printf "result mode=%s msgs=%d secs=%.2f msgs_per_s=%.0f mb_per_s=%.2f p50_us=%.0f p99_us=%.0f p999_us=%.0f errors=%d\n",
            A["mode"], msgs, secs, msgs / secs, msgs * size / secs / 1e6,
            (A["p50_us"] + B["p50_us"]) / 2, (A["p99_us"] + B["p99_us"]) / 2,
            (A["p999_us"] + B["p999_us"]) / 2, A["errors"] + B["errors"] }'
}
PROD_GW="$(merge "$PROD_GW1" "$PROD_GW2")"
PROD_DIRECT="$(merge "$PROD_DIRECT1" "$PROD_DIRECT2")"

RATIO_PRODUCE="$(ratio "$(field "$PROD_GW" msgs_per_s)" "$(field "$PROD_DIRECT" msgs_per_s)")"
RATIO_CONSUME="$(ratio "$(field "$CONS_GW" msgs_per_s)" "$(field "$CONS_DIRECT" msgs_per_s)")"
if [[ -n "$RB_GW" && -n "$RB_REDIS" ]]; then
    RATIO_PING="$(ratio "$RB_GW" "$RB_REDIS")"
    PING_BASIS="redis-benchmark on both"
else
    RATIO_PING="$(ratio "$(field "$PING_GW" msgs_per_s)" "$(field "$PING_REDIS" msgs_per_s)")"
    PING_BASIS="loadgen on both"
fi

{
    echo
    echo "databus end-to-end benchmark ($( ((QUICK)) && echo quick || echo full)): $(nproc) CPUs, tansu $TANSU_VERSION, topics with $PARTITIONS partitions"
    echo
    row "measurement" "gateway" "baseline" "gateway/baseline"
    row "---" "---:" "---:" "---:"
    row3 "produce msgs/s (C=$C P=$P S=$S T=2x${HALF_T}s ABBA; baseline rdkafka)" "$PROD_GW" "$PROD_DIRECT" msgs_per_s
    row3 "produce MB/s (values)" "$PROD_GW" "$PROD_DIRECT" mb_per_s
    row "produce latency p50 / p99 / p99.9 ms, saturated (mean of 2 runs)" "$(lat "$PROD_GW")" "$(lat "$PROD_DIRECT")" \
        "$(ratio "$(field "$PROD_GW" p99_us)" "$(field "$PROD_DIRECT" p99_us)") (p99)"
    row "produce latency p50 / p99 / p99.9 ms at $RATE msgs/s (T=${RATE_T}s)" "$(lat "$RATE_GW")" "$(lat "$RATE_DIRECT")" \
        "$(ratio "$(field "$RATE_GW" p99_us)" "$(field "$RATE_DIRECT" p99_us)") (p99)"
    row "produce errors (saturated + fixed rate)" \
        "$(field "$PROD_GW" errors) + $(field "$RATE_GW" errors)" "$(field "$PROD_DIRECT" errors) + $(field "$RATE_DIRECT" errors)" ""
    row3 "consume msgs/s (K=$K M=$M; first MGET/poll → M distinct)" "$CONS_GW" "$CONS_DIRECT" msgs_per_s
    row3 "consume msgs/s after the first message" "$CONS_GW" "$CONS_DIRECT" steady_msgs_per_s
    row3 "consume: ms to the first message (group join)" "$CONS_GW" "$CONS_DIRECT" first_msg_ms
    row3 "consume: delivered (incl. redeliveries)" "$CONS_GW" "$CONS_DIRECT" delivered
    row3 "ping msgs/s, loadgen (C=$C P=$P T=${PING_T}s; gateway after AUTH; baseline redis-server)" "$PING_GW" "$PING_REDIS" msgs_per_s
    row "ping msgs/s, redis-benchmark -t ping -P $P -c $C -n $PING_N (PING_MBULK; gateway with -a DSN)" "${RB_GW:-n/a}" "${RB_REDIS:-n/a}" "$(ratio "${RB_GW:-x}" "${RB_REDIS:-x}")"
    echo
    echo "preload: $(field "$PRELOAD" msgs) records at $(field "$PRELOAD" msgs_per_s) msgs/s (direct)"
    echo "ping ratio basis: $PING_BASIS"
    echo
    echo "ratio gateway/direct-produce $RATIO_PRODUCE"
    echo "ratio gateway/direct-consume $RATIO_CONSUME"
    echo "ratio gateway/redis-server-ping $RATIO_PING"
}

if ((FAILED)); then
    die "some runs failed (see $WORK/loadgen.log)"
fi
