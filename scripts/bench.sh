#!/usr/bin/env bash
# End-to-end benchmark: the gateway against its baselines on the same machine
# and the same broker, in one run.
#
#   scripts/bench.sh [--quick | --smoke] [--broker kafka|mock|both]
#
# Starts a private MariaDB, the broker(s), release builds of databus and of
# benches/loadgen/, and a local redis-server, then runs side by side:
#
#   produce : SET through the gateway      vs an rdkafka producer with the
#             gateway's settings (C connections/tasks, P in flight each,
#             S-byte values, T seconds per side in two halves, ABBA order),
#             plus latency at a fixed rate (1,000 msgs/s)
#   sync    : SET one at a time: 50 connections, each sending its next SET
#             when the last was answered (redis-cli's and most applications'
#             way) vs 50 rdkafka tasks each awaiting its delivery before the
#             next record, with the gateway's producer settings (ABBA)
#   consume : MGET pb + commit through the gateway (K subscribers of one
#             group) vs K rdkafka consumers, draining M preloaded records
#   scale   : produce through a 1-shard gateway vs one with a shard per CPU,
#             and with a producer per shard vs one shared by the shards
#   ping    : pipelined PING to the gateway vs to redis-server (loadgen and
#             redis-benchmark -t ping -P P -c C)
#   idle    : RSS per idle authenticated connection (N held), gateway and
#             redis-server; and what an idle subscriber costs (SUBS held,
#             each in a group of its own): RSS, threads, descriptors and
#             broker connections each, the gateway's and the broker's CPU
#   stall   : subscribers' MGET and /healthz latency while 100,000 apps and
#             200,000 grants refresh every 2 s (rows unchanged, then one
#             changing each second) vs the same gateway not refreshing
#   parser  : benches/parser.rs (criterion), databus vs redis-protocol
#
# The broker is Apache Kafka (one node, scripts/lib/kafka.sh), the librdkafka
# mock cluster (a MockCluster held by `loadgen mock-broker`, so the gateway's
# own cost shows where the broker is the bottleneck), or both (the default):
# the Kafka rows are reported per broker.
#
# Prints one markdown table, then `ratio <name> <value>` lines (the Kafka
# ratios per broker, e.g. `ratio gateway/direct-produce@mock 0.97`).
# Defaults (full): C=50 P=64 S=100 T=20 s, K=4, M=500,000, N=10,000.
# --quick: a few seconds per run, smaller M and N (~3 minutes after builds).
# --smoke: what CI runs to keep this script working: mock broker only, about a
# second per run; its figures mean nothing.
# BENCH_KAFKA="linger.ms=1 ..." gives both sides the same librdkafka
# properties (the gateway's [clusters.cluster1.kafka], the direct producer's
# --kafka): how a setting is measured before it becomes a default.
# Everything started here is stopped on exit; logs stay in the work
# directory on failure.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

MODE=full
BROKERS_WANTED=""
while (($#)); do
    case "$1" in
    --quick) MODE=quick ;;
    --smoke) MODE=smoke ;;
    --broker)
        shift
        BROKERS_WANTED="${1:-}"
        ;;
    --broker=*) BROKERS_WANTED="${1#--broker=}" ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument $1 (usage: $0 [--quick|--smoke] [--broker kafka|mock|both])" ;;
    esac
    shift
done
case "${BROKERS_WANTED:-default}" in
default) if [[ "$MODE" == smoke ]]; then BROKERS=(mock); else BROKERS=(kafka mock); fi ;;
both) BROKERS=(kafka mock) ;;
kafka | mock) BROKERS=("$BROKERS_WANTED") ;;
*) die "--broker takes kafka, mock or both, not '$BROKERS_WANTED'" ;;
esac

case "$MODE" in
full) C=50 P=64 S=100 T=20 SCALE_T=10 PING_T=10 RATE_T=10 K=4 M=500000 PING_N=5000000 IDLE=10000 SUBS=1000 CONSUME_TIMEOUT=180 ;;
quick) C=8 P=64 S=100 T=4 SCALE_T=2 PING_T=2 RATE_T=3 K=2 M=50000 PING_N=500000 IDLE=2000 SUBS=200 CONSUME_TIMEOUT=60 ;;
smoke) C=4 P=16 S=100 T=1 SCALE_T=1 PING_T=1 RATE_T=1 K=1 M=2000 PING_N=20000 IDLE=100 SUBS=10 CONSUME_TIMEOUT=60 ;;
esac
RATE=1000
KAFKA_ARGS=() KAFKA_TOML=""
for kv in ${BENCH_KAFKA:-}; do
    [[ "$kv" == *=* ]] || die "BENCH_KAFKA takes key=value words, not '$kv'"
    KAFKA_ARGS+=(--kafka "$kv")
    KAFKA_TOML+="\"${kv%%=*}\" = \"${kv#*=}\""$'\n'
