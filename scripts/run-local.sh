#!/usr/bin/env bash
# The "run it" command: MariaDB (data kept in .local/mysql) and a single-node
# Apache Kafka (data kept in .local/kafka) on their usual ports when free,
# topic test156 with 3 partitions, a release build of databus in the
# foreground using .local/databus.toml. Ctrl-C stops everything.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

LOCAL_DIR="$REPO_ROOT/.local"
CONFIG_IN="$REPO_ROOT/config/databus.toml"
CONFIG_OUT="$LOCAL_DIR/databus.toml"

[[ -f "$CONFIG_IN" ]] || die "missing $CONFIG_IN"

"$REPO_ROOT/scripts/setup.sh" --run

# Build before starting the services so they do not sit idle meanwhile.
log "cargo build --release"
cargo build --release || die "cargo build --release failed"

mkdir -p "$LOCAL_DIR"
install_cleanup_trap

# Servers left over by a killed earlier run would hold on to their ports.
stop_mariadb "$LOCAL_DIR/mysql"
stop_kafka_cluster "$LOCAL_DIR/kafka"

mysql_port="$(port_or_free 3306)"
start_mariadb "$LOCAL_DIR/mysql" "$mysql_port"
load_schema "$mysql_port"

# Kafka keeps its data, and with it its ports, in .local/kafka: chosen on the
# first run (9092 and 9093 when free).
if [[ -f "$LOCAL_DIR/kafka/cluster.id" ]]; then
    kafka_port="$(kafka_node_port "$LOCAL_DIR/kafka/node-1")"
    port_is_free "$kafka_port" \
        || die "port $kafka_port of the local Kafka (.local/kafka) is taken: free it, or remove .local/kafka to choose new ports"
    start_kafka_cluster "$LOCAL_DIR/kafka" 1
else
    mapfile -t spare < <(free_ports 2)
    kafka_port="$(port_or_free 9092)"
    [[ "$kafka_port" != "$mysql_port" ]] || kafka_port="${spare[0]}"
    controller_port="$(port_or_free 9093)"
    [[ "$controller_port" != "$kafka_port" && "$controller_port" != "$mysql_port" ]] || controller_port="${spare[1]}"
    start_kafka_cluster "$LOCAL_DIR/kafka" 1 "$kafka_port" "$controller_port"
fi
create_topic "$KAFKA_BOOTSTRAP" test156 3 1

sed -e "s|^\([[:space:]]*mysql_url[[:space:]]*=\).*|\1 \"mysql://root@127.0.0.1:$mysql_port/databus_db\"|" \
    -e "s|^\([[:space:]]*brokers[[:space:]]*=\).*|\1 \"$KAFKA_BOOTSTRAP\"|" \
    -e "s|^\([[:space:]]*auto_offset_reset[[:space:]]*=\).*|\1 \"earliest\"   # local stack: new groups read from the start|" \
    "$CONFIG_IN" >"$CONFIG_OUT"
grep -q "mysql://root@127.0.0.1:$mysql_port/databus_db" "$CONFIG_OUT" \
    || die "no 'mysql_url = ...' line replaced in $CONFIG_OUT"
grep -q "\"$KAFKA_BOOTSTRAP\"" "$CONFIG_OUT" \
    || die "no 'brokers = ...' line replaced in $CONFIG_OUT"

cat >&2 <<MSG

  MariaDB : mysql://root@127.0.0.1:$mysql_port/databus_db  (log: .local/mysql/error.log)
  Kafka   : $KAFKA_BOOTSTRAP, Apache Kafka $KAFKA_VERSION  (log: .local/kafka/node-1/server.log)
  config  : .local/databus.toml
  metrics : http://127.0.0.1:6206/metrics  (also /healthz, /readyz; INFO in redis-cli)

  Try it from another terminal:
    redis-cli -p 6205
    > auth app_key1:app_secret1@group_name1/topic=test156&role=pub
    > ping
    > set x '"xx"'
  or run the example (publish one message, then consume and commit):
    cargo run --example pubsub
  New consumer groups read this local topic from its start (auto_offset_reset).

  Ctrl-C stops databus, Kafka and MariaDB.

MSG

log "target/release/databus --config .local/databus.toml"
target/release/databus --config "$CONFIG_OUT"
