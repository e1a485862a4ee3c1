#!/usr/bin/env bash
# Install what databus's build and test stack need, skipping what is there:
# Debian packages (MariaDB, build tools for rdkafka, redis-cli), Java 17 and
# Maven, Apache Kafka's jars from Maven Central (into a cache outside the
# repository, scripts/lib/kafka.sh), the Python redis client and the
# Node.js clients of the client-matrix tests (npm ci in tests/clients/node).
# Safe to run again: a second run only checks.
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

log "setup complete"
