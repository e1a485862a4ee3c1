#!/usr/bin/env bash
# Fuzzes the parsers that read what clients send, with cargo-fuzz (libFuzzer):
#
#   scripts/fuzz.sh DURATION      DURATION: 15m, 60s, 1h, or plain seconds
#
# Targets (fuzz/fuzz_targets/, each documents what it checks): resp_parser
# (databus::resp::Parser) and auth_dsn (databus::auth::Dsn::parse). They run
# one after the other, DURATION each, as a single libFuzzer job: the machine
# is shared, and one core per fuzzer is what the numbers in the README assume.
# Total time is therefore 2 x DURATION, plus the build (the first one compiles
# every dependency into fuzz/target: about 8 minutes on 2 cores).
#
# Inputs: the committed seeds in fuzz/corpus/<target>/ are read only; what the
# fuzzer finds is written to fuzz/corpus-grown/<target>/ (ignored by git) and
# reused by the next run. A crash (panic, failed assertion, timeout, OOM) is
# saved under fuzz/artifacts/<target>/; the script then prints its path and
# how to reproduce and minimise it, runs the remaining targets, and exits 1.
# Full libFuzzer output: fuzz/logs/<target>.log.
#
# Environment: FUZZ_SANITIZER (default none), any value cargo fuzz --sanitizer
# takes; `address` has been tried here (`memory` also needs the standard
# library's sources, i.e. rustup's rust-src component).

set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TARGETS=(resp_parser auth_dsn)
CARGO_FUZZ_VERSION=0.13.2

usage() { die "usage: $0 DURATION (e.g. 15m, 60s, 1h, or seconds)"; }
(($# == 1)) || usage

# DURATION in seconds.
[[ "$1" =~ ^([0-9]+)([smh]?)$ ]] || usage
SECS=$((10#${BASH_REMATCH[1]}))
case "${BASH_REMATCH[2]}" in
h) SECS=$((SECS * 3600)) ;;
m) SECS=$((SECS * 60)) ;;
esac
((SECS > 0)) || usage

# The code under test is safe Rust (no `unsafe` in src/resp or src/auth), so
# AddressSanitizer would find nothing that a panic does not already report,
# while it slows fuzzing down: 6 to 8 times fewer executions per second here
# (short runs on this machine, 20 s with ASan and 30 s without: resp_parser
# 5,213/s against 30,890/s, auth_dsn 45,386/s against 351,076/s). Without a
# sanitizer cargo-fuzz passes rustc only stable flags (-Cpasses=sancov-module,
# -Cllvm-args=..., -Cdebug-assertions: overflow checks stay on), so the stable
# toolchain, the only one on this machine, builds it as it is.
SANITIZER="${FUZZ_SANITIZER:-none}"
FUZZ_ARGS=(--sanitizer "$SANITIZER")
if [[ "$SANITIZER" != none ]]; then
    # Other flags, other build: kept apart so that neither evicts the other.
    FUZZ_ARGS+=(--target-dir "$REPO_ROOT/fuzz/target/sanitizer-$SANITIZER")
    # Sanitizers are rustc -Z flags (-Zsanitizer=...), which only a nightly
    # compiler accepts; RUSTC_BOOTSTRAP=1 makes stable accept them, and makes
    # cargo-fuzz treat the compiler as nightly. Set only here: some build
    # scripts (proc-macro2, thiserror, anyhow) react to it, so setting it
    # always would rebuild every dependency whenever the choice changes.
    export RUSTC_BOOTSTRAP=1
fi

if ! cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
    log "installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked \
        || die "cargo install cargo-fuzz failed"
fi

cd "$REPO_ROOT"
FUZZ="$REPO_ROOT/fuzz"
mkdir -p "$FUZZ/logs"
log "building the fuzz targets (sanitizer: $SANITIZER; log: $FUZZ/logs/build.log)"
cargo fuzz build "${FUZZ_ARGS[@]}" >"$FUZZ/logs/build.log" 2>&1 \
    || { tail -n 30 "$FUZZ/logs/build.log" >&2; die "cargo fuzz build failed (log: $FUZZ/logs/build.log)"; }

# final_stat LOG NAME: a value of libFuzzer's final statistics (-print_final_stats).
final_stat() { sed -n "s/^stat::$2: *//p" "$1" | tail -n 1; }

FAILED=()
SUMMARY=()
for t in "${TARGETS[@]}"; do
    grown="$FUZZ/corpus-grown/$t"
    logfile="$FUZZ/logs/$t.log"
    mkdir -p "$grown" "$FUZZ/artifacts/$t"
    log "fuzzing $t for ${SECS}s (log: $logfile)"
    start=$SECONDS
    rc=0
    # The first corpus directory is the one libFuzzer adds new inputs to.
    # -timeout: one input of these parsers takes microseconds; 10 s is a hang.
    cargo fuzz run "${FUZZ_ARGS[@]}" "$t" "$grown" "$FUZZ/corpus/$t" -- \
        -max_total_time="$SECS" -timeout=10 -print_final_stats=1 \
        >"$logfile" 2>&1 || rc=$?
    secs=$((SECONDS - start))
    # "#<execs> DONE cov: <edges> ft: .. corp: <inputs>/<bytes> ..." ends a clean run.
    corpus="$(sed -nE 's/^#[0-9]+[[:space:]]+DONE .*cov: ([0-9]+) .*corp: ([0-9]+)\/([^ ]+) .*/\2 inputs (\3), coverage \1 edges/p' "$logfile" | tail -n 1)"
    line="$t: ${secs}s, $(final_stat "$logfile" number_of_executed_units) executions ($(final_stat "$logfile" average_exec_per_sec)/s), corpus ${corpus:-n/a}"
    if ((rc != 0)); then
        tail -n 40 "$logfile" >&2
        artifact="$(sed -n 's/.*Test unit written to //p' "$logfile" | tail -n 1)"
        log "$t FAILED (exit $rc) after ${secs}s; artifact: ${artifact:-none written, see $logfile}"
        if [[ -n "$artifact" ]]; then
            log "reproduce: cargo fuzz run ${FUZZ_ARGS[*]} $t $artifact"
            log "minimise:  cargo fuzz tmin ${FUZZ_ARGS[*]} $t $artifact"
        fi
        FAILED+=("$t")
        line="$t: FAILED after ${secs}s, artifact ${artifact:-none}"
    fi
    SUMMARY+=("$line")
done

for line in "${SUMMARY[@]}"; do log "$line"; done
((${#FAILED[@]} == 0)) || die "crashes found in: ${FAILED[*]}"
log "no crashes"
