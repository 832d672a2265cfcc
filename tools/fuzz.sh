#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz/ (clang, ASan + UBSan) and runs
# each on its corpus; fails on any crash, sanitizer report, leak, timeout or
# broken property (see tests/fuzz/README.md).
#
#   tools/fuzz.sh [--ci] [SECONDS]
#
# SECONDS per target, default 60. --ci: 15 s per target, with a fixed seed
# and a fresh working corpus. The targets run side by side (one core each).
#
# BUILD_DIR_FUZZ overrides build-fuzz/; FUZZ_CXX / FUZZ_CC the compilers
# (default: the newest of clang++-16, clang++-15, clang++). New inputs go to
# BUILD_DIR_FUZZ/work/TARGET/corpus (kept between runs, not with --ci), never
# into tests/fuzz/corpus/; crashes to BUILD_DIR_FUZZ/work/TARGET/crash-*.
# Reproduce one with: BUILD_DIR_FUZZ/tests/fuzz/fuzz_TARGET FILE
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR_FUZZ:-$root/build-fuzz}
ci=0
seconds=
for arg in "$@"; do
    case $arg in
        --ci) ci=1 ;;
        ''|*[!0-9]*) echo "usage: $0 [--ci] [SECONDS]" >&2; exit 2 ;;
        *) seconds=$arg ;;
    esac
done
seconds=${seconds:-$( ((ci)) && echo 15 || echo 60)}

# Targets: one per input parser (the agent's, and bpf/http.h's).
targets=(heartbeat config http_request_line)

# The newest clang installed (Debian 12's clang is 14, enough).
pick() {
    for c in "$@"; do
        if command -v "$c" >/dev/null; then
            echo "$c"
            return
        fi
    done
    echo "fuzz: no clang found (tools/install-deps.sh installs it)" >&2
    exit 1
}
cxx=${FUZZ_CXX:-$(pick clang++-16 clang++-15 clang++ clang++-14)}
cc=${FUZZ_CC:-$(pick "${cxx/clang++/clang}" clang)}

cmake -S "$root" -B "$build" -DPEERLB_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_C_COMPILER="$cc" >/dev/null
cmake --build "$build" -j "$(nproc)" --target "${targets[@]/#/fuzz_}"

bin=$build/tests/fuzz
work=$build/work
symbolizer=$(command -v llvm-symbolizer || true)
export ASAN_OPTIONS="detect_leaks=1${symbolizer:+:external_symbolizer_path=$symbolizer}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

run_target() {
    local t=$1 dir=$work/$1
    if ((ci)); then
        rm -rf "$dir"
    fi
    mkdir -p "$dir/corpus" "$dir/seeds"
    local corpora=("$dir/corpus" "$root/tests/fuzz/corpus/$t")
    local extra=()
    case $t in
        heartbeat)
            # Seeds from the current encoder, so they stay valid when the wire format grows.
            PEERLB_FUZZ_WRITE_SEEDS=$dir/seeds "$bin/fuzz_heartbeat" -runs=0 >"$dir/seeds.log" 2>&1
            corpora+=("$dir/seeds")
            extra+=(-max_len=2048)
            ;;
        config)
            extra+=(-max_len=4096 "-dict=$root/tests/fuzz/config.dict")
            ;;
        http_request_line)
            # Past LB_HTTP_SCAN (512): the parser must stop there.
            extra+=(-max_len=1024)
            ;;
    esac
    if ((ci)); then
        extra+=(-seed=20240601)
    fi
    "$bin/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$dir/" "${extra[@]}" "${corpora[@]}" >"$dir/log" 2>&1
}

echo "fuzz: ${targets[*]}: $seconds s each ($(basename "$cxx"), ASan+UBSan$( ((ci)) && echo ', --ci'))"
declare -A pids
for t in "${targets[@]}"; do
    run_target "$t" &
    pids[$t]=$!
done

failed=()
for t in "${targets[@]}"; do
    rc=0
    wait "${pids[$t]}" || rc=$?
    log=$work/$t/log
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" 2>/dev/null | tail -1 || true)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" 2>/dev/null | tail -1 || true)
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" 2>/dev/null | tail -1 || true)
    printf 'fuzz: %-17s %10s runs  %7s exec/s  %s  %s\n' "$t" "${runs:-?}" "${speed:-?}" \
        "${cov:-}" "$( ((rc)) && echo "FAILED (exit $rc)" || echo ok)"
    if ((rc)); then
        failed+=("$t")
        echo "---- fuzz_$t: the finding (full log: $log)"
        # From the first report line to the end: the message, the stack, the input.
        awk '/\*\*\* peerlb fuzz finding|==ERROR|runtime error|ERROR: libFuzzer|Sanitizer:/ {p=1} p' "$log" "$work/$t/seeds.log" 2>/dev/null | head -120 || true
        ls "$work/$t"/{crash,leak,timeout,oom,slow-unit}-* 2>/dev/null | sed 's/^/fuzz: reproducer: /' || true
        echo "----"
    fi
done

if ((${#failed[@]})); then
    echo "fuzz: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: no finding"
