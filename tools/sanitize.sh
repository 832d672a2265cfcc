#!/usr/bin/env bash
# Builds the agent's code and its tests with sanitizers and runs them. Any
# failed test or any sanitizer report fails the run.
#
#   tools/sanitize.sh [--quick] [CTEST ARGS...]
#   tools/sanitize.sh --thread [UNIT_TESTS ARGS...]
#
# Default: AddressSanitizer (+ LeakSanitizer) and UndefinedBehaviorSanitizer
# on unit.* and, as root, bpf.* (the real XDP/TC programs through
# BPF_PROG_TEST_RUN; skipped when not root, as in tools/test.sh). Only what
# the tests need is built: peerlb_agent, peerlb_dataplane (and the BPF
# objects and skeletons they include), unit_tests and bpf_tests.
# --quick (tools/test.sh, so CI): peerlb_agent and unit_tests only, unit.*;
# 150 s instead of 260 s from scratch on 2 busy cores (the BPF tests take
# some 55 s to run under ASan, the rest is compiling them).
#
# --thread (tools/test.sh, so CI): ThreadSanitizer, in a build of its own.
# The unit tests (in one process: 13 s, against 46 s for a process per
# test under ctest; arguments go to it, --gtest_filter=... say), then, as
# root, tests/integration/tsan_agent.sh: two TSan-built agents in
# namespaces with every thread busy (event loop, load meter, health check,
# metrics server) for TSAN_SECONDS (10). Builds unit_tests and peerlb only.
# Prints how long each step took.
#
# --build-only first (tools/test.sh, while ctest runs): the build alone.
# SANITIZE_JOBS: its parallel jobs (default: every CPU).
# BUILD_DIR_ASAN / BUILD_DIR_TSAN override build-asan/ / build-tsan/;
# SANITIZE_CXX / SANITIZE_CC the compilers (default g++ / gcc, the project's
# compiler; the BPF objects are clang's either way, Makefile.bpf).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cxx=${SANITIZE_CXX:-g++}
cc=${SANITIZE_CC:-gcc}
mode=address
targets=(unit_tests bpf_tests)
tests='^(unit|bpf)\.'
build_only=0
if [[ ${1:-} == --build-only ]]; then
    build_only=1
    shift
fi
case ${1:-} in
--quick)
    shift
    targets=(unit_tests)
    tests='^unit\.'
    ;;
--thread)
    shift
    mode=thread
    targets=(unit_tests peerlb)
    ;;
esac

started=$(date +%s)
step_started=$started
step_times=()
step_done() { # step_done NAME: records how long the step since the last took
    local now
    now=$(date +%s)
    step_times+=("$1 $((now - step_started)) s")
    step_started=$now
}

if [[ $mode == thread ]]; then
    build=${BUILD_DIR_TSAN:-$root/build-tsan}
    # -O0 -g1 as for ASan below: compiling is most of the stage's time.
    flags="-fsanitize=thread -fno-omit-frame-pointer"
    opt="-O0 -g1"
    link_flags="-fsanitize=thread"
    label="ThreadSanitizer"
else
    build=${BUILD_DIR_ASAN:-$root/build-asan}
    # UBSan aborts on the first report (-fno-sanitize-recover), like ASan.
    flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
    # -O0 -g1: under ASan, -O2 -g takes 3.5 times as long to compile
    # (agent.cpp: 68 s against 19 s) and -O1 1.5 times; reports keep
    # file:line; asserts on.
    opt="-O0 -g1"
    link_flags="-fsanitize=address,undefined"
    label="ASan+LSan+UBSan"
fi
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_C_FLAGS="$flags" \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$opt" -DCMAKE_C_FLAGS_RELWITHDEBINFO="$opt" \
    -DCMAKE_EXE_LINKER_FLAGS="$link_flags" >/dev/null
cmake --build "$build" -j "${SANITIZE_JOBS:-$(nproc)}" --target "${targets[@]}"
step_done build
((build_only)) && exit 0

# Reports go to files as well as failing the process that made them: a report
# from a process whose exit status nobody checks still fails the run.
logs=$build/sanitizer-logs
rm -rf "$logs"
mkdir -p "$logs"
symbolizer=$(command -v llvm-symbolizer || true)
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1:log_path=$logs/asan${symbolizer:+:external_symbolizer_path=$symbolizer}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan"
export LSAN_OPTIONS="log_path=$logs/lsan"
# Every report, not only the first (halt_on_error=0); the test fails on its
# exit status (66) and on the report file.
# Suppressions: tools/tsan-suppressions.txt says which, and why.
export TSAN_OPTIONS="halt_on_error=0:second_deadlock_stack=1:suppressions=$root/tools/tsan-suppressions.txt:log_path=$logs/tsan${symbolizer:+:external_symbolizer_path=$symbolizer}"

cd "$build"
status=0
if [[ $mode == thread ]]; then
    # The bucket table's suites are single-threaded arithmetic (nothing
    # for TSan to see) and take most of the time at -O0 under it: the
    # ASan stage runs them.
    tests/unit_tests --gtest_brief=1 \
        --gtest_filter='-BucketTable*:BucketTableLoadSim*:BucketTableWire*:AssignBuckets*:BucketQuotas*' \
        "$@" || status=$?
    step_done "unit tests"
    if [[ $EUID -eq 0 ]]; then
        TSAN_LOGS=$logs bash "$root/tests/integration/tsan_agent.sh" "$build" || status=1
        step_done "two agents"
    else
        echo "sanitize: the agents under ThreadSanitizer need root (namespaces): skipped"
    fi
elif [[ $tests == '^unit\.' ]]; then
    # One process for every unit test: ctest would start one per test, each
    # paying the sanitizer runtime's start (about a minute in all).
    tests/unit_tests --gtest_brief=1 "$@" || status=$?
    step_done "tests"
else
    ctest --output-on-failure --timeout 600 -R "$tests" "$@" || status=$?
    step_done "tests"
fi

reports=$(find "$logs" -type f | sort)
if [[ -n $reports ]]; then
    echo "sanitize: sanitizer reports:" >&2
    for f in $reports; do
        echo "--- $f" >&2
        cat "$f" >&2
    done
    status=1
fi
step_done "reports"
times=$(printf '%s, ' "${step_times[@]}")
echo "sanitize: $label took $(($(date +%s) - started)) s (${times%, })"
if ((status)); then
    echo "sanitize: FAILED" >&2
else
    echo "sanitize: no test failure, no sanitizer report ($cxx, $label)"
fi
exit "$status"
