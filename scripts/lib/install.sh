# shellcheck shell=bash
# Installing what is missing, and only that: Debian packages, Python modules,
# Java and Apache Kafka (by its Maven coordinates, into a cache outside the
# repository). Sourced by scripts/lib.sh.

APT_UPDATED=0

pkg_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

# ensure_apt_packages PKG...: install only the packages dpkg says are missing.
ensure_apt_packages() {
    local missing=() p sudo=()
    for p in "$@"; do
        pkg_installed "$p" || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        log "apt packages already installed: $*"
        return 0
    fi
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null || die "need root (or sudo) to install: ${missing[*]}"
        sudo=(sudo)
    fi
    if [[ "$APT_UPDATED" == 0 ]]; then
        log "apt-get update"
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
        APT_UPDATED=1
    fi
    log "installing apt packages: ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        || die "apt-get install failed for: ${missing[*]}"
}

# ensure_python_module MODULE REQUIREMENT: pip install REQUIREMENT unless
# python3 can import MODULE already.
ensure_python_module() {
    local module="$1" requirement="$2" pip_log
    if python3 -c "import $module" 2>/dev/null; then
        log "python module $module already installed"
        return 0
    fi
    log "installing python module $module (pip install '$requirement')"
    pip_log="$(mktemp)"
    if ! python3 -m pip install --quiet "$requirement" >"$pip_log" 2>&1; then
        if grep -q externally-managed "$pip_log"; then
            log "pip refused (externally managed environment): retrying with --break-system-packages"
            python3 -m pip install --quiet --break-system-packages "$requirement" \
                || die "pip install '$requirement' failed"
        else
            cat "$pip_log" >&2
            die "pip install '$requirement' failed"
        fi
    fi
    rm -f "$pip_log"
    python3 -c "import $module" || die "python3 still cannot import $module after pip install"
}

# java_major: the major version of the `java` on PATH, or 0.
java_major() {
    local v
    command -v java >/dev/null || { echo 0; return; }
    v="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
    echo "${v%%.*}"
}

# ensure_java_maven: a Java 17+ runtime (Kafka 4 needs 17) and Maven, from
# Debian when missing.
ensure_java_maven() {
    local major
    major="$(java_major)"
    if ((major >= 17)); then
        log "java $major already installed"
    else
        ensure_apt_packages openjdk-17-jre-headless
        (($(java_major) >= 17)) || die "java 17 or newer is needed for Kafka 4: 'java' on PATH is version $(java_major)"
    fi
    if command -v mvn >/dev/null; then
        log "maven already installed"
    else
        ensure_apt_packages maven
    fi
}

# ensure_kafka: Apache Kafka $KAFKA_VERSION's jars (broker, tools and what
# they need at run time) in $KAFKA_HOME/libs, fetched from Maven Central by
# the coordinates in scripts/kafka/pom.xml. Reused when present.
MAVEN_DEPENDENCY_PLUGIN="3.8.1"

ensure_kafka() {
    local pom="$REPO_ROOT/scripts/kafka/pom.xml" tmp
    grep -q "<kafka.version>$KAFKA_VERSION</kafka.version>" "$pom" \
        || die "$pom does not pin Kafka $KAFKA_VERSION (KAFKA_VERSION in scripts/lib/kafka.sh)"
    if [[ -f "$KAFKA_HOME/libs/.complete" ]]; then
        log "Apache Kafka $KAFKA_VERSION already fetched: $KAFKA_HOME"
        return 0
    fi
    ensure_java_maven
    log "fetching Apache Kafka $KAFKA_VERSION from Maven Central into $KAFKA_HOME (about 55 MB)"
    mkdir -p "$KAFKA_HOME"
    # A directory of this run's own: a concurrent setup cannot remove it.
    tmp="$(mktemp -d "$KAFKA_HOME/libs.partial.XXXXXX")"
    # The plugin's version is pinned: the newest one could need a newer Maven
    # than Debian's.
    mvn -B -Dstyle.color=never -f "$pom" \
        "org.apache.maven.plugins:maven-dependency-plugin:$MAVEN_DEPENDENCY_PLUGIN:copy-dependencies" \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$tmp.log" 2>&1 \
        || { tail -n 40 "$tmp.log" >&2; die "fetching Kafka $KAFKA_VERSION with Maven failed (log: $tmp.log)"; }
    [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || die "Maven did not deliver kafka_2.13-$KAFKA_VERSION.jar"
    rm -rf "$KAFKA_HOME/libs"
    mv "$tmp" "$KAFKA_HOME/libs"
    touch "$KAFKA_HOME/libs/.complete"
    log "Apache Kafka $KAFKA_VERSION ready: $KAFKA_HOME/libs ($(find "$KAFKA_HOME/libs" -name '*.jar' | wc -l) jars)"
}