done
# The one-in-flight row always runs 50 connections: what issue #13 compares.
SYNC_C=50
PARTITIONS=6
SHARDS="$(nproc)"
# Idle connections are held this long; the RSS is read while they are.
IDLE_HOLD=3
# Idle subscribers: figures are read SUB_SETTLE s after the last AUTH (their
# groups joined), CPU over the SUB_CPU_S s after that. Each subscriber is a
# librdkafka consumer with about 9 descriptors: the full run's 1,000 stays
# under this machine's RLIMIT_NOFILE hard limit (20,000); 2,000 would not.
SUB_SETTLE=8 SUB_CPU_S=5
# Stall: apps and grants in MySQL, seconds per phase, MGETs a second.
STALL_APPS=100000 STALL_GRANTS=200000 STALL_T=20 STALL_RATE=40
case "$MODE" in
quick) STALL_T=8 ;;
smoke) STALL_APPS=1000 STALL_GRANTS=2000 STALL_T=1 ;;
esac
if [[ "$MODE" == smoke ]]; then
    SUB_SETTLE=2 SUB_CPU_S=1
fi

"$REPO_ROOT/scripts/setup.sh"
ensure_apt_packages redis-server redis-tools

# 10,000 connections need as many descriptors in the gateway and in loadgen.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(($(ulimit -n) > IDLE + 1000)) || die "RLIMIT_NOFILE $(ulimit -n) is too low for $IDLE connections"

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

# ---------------------------------------------------------------- helpers

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

# start_gateway NAME BROKERS SHARDS [PRODUCERS [MAX_CONNECTIONS MAX_SUBSCRIBERS]]:
# a databus on a free port; sets GW_ADDR, GW_PORT and GW_PID.
start_gateway() {
    local name="$1" brokers="$2" shards="$3" producers="${4:-shared}" i
    local max_conns="${5:-$((IDLE + 1000))}" max_subs="${6:-100}"
    GW_PORT="$(free_port)"
    cat >"$WORK/$name.toml" <<TOML
[server]
addr = "127.0.0.1:$GW_PORT"
shards = $shards
producers = "$producers"
max_connections = $max_conns
max_subscribers = $max_subs

[auth]
mysql_url = "mysql://root@127.0.0.1:$mysql_port/databus_db"
refresh_interval = "${GW_REFRESH:-60s}"

[clusters.cluster1]
brokers = "$brokers"
auto_offset_reset = "earliest"

[clusters.cluster1.kafka]
$KAFKA_TOML

[consumer]
session_timeout = "6s"   # as loadgen's consume-direct
${GW_CONSUMER:-}

[metrics]
addr = "${GW_METRICS:-}"
TOML
    log "starting databus $name ($shards shards) on 127.0.0.1:$GW_PORT (log: $WORK/$name.log)"
    RUST_LOG="info,librdkafka=warn,rdkafka=warn" NO_COLOR=1 \
        "$DATABUS" --config "$WORK/$name.toml" </dev/null >"$WORK/$name.log" 2>&1 &
    GW_PID=$!
    register_pid "$GW_PID" databus
    for ((i = 0; i < 60; i++)); do
        grep -q "databus ready on" "$WORK/$name.log" && break
        pid_alive "$GW_PID" databus || {
            tail -n 30 "$WORK/$name.log" >&2
            die "databus $name exited during start-up"
        }
        sleep 0.5
    done
    ((i < 60)) || {
        tail -n 30 "$WORK/$name.log" >&2
        die "databus $name not ready within 30 s"
    }
    GW_ADDR="127.0.0.1:$GW_PORT"
}

# start_broker NAME: a single Kafka node on free ports or the mock cluster,
# with the bench topics; sets BROKER_ADDR.
start_broker() {
    local i t
    case "$1" in
    kafka)
        start_kafka_cluster "$WORK/kafka" 1
        for t in "$TOPIC_GW" "$TOPIC_DIRECT" "$TOPIC_CONSUME" "$TOPIC_STALL"; do
            create_topic "$KAFKA_BOOTSTRAP" "$t" "$PARTITIONS" 1
        done
        BROKER_ADDR="$KAFKA_BOOTSTRAP"
        BROKER_PROC="$KAFKA_PID"
        ;;
    mock)
        log "starting the mock cluster (loadgen mock-broker)"
        "$LOADGEN" mock-broker --topic "$TOPIC_GW,$TOPIC_DIRECT,$TOPIC_CONSUME,$TOPIC_STALL" --partitions "$PARTITIONS" \
            </dev/null >"$WORK/mock.out" 2>"$WORK/mock.log" &
        BROKER_PID=$!
        register_pid "$BROKER_PID" loadgen
        for ((i = 0; i < 100; i++)); do
            BROKER_ADDR="$(sed -n 's/^bootstrap=//p' "$WORK/mock.out")"
            [[ -z "$BROKER_ADDR" ]] || break
            pid_alive "$BROKER_PID" loadgen || die "mock-broker exited: $(cat "$WORK/mock.log")"
            sleep 0.1
        done
        [[ -n "$BROKER_ADDR" ]] || die "mock-broker printed no bootstrap address"
        BROKER_PROC="$BROKER_PID"
        ;;
    esac
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

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# proc_figures PID: "RSS_KiB THREADS FDS" of a process.
proc_figures() {
    echo "$(rss_kib "$1") $(awk '/^Threads:/ { print $2 }' "/proc/$1/status") $(find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l)"
}

