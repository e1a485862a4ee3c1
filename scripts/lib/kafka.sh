# shellcheck shell=bash
# Apache Kafka on loopback: nodes in KRaft combined mode (each one controller
# and broker), run as plain `java -cp ... kafka.Kafka server.properties`
# processes from the jars ensure_kafka fetched, and topics created with Kafka's
# own admin tool. One node for the test stack; three for the fault tests.
# Sourced by scripts/lib.sh.

# The pinned broker version; scripts/kafka/pom.xml says the same.
KAFKA_VERSION="4.1.1"
KAFKA_HOME="${DATABUS_KAFKA_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/databus/kafka-$KAFKA_VERSION}"
# The heap kafka-server-start.sh gives a broker (1 GiB): three nodes take
# 3 GiB of this machine's 24, and the page cache keeps the rest for the logs.
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms1g -Xmx1g}"

# kafka_java LOG4J_CONFIG CLASS ARGS...: a Kafka class on the fetched jars.
kafka_java() {
    local log4j="$1"
    shift
    [[ -f "$KAFKA_HOME/libs/.complete" ]] || die "Kafka $KAFKA_VERSION not found in $KAFKA_HOME: run scripts/setup.sh"
    java -Dlog4j2.configurationFile="$log4j" -cp "$KAFKA_HOME/libs/*" "$@"
}

# The log4j2 configuration of the command-line tools: warnings to stderr.
kafka_tools_log4j() {
    local f="$KAFKA_HOME/tools-log4j2.yaml"
    [[ -f "$f" ]] || cat >"$f" <<'YAML'
Configuration:
  Appenders:
    Console: { name: STDERR, target: SYSTEM_ERR, PatternLayout: { pattern: "%p %m%n" } }
  Loggers:
    Root: { level: WARN, AppenderRef: [ { ref: STDERR } ] }
YAML
    echo "$f"
}

# new_kafka_cluster_id: a random cluster id (16 bytes, URL-safe base64), as
# `kafka-storage.sh random-uuid` prints, without a JVM start.
new_kafka_cluster_id() {
    python3 -c 'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))'
}

# kafka_voters PORT...: controller.quorum.voters for nodes 1..N whose
# controller listeners are on PORT...
kafka_voters() {
    local id=1 port out=()
    for port in "$@"; do
        out+=("$id@127.0.0.1:$port")
        id=$((id + 1))
    done
    (IFS=,; echo "${out[*]}")
}

# write_kafka_node DIR NODE_ID PORT CONTROLLER_PORT VOTERS NODES: DIR's
# server.properties and log4j2.yaml. NODES is the cluster's node count: the
# internal topics are replicated to all of them (at most 3), and with 3 nodes
# min.insync.replicas is 2 for every topic that does not set its own
# (__consumer_offsets included).
write_kafka_node() {
    local dir="$1" id="$2" port="$3" cport="$4" voters="$5" nodes="$6" rf min_isr
    rf=$((nodes < 3 ? nodes : 3))
    min_isr=$((rf < 3 ? 1 : 2))
    mkdir -p "$dir"
    cat >"$dir/server.properties" <<PROPS
# Written by scripts/lib/kafka.sh: node $id of $nodes, KRaft combined mode.
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
# Topics are made by the scripts and tests with the admin API, never by a
# produce or a metadata request that names an unknown topic.
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$min_isr
# Tests create a fresh group each and must not wait the default 3 s for the
# first rebalance of every group.
group.initial.rebalance.delay.ms=0
# Two cores: the defaults (3 network and 8 I/O threads per node) only add
# context switches here.
num.network.threads=2
num.io.threads=4
PROPS
    cat >"$dir/log4j2.yaml" <<YAML
Configuration:
  Appenders:
    RollingFile:
      name: SERVER
      fileName: $dir/server.log
      filePattern: $dir/server.log.%i
      PatternLayout: { pattern: "[%d] %p %m (%c)%n" }
      SizeBasedTriggeringPolicy: { size: 50MB }
      DefaultRolloverStrategy: { max: 2 }
  Loggers:
    Root: { level: INFO, AppenderRef: [ { ref: SERVER } ] }
    Logger:
      - { name: kafka.request.logger, level: WARN }
      - { name: org.apache.kafka.controller, level: INFO }
YAML
}

