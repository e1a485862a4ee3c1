#!/usr/bin/env bash
# Start or stop the local test stack: MariaDB and a single-node Apache Kafka
# on free ports, all state under DIR.
#
#   scripts/stack.sh start DIR   # then: . DIR/env
#   scripts/stack.sh stop DIR
#
# DIR/env exports DATABUS_TEST_MYSQL_URL (no database: tests create their
# own), DATABUS_TEST_MYSQL_PORT and DATABUS_TEST_BROKERS. Logs:
# DIR/mysql/error.log and DIR/kafka/node-1/server.log.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { die "usage: $0 start|stop DIR"; }

[[ $# == 2 ]] || usage
cmd="$1"
mkdir -p "$2"
dir="$(cd "$2" && pwd)"

stop_stack() {
    stop_kafka_cluster "$dir/kafka"
    stop_mariadb "$dir/mysql"
    rm -f "$dir/env"
}

case "$cmd" in
start)
    if [[ -f "$dir/kafka/node-1/kafka.pid" ]] && pid_alive "$(cat "$dir/kafka/node-1/kafka.pid")" kafka.Kafka; then
        die "a stack already runs in $dir: '$0 stop $dir' first"
    fi
    # If any step fails, stop what was already started; on success the
    # processes keep running after this script exits.
    trap 'if [[ $? != 0 ]]; then stop_all; fi' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    mysql_port="$(free_port)"
    start_mariadb "$dir/mysql" "$mysql_port"
    load_schema "$mysql_port"

    start_kafka_cluster "$dir/kafka" 1

    cat >"$dir/env" <<ENV
export DATABUS_TEST_MYSQL_URL=mysql://root@127.0.0.1:$mysql_port
export DATABUS_TEST_MYSQL_PORT=$mysql_port
export DATABUS_TEST_BROKERS=$KAFKA_BOOTSTRAP
export DATABUS_KAFKA_HOME=$KAFKA_HOME
ENV
    log "stack running; environment in $dir/env:"
    cat "$dir/env" >&2
    log "logs: $dir/mysql/error.log $dir/kafka/node-1/server.log"
    ;;
stop)
    stop_stack
    log "stack in $dir stopped"
    ;;
*) usage ;;
esac