# stall_runs: the "no stall" comparison (issue #13) on the current broker.
# Fills MySQL with STALL_APPS apps and STALL_GRANTS grants, preloads a topic,
# then measures 2 subscribers' paced MGETs (10-record batches, so that the
# topic lasts) and /healthz on three gateways in turn: refreshing hourly
# (idle), every 2 s with rows unchanged, every 2 s with a secret changing
# every second (a new snapshot each refresh).
stall_runs() {
    local v changer dsn="app_key1:app_secret1@stall_group/topic=$TOPIC_STALL&role=sub" metrics
    # Seen by start_gateway (dynamic scope), gone after this function.
    local GW_REFRESH
    log "MySQL: $STALL_APPS apps and $STALL_GRANTS grants"
    mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$mysql_port" -uroot databus_db -e "
        INSERT INTO app (app_key, app_secret, cluster)
            SELECT CONCAT('stall', seq), CONCAT('sha256:', SHA2(CONCAT('s', seq), 256)), 'cluster1'
            FROM seq_1_to_$STALL_APPS;
        INSERT INTO auth (app_id, group_name, operation, topic)
            SELECT 2 + seq % $STALL_APPS, CONCAT('sg', seq), 3, CONCAT('st', seq % 1000)
            FROM seq_1_to_$STALL_GRANTS;" || die "could not fill the stall tables"
    loadgen v preload --brokers "$BROKER_ADDR" --topic "$TOPIC_STALL" "${KAFKA_ARGS[@]}" \
        -m $((STALL_RATE * 10 * STALL_T * 4 + 10000)) -s "$S"
    for phase in idle unchanged changing; do
        metrics="127.0.0.1:$(free_port)"
        case "$phase" in idle) GW_REFRESH=3600s ;; *) GW_REFRESH=2s ;; esac
        GW_CONSUMER="batch = 10" GW_METRICS="$metrics" start_gateway "stall-$phase" "$BROKER_ADDR" "$SHARDS"
        changer=""
        if [[ "$phase" == changing ]]; then
            while :; do
                mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$mysql_port" -uroot databus_db \
                    -e "UPDATE app SET app_secret = CONCAT('sha256:', SHA2(RAND(), 256)) WHERE id = 2" || true
                sleep 1
            done &
            changer=$!
        fi
        loadgen v mget-latency --addr "$GW_ADDR" --dsn "$dsn" --http "$metrics" -k 2 -t "$STALL_T" --rate "$STALL_RATE"
        R[stall_$phase]="$v"
        [[ -z "$changer" ]] || { kill "$changer" 2>/dev/null; wait "$changer" 2>/dev/null || true; }
        stop_pid "$GW_PID" databus 30
    done
    # The gateways of later runs load the seed's rows only.
    mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$mysql_port" -uroot databus_db -e "
        DELETE FROM auth WHERE group_name LIKE 'sg%'; DELETE FROM app WHERE app_key LIKE 'stall%';" \
        || die "could not empty the stall tables"
}