# format_kafka_node DIR CLUSTER_ID: format DIR/data unless it already is
# (kafka-storage.sh format, with the static quorum of server.properties).
format_kafka_node() {
    local dir="$1" cid="$2"
    [[ -f "$dir/data/meta.properties" ]] && return 0
    kafka_java "$dir/log4j2.yaml" kafka.tools.StorageTool format \
        -t "$cid" -c "$dir/server.properties" >"$dir/format.log" 2>&1 \
        || { cat "$dir/format.log" >&2; die "formatting Kafka storage in $dir/data failed"; }
}

# kafka_started_since DIR STAMP: true if the node of DIR logged that it
# started at or after STAMP ("YYYY-MM-DD HH:MM:SS", local time, as log4j
# writes it), in server.log or a file rolled over from it.
kafka_started_since() {
    local dir="$1" stamp="$2"
    cat "$dir"/server.log* 2>/dev/null | awk -v stamp="[$stamp" '
        /Kafka Server started/ && substr($0, 1, 20) >= stamp { found = 1 }
        END { exit !found }'
}

# launch_kafka_node DIR: start the node configured (and formatted) in DIR in
# the background, with the JVM flags kafka-run-class.sh gives a broker; sets
# KAFKA_PID, writes DIR/kafka.pid and DIR/launched (the time, for
# wait_kafka_nodes). JVM output that is not a log line (a crash) goes to
# DIR/kafka.out.
launch_kafka_node() {
    local dir="$1"
    date '+%Y-%m-%d %H:%M:%S' >"$dir/launched"
    # shellcheck disable=SC2086  # KAFKA_HEAP_OPTS is a list of flags
    java $KAFKA_HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
        -Djava.awt.headless=true -Dlog4j2.configurationFile="$dir/log4j2.yaml" \
        -cp "$KAFKA_HOME/libs/*" kafka.Kafka "$dir/server.properties" \
        </dev/null >>"$dir/kafka.out" 2>&1 &
    KAFKA_PID=$!
    register_pid "$KAFKA_PID" "kafka.Kafka $dir/server.properties"
    echo "$KAFKA_PID" >"$dir/kafka.pid"
}

# wait_kafka_nodes DIR...: wait until every node launched in DIR... logged
# that it started (it serves clients from then on). A single node starts in
# about 4 s; a node of a cluster waits for a quorum of controllers. 90 s
# covers a loaded machine; a node that exits is reported at once.
wait_kafka_nodes() {
    local dir pending i
    for ((i = 0; i < 450; i++)); do
        pending=0
        for dir in "$@"; do
            pid_alive "$(cat "$dir/kafka.pid")" kafka.Kafka || {
                tail -n 30 "$dir/kafka.out" "$dir/server.log" >&2 2>/dev/null
                die "Kafka node in $dir exited during start-up (logs: $dir/server.log, $dir/kafka.out)"
            }
            kafka_started_since "$dir" "$(cat "$dir/launched")" || pending=$((pending + 1))
        done
        ((pending == 0)) && return 0
        sleep 0.2
    done
    die "$pending Kafka node(s) of $* did not start within 90 s (logs: server.log in each)"
}

# kafka_node_port DIR: the node's client (PLAINTEXT) port.
kafka_node_port() {
    sed -n 's#^listeners=PLAINTEXT://127.0.0.1:\([0-9]*\),.*#\1#p' "$1/server.properties"
}

# start_kafka_node DIR: launch the node of DIR and wait until it started.
start_kafka_node() {
    log "starting Kafka $KAFKA_VERSION node on 127.0.0.1:$(kafka_node_port "$1") (log: $1/server.log)"
    launch_kafka_node "$1"
    wait_kafka_nodes "$1"
}

