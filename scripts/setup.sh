#!/usr/bin/env bash
# Install what databus's build and test stack need, skipping what is there:
# Debian packages (MariaDB, build tools for rdkafka, redis-cli), Java 17 and
# Maven, Apache Kafka's jars from Maven Central (into a cache outside the
# repository, scripts/lib/kafka.sh), the Python redis client, the
# Node.js clients of the client-matrix tests (npm ci in tests/clients/node) and
# Go with the modules of its Go programs (go mod download in tests/clients/go).
# Safe to run again: a second run only checks.
#
#   scripts/setup.sh         # everything the tests need
#   scripts/setup.sh --run   # only what scripts/run-local.sh needs (no client
#                            # libraries: no Python, Node.js or Go packages)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

APT_PACKAGES=(
    mariadb-server mariadb-client redis-tools
    build-essential cmake pkg-config libssl-dev libsasl2-dev zlib1g-dev libzstd-dev
    protobuf-compiler python3-pip
)

ensure_apt_packages "${APT_PACKAGES[@]}"

ensure_java_maven
ensure_kafka

case "${1:-}" in
--run)
    log "setup complete (what run-local.sh needs)"
    exit 0
    ;;
"") ;;
*) die "usage: $0 [--run]" ;;
esac

ensure_python_module redis 'redis>=5,<9'

# Node.js and the npm packages of tests/clients/node (ioredis, node-redis).
# Debian's nodejs is only installed when there is no node at all: a newer one
# (e.g. from NodeSource) stays. The current majors of both libraries declare
# Node.js 20 as their minimum; Debian 12's is 18, on which npm ci only warns
# and the client tests pass (checked with 18.20.8).
if command -v node >/dev/null; then
    log "node already installed: $(node --version)"
else
    ensure_apt_packages nodejs npm
fi
command -v npm >/dev/null || die "node is installed but npm is not: install npm (it comes with Node.js)"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
((node_major >= 20)) || log "note: node $(node --version) is older than the 20 that ioredis 6 and node-redis 6 declare (npm warns EBADENGINE; their tests passed on 18.20)"

# npm ci reinstalls from package-lock.json (and deletes node_modules first):
# skipped while the lock file is the one node_modules was installed from.
node_dir="$REPO_ROOT/tests/clients/node"
lock_stamp="$node_dir/node_modules/.databus-lock.sha256"
lock_sum="$(sha256sum "$node_dir/package-lock.json" | cut -d' ' -f1)"
if [[ -f "$lock_stamp" && "$(cat "$lock_stamp")" == "$lock_sum" ]]; then
    log "node client packages already installed (tests/clients/node/node_modules)"
else
    log "installing node client packages (npm ci in tests/clients/node)"
    (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error) \
        || die "npm ci in $node_dir failed"
    echo "$lock_sum" >"$lock_stamp"
fi

# Go and the modules of tests/clients/go (go-redis, redigo and sarama, for the
# client matrix and the sarama placement test). Debian's golang-go is installed
# only when there is no go at all; an installed go must be at least the `go`
# line of go.mod (the oldest Go that sarama and go-redis build with), and is
# not swapped for another toolchain (GOTOOLCHAIN=local).
go_dir="$REPO_ROOT/tests/clients/go"
if command -v go >/dev/null; then
    log "go already installed: $(GOTOOLCHAIN=local go version)"
else
    ensure_apt_packages golang-go
fi
go_need="$(sed -n 's/^go \([0-9][0-9.]*\)$/\1/p' "$go_dir/go.mod")"
[[ -n "$go_need" ]] || die "no 'go' line in $go_dir/go.mod"
go_have="$(GOTOOLCHAIN=local go env GOVERSION)"
go_have="${go_have#go}"
if [[ "$(printf '%s\n%s\n' "$go_need" "$go_have" | sort -V | head -n1)" != "$go_need" ]]; then
    die "go $go_have ($(command -v go)) is older than go $go_need, which $go_dir/go.mod needs: install Go $go_need or newer first on PATH (Debian 12's golang-go is 1.19)"
fi

# go mod download fills the module cache from go.sum, so that the tests build
# offline (they run go with GOPROXY=off): skipped while the stamp in the module
# cache (gone with it on `go clean -modcache`) is the sha256 of this go.sum.
go_sum="$(sha256sum "$go_dir/go.sum" | cut -d' ' -f1)"
go_stamp="$(GOTOOLCHAIN=local go env GOMODCACHE)/.databus-clients-go.sum.sha256"
if [[ -f "$go_stamp" && "$(cat "$go_stamp")" == "$go_sum" ]]; then
    log "go modules already downloaded (tests/clients/go)"
else
    log "downloading go modules (go mod download in tests/clients/go)"
    (cd "$go_dir" && GOTOOLCHAIN=local go mod download) || die "go mod download in $go_dir failed"
    echo "$go_sum" >"$go_stamp"
fi

log "setup complete"