# broker_conns PID: the process's TCP connections to the broker's ports.
broker_conns() {
    local pid="$1" n=0 hp c
    for hp in ${BROKER_ADDR//,/ }; do
        c="$(ss -Htnp state established "( dport = :${hp##*:} )" 2>/dev/null | grep -c "pid=$pid," || true)"
        n=$((n + ${c:-0}))
    done
    echo "$n"
}

# idle_subscribers VAR: SUBS idle subscribers, each in a group of its own
# (a color each), on a gateway of their own. Sets VAR to "RSS_BYTES THREADS
# FDS BROKER_CONNS" per subscriber, then the gateway's and the broker's CPU
# (% of a core) while they are held; "" on failure.
idle_subscribers() {
    local var="$1" gw_pid f0 f1 lpid i c0 c1 k0 k1 hz
    hz="$(getconf CLK_TCK)"
    start_gateway "subscribers" "$BROKER_ADDR" "$SHARDS" shared $((SUBS + 100)) $((SUBS + 10))
    gw_pid="$GW_PID"
    f0="$(proc_figures "$gw_pid")"
    log "loadgen idle-conns --addr $GW_ADDR -c $SUBS subscribers, a group each (before: $f0)"
    "$LOADGEN" idle-conns --addr "$GW_ADDR" --dsn "$DSN_IDLE_SUB" -c "$SUBS" -t $((SUB_SETTLE + SUB_CPU_S + 2)) \
        </dev/null >"$WORK/subs.out" 2>>"$WORK/loadgen.log" &
    lpid=$!
    for ((i = 0; i < 1200; i++)); do
        grep -q '^ready ' "$WORK/subs.out" && break
        kill -0 "$lpid" 2>/dev/null || break
        sleep 0.1
    done
    sleep "$SUB_SETTLE"
    f1="$(proc_figures "$gw_pid") $(broker_conns "$gw_pid")"
    c0="$(cpu_ticks "$gw_pid")" k0="$(cpu_ticks "$BROKER_PROC")"
    sleep "$SUB_CPU_S"
    c1="$(cpu_ticks "$gw_pid")" k1="$(cpu_ticks "$BROKER_PROC")"
    if wait "$lpid" && grep -q '^result ' "$WORK/subs.out"; then
        log "idle subscribers held: $f1 (RSS KiB, threads, fds, broker connections)"
        printf -v "$var" '%s' "$(awk -v a="$f0" -v b="$f1" -v n="$SUBS" -v c="$((c1 - c0))" -v k="$((k1 - k0))" \
            -v hz="$hz" -v s="$SUB_CPU_S" 'BEGIN {
            split(a, x, " "); split(b, y, " ")
            printf "%.0f %.2f %.2f %.2f %.1f %.1f", (y[1] - x[1]) * 1024 / n, (y[2] - x[2]) / n,
                (y[3] - x[3]) / n, y[4] / n, c * 100 / hz / s, k * 100 / hz / s }')"
    else
        log "idle subscribers failed: $(tail -n 3 "$WORK/loadgen.log" | tr '\n' ' ')"
        FAILED=1
        printf -v "$var" '%s' ""
    fi
    stop_pid "$gw_pid" databus 30
}

# idle_rss VAR PID ADDR [DSN]: bytes of the server's RSS per idle connection
# (authenticated with DSN), from its RSS before and while loadgen holds IDLE
# of them; "" on failure.
idle_rss() {
    local var="$1" pid="$2" addr="$3" dsn="${4:-}" before after lpid result i
    before="$(rss_kib "$pid")"
    log "loadgen idle-conns --addr $addr -c $IDLE (RSS before: $before KiB)"
    "$LOADGEN" idle-conns --addr "$addr" ${dsn:+--dsn "$dsn"} -c "$IDLE" -t "$IDLE_HOLD" \
        </dev/null >"$WORK/idle.out" 2>>"$WORK/loadgen.log" &
    lpid=$!
    for ((i = 0; i < 1200; i++)); do
        grep -q '^ready ' "$WORK/idle.out" && break
        kill -0 "$lpid" 2>/dev/null || break
        sleep 0.1
    done
    after="$(rss_kib "$pid")"
    if wait "$lpid" && result="$(grep '^result ' "$WORK/idle.out")"; then
        log "$result (RSS while held: $after KiB)"
        printf -v "$var" '%s' "$(((after - before) * 1024 / IDLE))"
    else
        log "idle-conns failed: $(tail -n 3 "$WORK/loadgen.log" | tr '\n' ' ')"
        FAILED=1
        printf -v "$var" '%s' ""
    fi
}

# ---------------------------------------------------------------- stack

mysql_port="$(free_port)"
start_mariadb "$WORK/mysql" "$mysql_port"
load_schema "$mysql_port"

# Separate topics, so that neither side writes into a log the other filled.
TOPIC_GW=bench_produce_gateway
TOPIC_DIRECT=bench_produce_direct
TOPIC_CONSUME=bench_consume
TOPIC_STALL=bench_stall
# Grants are loaded at the gateway's start: insert them before.
mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$mysql_port" -uroot databus_db -e "
    INSERT INTO auth (app_id, group_name, operation, topic) VALUES
        (1, 'group_name1', 3, '$TOPIC_GW'),
        (1, 'group_name1', 3, '$TOPIC_CONSUME'),
        (1, 'idle_subs', 1, '$TOPIC_CONSUME'),
        (1, 'stall_group', 1, '$TOPIC_STALL');" \
    || die "could not grant the bench topics"
DSN_PUB="app_key1:app_secret1@group_name1/topic=$TOPIC_GW&role=pub"
DSN_SUB="app_key1:app_secret1@group_name1/topic=$TOPIC_CONSUME&role=sub"
# A color per connection ({n}: loadgen's connection number), so a group each.
DSN_IDLE_SUB="app_key1:app_secret1@idle_subs/topic=$TOPIC_CONSUME&role=sub&color=c{n}"

redis_port="$(free_port)"
log "starting redis-server on 127.0.0.1:$redis_port"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --maxclients $((IDLE + 1000)) \
    </dev/null >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
register_pid "$REDIS_PID" redis-server
for ((i = 0; i < 40; i++)); do
    port_accepts "$redis_port" && break
    sleep 0.25
done
((i < 40)) || die "redis-server did not start (log: $WORK/redis.log)"

# ---------------------------------------------------------------- runs

# The front-end measurements need no broker traffic: a gateway of its own,
# started fresh so that the idle-connection RSS is not blurred by what
# earlier runs allocated.
start_broker "${BROKERS[0]}"
start_gateway frontend "$BROKER_ADDR" "$SHARDS"
idle_rss IDLE_GW "$GW_PID" "$GW_ADDR" "$DSN_PUB"
idle_rss IDLE_REDIS "$REDIS_PID" "127.0.0.1:$redis_port"
loadgen PING_GW ping-gateway --addr "$GW_ADDR" --dsn "$DSN_PUB" -c "$C" -p "$P" -t "$PING_T"
loadgen PING_REDIS ping-gateway --addr "127.0.0.1:$redis_port" -c "$C" -p "$P" -t "$PING_T"
redis_bench RB_REDIS "$redis_port"
redis_bench RB_GW "$GW_PORT" "$DSN_PUB"
stop_pid "$GW_PID" databus 15

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

HALF_T="$(awk -v t="$T" 'BEGIN { printf "%g", t / 2 }')"
HALF_SCALE_T="$(awk -v t="$SCALE_T" 'BEGIN { printf "%g", t / 2 }')"
declare -A R # R[<name>@<broker>] = result line

# kafka_runs BROKER: every measurement that goes through a broker.
kafka_runs() {
    local b="$1" gw gw1 gwp v1 v2 v3 v4 m="$M"
    # The mock cluster keeps about 40,000 records per partition.
    [[ "$b" != mock ]] || ((m <= 200000)) || m=200000
    R[m@$b]="$m"
    [[ "$b" == "${BROKERS[0]}" ]] || start_broker "$b"
    start_gateway "gateway-$b" "$BROKER_ADDR" "$SHARDS"
    gw="$GW_ADDR"
    start_gateway "gateway-1shard-$b" "$BROKER_ADDR" 1
    gw1="$GW_ADDR"
    start_gateway "gateway-per-shard-$b" "$BROKER_ADDR" "$SHARDS" per_shard
    gwp="$GW_ADDR"

    # A broker's speed moves with what it holds (log segments, page cache):
    # the consume comparison runs first, on a nearly empty broker, and the
    # saturated produce runs go in ABBA order (gateway, direct, direct,
    # gateway; T/2 seconds each), so both sides see the same average broker
    # state.
    loadgen v1 preload --brokers "$BROKER_ADDR" --topic "$TOPIC_CONSUME" -m "$m" -s "$S"
    R[preload@$b]="$v1"
    loadgen v1 consume-gateway --addr "$gw" --dsn "$DSN_SUB" -k "$K" -m "$m" --timeout "$CONSUME_TIMEOUT"
    loadgen v2 consume-direct --brokers "$BROKER_ADDR" --topic "$TOPIC_CONSUME" -k "$K" -m "$m" --timeout "$CONSUME_TIMEOUT"
    R[cons_gw@$b]="$v1" R[cons_direct@$b]="$v2"

    loadgen v1 produce-gateway --addr "$gw" --dsn "$DSN_PUB" -c "$C" -p "$P" -s "$S" -t "$RATE_T" --rate "$RATE"
    loadgen v2 produce-direct --brokers "$BROKER_ADDR" --topic "$TOPIC_DIRECT" "${KAFKA_ARGS[@]}" -c "$C" -p "$P" -s "$S" -t "$RATE_T" --rate "$RATE"
    R[rate_gw@$b]="$v1" R[rate_direct@$b]="$v2"

    loadgen v1 produce-gateway --addr "$gw" --dsn "$DSN_PUB" -c "$C" -p "$P" -s "$S" -t "$HALF_T"
    loadgen v2 produce-direct --brokers "$BROKER_ADDR" --topic "$TOPIC_DIRECT" "${KAFKA_ARGS[@]}" -c "$C" -p "$P" -s "$S" -t "$HALF_T"
    loadgen v3 produce-direct --brokers "$BROKER_ADDR" --topic "$TOPIC_DIRECT" "${KAFKA_ARGS[@]}" -c "$C" -p "$P" -s "$S" -t "$HALF_T"
    loadgen v4 produce-gateway --addr "$gw" --dsn "$DSN_PUB" -c "$C" -p "$P" -s "$S" -t "$HALF_T"
    R[prod_gw@$b]="$(merge "$v1" "$v4")" R[prod_direct@$b]="$(merge "$v2" "$v3")"

    loadgen v1 produce-gateway --addr "$gw" --dsn "$DSN_PUB" -c "$SYNC_C" -p 1 -s "$S" -t "$HALF_T"
    loadgen v2 produce-direct --brokers "$BROKER_ADDR" --topic "$TOPIC_DIRECT" "${KAFKA_ARGS[@]}" -c "$SYNC_C" -p 1 -s "$S" -t "$HALF_T"
    loadgen v3 produce-direct --brokers "$BROKER_ADDR" --topic "$TOPIC_DIRECT" "${KAFKA_ARGS[@]}" -c "$SYNC_C" -p 1 -s "$S" -t "$HALF_T"
    loadgen v4 produce-gateway --addr "$gw" --dsn "$DSN_PUB" -c "$SYNC_C" -p 1 -s "$S" -t "$HALF_T"
    R[sync_gw@$b]="$(merge "$v1" "$v4")" R[sync_direct@$b]="$(merge "$v2" "$v3")"

    loadgen v1 produce-gateway --addr "$gw1" --dsn "$DSN_PUB" -c "$C" -p "$P" -s "$S" -t "$HALF_SCALE_T"
    loadgen v2 produce-gateway --addr "$gw" --dsn "$DSN_PUB" -c "$C" -p "$P" -s "$S" -t "$HALF_SCALE_T"
    loadgen v3 produce-gateway --addr "$gw" --dsn "$DSN_PUB" -c "$C" -p "$P" -s "$S" -t "$HALF_SCALE_T"
    loadgen v4 produce-gateway --addr "$gw1" --dsn "$DSN_PUB" -c "$C" -p "$P" -s "$S" -t "$HALF_SCALE_T"
    R[scale1@$b]="$(merge "$v1" "$v4")" R[scale_n@$b]="$(merge "$v2" "$v3")"

    loadgen v1 produce-gateway --addr "$gwp" --dsn "$DSN_PUB" -c "$C" -p "$P" -s "$S" -t "$HALF_SCALE_T"
    loadgen v2 produce-gateway --addr "$gw" --dsn "$DSN_PUB" -c "$C" -p "$P" -s "$S" -t "$HALF_SCALE_T"
    loadgen v3 produce-gateway --addr "$gw" --dsn "$DSN_PUB" -c "$C" -p "$P" -s "$S" -t "$HALF_SCALE_T"
    loadgen v4 produce-gateway --addr "$gwp" --dsn "$DSN_PUB" -c "$C" -p "$P" -s "$S" -t "$HALF_SCALE_T"
    R[per_shard@$b]="$(merge "$v1" "$v4")" R[shared@$b]="$(merge "$v2" "$v3")"

    idle_subscribers v1
    R[subs@$b]="$v1"
    # The stall comparison is about the gateway's threads, not the broker:
    # once, on the first broker.
    [[ "$b" != "${BROKERS[0]}" ]] || stall_runs

    stop_all_of_broker
}

# Stops what kafka_runs started (and the broker): the next broker's runs get
# the machine to themselves. MariaDB and redis-server stay.
stop_all_of_broker() {
    local entry keep=()
    for entry in "${LIB_PIDS[@]}"; do
        case "$entry" in
        *:databus | *:loadgen) stop_pid "${entry%%:*}" "${entry#*:}" 15 ;;
        *:kafka.Kafka*) stop_pid "${entry%%:*}" "${entry#*:}" 60 ;;
        *) keep+=("$entry") ;;
        esac
    done
    LIB_PIDS=("${keep[@]}")
}