# stop_kafka_node DIR: SIGTERM (controlled shutdown), SIGKILL after 60 s.
stop_kafka_node() {
    local dir="$1"
    [[ -f "$dir/kafka.pid" ]] || return 0
    stop_pid "$(cat "$dir/kafka.pid")" "kafka.Kafka $dir/server.properties" 60
    rm -f "$dir/kafka.pid"
}

# start_kafka_cluster DIR NODES [PORT CONTROLLER_PORT]: NODES nodes (1 or 3)
# in DIR/node-<id>, on free ports (a single node on PORT and CONTROLLER_PORT
# when given); storage formatted on first use and kept, so the cluster can be
# stopped and started again on the same ports. Sets KAFKA_BOOTSTRAP
# (host:port,...) and writes it to DIR/bootstrap.
start_kafka_cluster() {
    local dir="$1" nodes="$2" id cid ports=() cports=() voters node_dirs=() all
    mkdir -p "$dir"
    if [[ ! -f "$dir/cluster.id" ]]; then
        cid="$(new_kafka_cluster_id)"
        if [[ -n "${3:-}" ]]; then
            ports=("$3")
            cports=("$4")
        else
            mapfile -t all < <(free_ports $((2 * nodes)))
            ports=("${all[@]:0:nodes}")
            cports=("${all[@]:nodes}")
        fi
        voters="$(kafka_voters "${cports[@]}")"
        for ((id = 1; id <= nodes; id++)); do
            write_kafka_node "$dir/node-$id" "$id" "${ports[id - 1]}" "${cports[id - 1]}" "$voters" "$nodes"
            format_kafka_node "$dir/node-$id" "$cid"
        done
        echo "$cid" >"$dir/cluster.id"
    fi
    ports=()
    for ((id = 1; id <= nodes; id++)); do
        node_dirs+=("$dir/node-$id")
        ports+=("$(kafka_node_port "$dir/node-$id")")
        log "starting Kafka $KAFKA_VERSION node $id of $nodes on 127.0.0.1:${ports[id - 1]} (log: $dir/node-$id/server.log)"
        launch_kafka_node "$dir/node-$id"
    done
    # Together: no node of a cluster finishes starting before a quorum runs.
    wait_kafka_nodes "${node_dirs[@]}"
    KAFKA_BOOTSTRAP="$(printf '127.0.0.1:%s,' "${ports[@]}")"
    KAFKA_BOOTSTRAP="${KAFKA_BOOTSTRAP%,}"
    echo "$KAFKA_BOOTSTRAP" >"$dir/bootstrap"
    log "Kafka ready: $KAFKA_BOOTSTRAP ($nodes node(s))"
}

# stop_kafka_cluster DIR: stop every node of DIR, last first.
stop_kafka_cluster() {
    local dir="$1" node
    for node in $(find "$dir" -maxdepth 1 -name 'node-*' -type d 2>/dev/null | sort -r); do
        stop_kafka_node "$node"
    done
}

# kafka_topics BOOTSTRAP ARGS...: Kafka's kafka-topics.sh (TopicCommand).
kafka_topics() {
    local bootstrap="$1"
    shift
    kafka_java "$(kafka_tools_log4j)" org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "$bootstrap" "$@"
}

# create_topic BOOTSTRAP NAME PARTITIONS [REPLICATION [CONFIG...]]: create the
# topic unless it exists with that many partitions. CONFIG: key=value topic
# configs, e.g. min.insync.replicas=2.
create_topic() {
    local bootstrap="$1" name="$2" partitions="$3" rf="${4:-1}" args=() c got
    shift 4 2>/dev/null || shift $#
    for c in "$@"; do args+=(--config "$c"); done
    kafka_topics "$bootstrap" --create --if-not-exists --topic "$name" \
        --partitions "$partitions" --replication-factor "$rf" "${args[@]}" >/dev/null \
        || die "creating topic $name on $bootstrap failed"
    got="$(kafka_topics "$bootstrap" --describe --topic "$name" | grep -c "Partition: ")" || true
    [[ "$got" == "$partitions" ]] || die "topic $name on $bootstrap has ${got:-no} partitions, expected $partitions"
    log "topic $name: $partitions partitions, replication factor $rf${*:+ ($*)}"
}
