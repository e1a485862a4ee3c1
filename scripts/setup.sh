#!/usr/bin/env bash
# Install what databus's build and test stack need, skipping what is there:
# Debian packages (MariaDB, build tools for rdkafka, redis-cli), the
# tansu Kafka broker (cargo install, ~11 min the first time) and the Python
# redis client. Safe to run again: a second run only checks.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

APT_PACKAGES=(
    mariadb-server mariadb-client redis-tools
    build-essential cmake pkg-config libssl-dev libsasl2-dev zlib1g-dev
    protobuf-compiler python3-pip
)

ensure_apt_packages "${APT_PACKAGES[@]}"

ensure_tansu

if python3 -c 'import redis' 2>/dev/null; then
    log "python redis client already installed"
else
    log "installing python redis client (pip install redis)"
    pip_log="$(mktemp)"
    if ! python3 -m pip install --quiet 'redis>=5,<9' >"$pip_log" 2>&1; then
        if grep -q externally-managed "$pip_log"; then
            log "pip refused (externally managed environment): retrying with --break-system-packages"
            python3 -m pip install --quiet --break-system-packages 'redis>=5,<9' \
                || die "pip install redis failed"
        else
            cat "$pip_log" >&2
            die "pip install redis failed"
        fi
    fi
    rm -f "$pip_log"
    python3 -c 'import redis' || die "python3 still cannot import redis after pip install"
fi

log "setup complete"