for b in "${BROKERS[@]}"; do
    kafka_runs "$b"
done

# The parser micro-benchmark, commands/s on the four SET sizes.
PARSER_ROWS=()
RATIO_PARSER=n/a
if [[ "$MODE" == smoke ]]; then
    log "cargo bench --bench parser -- --test"
    cargo bench --bench parser -- --test >>"$WORK/parser.log" 2>&1 || {
        log "parser bench failed (log: $WORK/parser.log)"
        FAILED=1
    }
else
    criterion_args=()
    [[ "$MODE" == full ]] || criterion_args=(--warm-up-time 0.5 --measurement-time 1)
    log "cargo bench --bench parser -- ${criterion_args[*]} '^set_[^_]+/'"
    if cargo bench --bench parser -- "${criterion_args[@]}" '^set_[^_]+/' >>"$WORK/parser.log" 2>&1; then
        for size in 16B 100B 1KiB 64KiB; do
            # Mean time per iteration (64 commands) → commands/s.
            row_parser="$(python3 - "$REPO_ROOT/target/criterion/set_$size" "$size" <<'PY'
import json, sys
base, size = sys.argv[1], sys.argv[2]
rate = {}
for side in ("databus", "redis-protocol"):
    with open(f"{base}/{side}/new/estimates.json") as f:
        rate[side] = 64e9 / json.load(f)["mean"]["point_estimate"]
