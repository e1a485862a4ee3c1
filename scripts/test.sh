#!/usr/bin/env bash
# The "test it" command: install what is missing, start a throw-away stack
# (MariaDB and Apache Kafka on free ports), run cargo's tests against it, stop it.
#
#   scripts/test.sh [extra cargo test args...]
#
# Extra args go to `cargo test --all-targets`; doc tests and the benchmark
# smoke run (scripts/bench.sh --smoke) run only when no extra args are given.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

"$REPO_ROOT/scripts/setup.sh"

STACK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/databus-stack.XXXXXX")"
STATUS=1
# On exit (also Ctrl-C): stop the stack; keep its logs if anything failed.
# shellcheck disable=SC2317  # invoked from the trap
on_exit() {
    local rc=$?
    trap - EXIT
    "$REPO_ROOT/scripts/stack.sh" stop "$STACK_DIR" || true
    if [[ "$STATUS" == 0 ]]; then
        rm -rf "$STACK_DIR"
    else
        log "test stack logs kept: $STACK_DIR/mysql/error.log $STACK_DIR/kafka/node-1/server.log"
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$REPO_ROOT/scripts/stack.sh" start "$STACK_DIR"
# shellcheck disable=SC1091
. "$STACK_DIR/env"

log "cargo test --all-targets $*"
set +e
cargo test --all-targets "$@"
STATUS=$?
set -e

if [[ "$STATUS" == 0 && $# == 0 && -f src/lib.rs ]]; then
    log "cargo test --doc"
    set +e
    cargo test --doc
    STATUS=$?
    set -e
fi

# The benchmark suite's smoke run keeps scripts/bench.sh and its helpers
# working (mock broker, about a second per run; no timing is judged).
if [[ "$STATUS" == 0 && $# == 0 ]]; then
    log "scripts/bench.sh --smoke"
    set +e
    "$REPO_ROOT/scripts/bench.sh" --smoke
    STATUS=$?
    set -e
fi

# The fuzz targets (fuzz/, a workspace of its own) must keep compiling as the
# parsers change; running them is scripts/fuzz.sh's job.
if [[ "$STATUS" == 0 && $# == 0 ]]; then
    log "cargo check --manifest-path fuzz/Cargo.toml"
    set +e
    cargo check --locked --manifest-path fuzz/Cargo.toml --bins
    STATUS=$?
    set -e
fi

exit "$STATUS"
