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