print(f"{size} {rate['databus'] / 1e6:.2f} {rate['redis-protocol'] / 1e6:.2f} {rate['databus'] / rate['redis-protocol']:.3f}")
PY
)"
            PARSER_ROWS+=("$row_parser")
            [[ "$size" != 100B ]] || RATIO_PARSER="${row_parser##* }"
        done
    else
        log "parser bench failed (log: $WORK/parser.log)"
        FAILED=1
    fi
fi

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
# p99 (p50) difference in ms, gateway minus baseline.
pct_delta() {
    awk -v a="$(field "$1" "$3")" -v b="$(field "$2" "$3")" 'BEGIN {
        if (a ~ /^[0-9]+$/ && b ~ /^[0-9]+$/) printf "%+.2f ms", (a - b) / 1000; else printf "n/a" }'
}
p99_delta() { pct_delta "$1" "$2" p99_us; }
p50_delta() { pct_delta "$1" "$2" p50_us; }

if [[ -n "$RB_GW" && -n "$RB_REDIS" ]]; then
    RATIO_PING="$(ratio "$RB_GW" "$RB_REDIS")"
    PING_BASIS="redis-benchmark on both"
else
    RATIO_PING="$(ratio "$(field "$PING_GW" msgs_per_s)" "$(field "$PING_REDIS" msgs_per_s)")"
    PING_BASIS="loadgen on both"
