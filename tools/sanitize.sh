#!/usr/bin/env bash
# Builds the agent's code and its tests with AddressSanitizer (+ LeakSanitizer)
# and UndefinedBehaviorSanitizer, and runs them: unit.* and, as root, bpf.*
# (the real XDP/TC programs through BPF_PROG_TEST_RUN; skipped when not root,
# as in tools/test.sh). Any failed test or any sanitizer report fails the run.
#
#   tools/sanitize.sh [--quick] [CTEST ARGS...]
#
# Only what the tests need is built: peerlb_agent, peerlb_dataplane (and the
# BPF objects and skeletons they include), unit_tests and bpf_tests.
# --quick (tools/test.sh, so CI): peerlb_agent and unit_tests only, unit.*;
# 150 s instead of 260 s from scratch on 2 busy cores (the BPF tests take
# some 55 s to run under ASan, the rest is compiling them).
#
# BUILD_DIR_ASAN overrides build-asan/; SANITIZE_CXX / SANITIZE_CC the
# compilers (default g++ / gcc, the project's compiler).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR_ASAN:-$root/build-asan}
cxx=${SANITIZE_CXX:-g++}
cc=${SANITIZE_CC:-gcc}
targets=(unit_tests bpf_tests)
tests='^(unit|bpf)\.'
if [[ ${1:-} == --quick ]]; then
    shift
    targets=(unit_tests)
    tests='^unit\.'
fi

# UBSan aborts on the first report (-fno-sanitize-recover), like ASan.
flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"

# -O0 -g1: under ASan, -O2 -g takes 3.5 times as long to compile (agent.cpp:
# 68 s against 19 s) and -O1 1.5 times; reports keep file:line; asserts on.
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_C_FLAGS="$flags" \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O0 -g1" -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O0 -g1" \
    -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"

# Reports go to files as well as failing the process that made them: a report
# from a process whose exit status nobody checks still fails the run.
logs=$build/sanitizer-logs
rm -rf "$logs"
mkdir -p "$logs"
symbolizer=$(command -v llvm-symbolizer || true)
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1:log_path=$logs/asan${symbolizer:+:external_symbolizer_path=$symbolizer}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan"
export LSAN_OPTIONS="log_path=$logs/lsan"

cd "$build"
status=0
ctest --output-on-failure --timeout 600 -R "$tests" "$@" || status=$?

reports=$(find "$logs" -type f | sort)
if [[ -n $reports ]]; then
    echo "sanitize: sanitizer reports:" >&2
    for f in $reports; do
        echo "--- $f" >&2
        cat "$f" >&2
    done
    status=1
fi
if ((status)); then
    echo "sanitize: FAILED" >&2
else
    echo "sanitize: no test failure, no sanitizer report ($cxx, ASan+LSan+UBSan)"
fi
exit "$status"
