# shellcheck shell=bash
# Shared helpers for databus's local stack (MariaDB and Apache Kafka). Source
# it from the other scripts:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Every background process started here is recorded (LIB_PIDS) so that a
# calling script can stop them all with `trap stop_all EXIT` (see
# install_cleanup_trap).

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# One job per file, in the order they build on each other.
# shellcheck source=scripts/lib/proc.sh
. "$REPO_ROOT/scripts/lib/proc.sh"
# shellcheck source=scripts/lib/kafka.sh
. "$REPO_ROOT/scripts/lib/kafka.sh"
# shellcheck source=scripts/lib/install.sh
. "$REPO_ROOT/scripts/lib/install.sh"
# shellcheck source=scripts/lib/mariadb.sh
. "$REPO_ROOT/scripts/lib/mariadb.sh"

# stop_private_stack WORK STATUS KEEP LOGS: the end of a script that ran a
# stack of its own in WORK (chaos.sh, abuse.sh): every Kafka node under WORK
# thawed (a frozen one could not stop) and stopped, MariaDB in WORK/mysql
# stopped, then WORK removed when STATUS is 0 and KEEP is 0, else kept, the
# log naming LOGS (which files to read).
stop_private_stack() {
    local work="$1" status="$2" keep="$3" logs="$4" pidfile cluster
    for pidfile in "$work"/kafka*/node-*/kafka.pid; do
        if [[ -f "$pidfile" ]]; then kill -CONT "$(cat "$pidfile")" 2>/dev/null || true; fi
    done
    for cluster in "$work"/kafka*/; do
        if [[ -d "$cluster" ]]; then stop_kafka_cluster "${cluster%/}"; fi
    done
    stop_mariadb "$work/mysql"
    stop_all
    if [[ "$status" == 0 && "$keep" == 0 ]]; then
        rm -rf "$work"
    else
        log "logs kept in $work ($logs)"
    fi
}