fi

{
    echo
    echo "databus end-to-end benchmark ($MODE): $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), brokers: ${BROKERS[*]} (Apache Kafka $KAFKA_VERSION, one node), topics with $PARTITIONS partitions, gateway with $SHARDS shards"
    echo
    row "measurement" "gateway" "baseline" "gateway/baseline"
    row "---" "---:" "---:" "---:"
    for b in "${BROKERS[@]}"; do
        row3 "**$b** produce msgs/s (C=$C P=$P S=$S, 2×${HALF_T}s ABBA; baseline rdkafka)" "${R[prod_gw@$b]}" "${R[prod_direct@$b]}" msgs_per_s
        row3 "$b produce MB/s (values)" "${R[prod_gw@$b]}" "${R[prod_direct@$b]}" mb_per_s
        row "$b produce latency p50 / p99 / p99.9 ms, saturated" "$(lat "${R[prod_gw@$b]}")" "$(lat "${R[prod_direct@$b]}")" \
            "$(p99_delta "${R[prod_gw@$b]}" "${R[prod_direct@$b]}") (p99)"
        row3 "$b sync produce msgs/s, one SET in flight per connection (C=$SYNC_C P=1, 2×${HALF_T}s ABBA)" \
            "${R[sync_gw@$b]}" "${R[sync_direct@$b]}" msgs_per_s
        row "$b sync produce latency p50 / p99 / p99.9 ms" "$(lat "${R[sync_gw@$b]}")" "$(lat "${R[sync_direct@$b]}")" \
            "$(p50_delta "${R[sync_gw@$b]}" "${R[sync_direct@$b]}") (p50)"
        row "$b produce latency p50 / p99 / p99.9 ms at $RATE msgs/s (${RATE_T}s)" "$(lat "${R[rate_gw@$b]}")" "$(lat "${R[rate_direct@$b]}")" \
            "$(p99_delta "${R[rate_gw@$b]}" "${R[rate_direct@$b]}") (p99)"
        row "$b produce errors (saturated + fixed rate)" \
            "$(field "${R[prod_gw@$b]}" errors) + $(field "${R[rate_gw@$b]}" errors)" \
            "$(field "${R[prod_direct@$b]}" errors) + $(field "${R[rate_direct@$b]}" errors)" ""
        row3 "$b consume msgs/s, after the first message (K=$K M=${R[m@$b]})" "${R[cons_gw@$b]}" "${R[cons_direct@$b]}" steady_msgs_per_s
        row3 "$b consume msgs/s, whole drain incl. group join" "${R[cons_gw@$b]}" "${R[cons_direct@$b]}" msgs_per_s
        row3 "$b consume: ms to the first message (group join)" "${R[cons_gw@$b]}" "${R[cons_direct@$b]}" first_msg_ms
        row3 "$b consume: delivered (M + redeliveries)" "${R[cons_gw@$b]}" "${R[cons_direct@$b]}" delivered
        row3 "$b scale: produce msgs/s, $SHARDS shards (gateway) vs 1 shard (baseline), 2×${HALF_SCALE_T}s ABBA" \
            "${R[scale_n@$b]}" "${R[scale1@$b]}" msgs_per_s
        row3 "$b producers: produce msgs/s, one per shard (gateway) vs shared (baseline), 2×${HALF_SCALE_T}s ABBA" \
            "${R[per_shard@$b]}" "${R[shared@$b]}" msgs_per_s
        read -r sub_rss sub_threads sub_fds sub_conns sub_cpu broker_cpu <<<"${R[subs@$b]:-n/a n/a n/a n/a n/a n/a}"
        row "$b idle subscriber ($SUBS held, a group each): RSS bytes / threads / fds / broker connections each (baseline: idle publisher RSS bytes)" \
            "$sub_rss / $sub_threads / $sub_fds / $sub_conns" "${IDLE_GW:-n/a}" "$(ratio "$sub_rss" "${IDLE_GW:-x}")"
        row "$b idle subscribers: CPU % of a core, gateway / broker ($SUBS held, ${SUB_CPU_S}s)" "$sub_cpu / $broker_cpu" "" ""
    done
    for phase in unchanged changing; do
        row "stall: MGET p50 / p99 ms, auth refresh every 2 s, rows $phase (baseline: not refreshing; ${STALL_APPS} apps, ${STALL_GRANTS} grants)" \
            "$(ms "$(field "${R[stall_$phase]:-}" p50_us)") / $(ms "$(field "${R[stall_$phase]:-}" p99_us)")" \
            "$(ms "$(field "${R[stall_idle]:-}" p50_us)") / $(ms "$(field "${R[stall_idle]:-}" p99_us)")" \
            "$(ratio "$(field "${R[stall_$phase]:-}" p99_us)" "$(field "${R[stall_idle]:-}" p99_us)") (p99)"
        row "stall: /healthz p50 / p99 ms, rows $phase (baseline: not refreshing)" \
            "$(ms "$(field "${R[stall_$phase]:-}" healthz_p50_us)") / $(ms "$(field "${R[stall_$phase]:-}" healthz_p99_us)")" \
            "$(ms "$(field "${R[stall_idle]:-}" healthz_p50_us)") / $(ms "$(field "${R[stall_idle]:-}" healthz_p99_us)")" \
            "$(ratio "$(field "${R[stall_$phase]:-}" healthz_p99_us)" "$(field "${R[stall_idle]:-}" healthz_p99_us)") (p99)"
    done
    row3 "ping msgs/s, loadgen (C=$C P=$P ${PING_T}s; gateway after AUTH; baseline redis-server)" "$PING_GW" "$PING_REDIS" msgs_per_s
    row "ping msgs/s, redis-benchmark -t ping -P $P -c $C -n $PING_N (PING_MBULK; gateway with -a DSN)" "${RB_GW:-n/a}" "${RB_REDIS:-n/a}" "$(ratio "${RB_GW:-x}" "${RB_REDIS:-x}")"
    row "RSS bytes per idle connection ($IDLE held; gateway: authenticated publishers; baseline redis-server)" \
        "${IDLE_GW:-n/a}" "${IDLE_REDIS:-n/a}" "$(ratio "${IDLE_GW:-x}" "${IDLE_REDIS:-x}")"
    for r in "${PARSER_ROWS[@]}"; do
        read -r size ours theirs q <<<"$r"
        row "parser M commands/s, SET with $size values (baseline redis-protocol 6)" "$ours" "$theirs" "$q"
    done
    echo
    for b in "${BROKERS[@]}"; do
        echo "preload@$b: $(field "${R[preload@$b]}" msgs) records at $(field "${R[preload@$b]}" msgs_per_s) msgs/s (direct)"
    done
    echo "ping ratio basis: $PING_BASIS"
    echo
    for b in "${BROKERS[@]}"; do
        echo "ratio gateway/direct-produce@$b $(ratio "$(field "${R[prod_gw@$b]}" msgs_per_s)" "$(field "${R[prod_direct@$b]}" msgs_per_s)")"
        echo "ratio gateway/direct-sync-produce@$b $(ratio "$(field "${R[sync_gw@$b]}" msgs_per_s)" "$(field "${R[sync_direct@$b]}" msgs_per_s)")"
        echo "delta gateway-direct-sync-p50-ms@$b $(p50_delta "${R[sync_gw@$b]}" "${R[sync_direct@$b]}" | sed 's/ ms$//')"
        echo "ratio gateway/direct-p99-at-${RATE}@$b $(ratio "$(field "${R[rate_gw@$b]}" p99_us)" "$(field "${R[rate_direct@$b]}" p99_us)")"
        echo "ratio gateway/direct-consume@$b $(ratio "$(field "${R[cons_gw@$b]}" steady_msgs_per_s)" "$(field "${R[cons_direct@$b]}" steady_msgs_per_s)")"
        echo "ratio shards-$SHARDS/shards-1-produce@$b $(ratio "$(field "${R[scale_n@$b]}" msgs_per_s)" "$(field "${R[scale1@$b]}" msgs_per_s)")"
        echo "cost idle-subscriber@$b ${R[subs@$b]:-n/a} (RSS bytes, threads, fds, broker connections each; gateway and broker CPU %)"
        echo "ratio per-shard/shared-producers@$b $(ratio "$(field "${R[per_shard@$b]}" msgs_per_s)" "$(field "${R[shared@$b]}" msgs_per_s)")"
    done
    for phase in unchanged changing; do
        echo "ratio stall-$phase/idle-mget-p99 $(ratio "$(field "${R[stall_$phase]:-}" p99_us)" "$(field "${R[stall_idle]:-}" p99_us)")"
        echo "ratio stall-$phase/idle-healthz-p99 $(ratio "$(field "${R[stall_$phase]:-}" healthz_p99_us)" "$(field "${R[stall_idle]:-}" healthz_p99_us)")"
    done
    echo "ratio gateway/redis-server-ping $RATIO_PING"
    echo "ratio parser/redis-protocol $RATIO_PARSER"
    echo "ratio idle-bytes-per-conn ${IDLE_GW:-n/a}"
}

if ((FAILED)); then
    die "some runs failed (see $WORK/loadgen.log)"
fi
