#!/usr/bin/env bash
# The "run it" command: MariaDB (data kept in .local/mysql) and tansu
# (in memory) on their usual ports when free, topic test156 with 3
# partitions, a release build of databus in the foreground using
# .local/databus.toml. Ctrl-C stops everything.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

LOCAL_DIR="$REPO_ROOT/.local"
CONFIG_IN="$REPO_ROOT/config/databus.toml"
CONFIG_OUT="$LOCAL_DIR/databus.toml"

[[ -f "$CONFIG_IN" ]] || die "missing $CONFIG_IN"

"$REPO_ROOT/scripts/setup.sh"

# Build before starting the services so they do not sit idle meanwhile.
log "cargo build --release"
cargo build --release || die "cargo build --release failed"

mkdir -p "$LOCAL_DIR"
install_cleanup_trap

# Servers left over by a killed earlier run would hold on to their ports.
stop_mariadb "$LOCAL_DIR/mysql"
stop_tansu "$LOCAL_DIR/tansu.pid"

mysql_port="$(port_or_free 3306)"
start_mariadb "$LOCAL_DIR/mysql" "$mysql_port"
load_schema "$mysql_port"

kafka_port="$(port_or_free 9092)"
[[ "$kafka_port" != "$mysql_port" ]] || kafka_port="$(free_port)"
# tansu keeps topics in memory, so the topic is created on every run.
start_tansu "$kafka_port" "$LOCAL_DIR/tansu.log" "$LOCAL_DIR/tansu.pid"
create_topic "$kafka_port" test156 3

sed -e "s|^\([[:space:]]*mysql_url[[:space:]]*=\).*|\1 \"mysql://root@127.0.0.1:$mysql_port/databus_db\"|" \
    -e "s|^\([[:space:]]*brokers[[:space:]]*=\).*|\1 \"127.0.0.1:$kafka_port\"|" \
    -e "s|^\([[:space:]]*auto_offset_reset[[:space:]]*=\).*|\1 \"earliest\"   # local stack: new groups read from the start|" \
    "$CONFIG_IN" >"$CONFIG_OUT"
grep -q "mysql://root@127.0.0.1:$mysql_port/databus_db" "$CONFIG_OUT" \
    || die "no 'mysql_url = ...' line replaced in $CONFIG_OUT"
grep -q "\"127.0.0.1:$kafka_port\"" "$CONFIG_OUT" \
    || die "no 'brokers = ...' line replaced in $CONFIG_OUT"

cat >&2 <<MSG

  MariaDB : mysql://root@127.0.0.1:$mysql_port/databus_db  (log: .local/mysql/error.log)
  tansu   : 127.0.0.1:$kafka_port  (log: .local/tansu.log)
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

  Ctrl-C stops databus, tansu and MariaDB.

MSG

log "target/release/databus --config .local/databus.toml"
target/release/databus --config "$CONFIG_OUT"
