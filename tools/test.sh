#!/usr/bin/env bash
# Builds peerlb and runs every test: unit (decision arithmetic), BPF
# (BPF_PROG_TEST_RUN on crafted packets) and namespace integration tests.
# Needs root for the BPF and namespace tests. BUILD_DIR overrides build/.
# Then the unit tests again under ASan/LSan/UBSan (tools/sanitize.sh --quick,
# build-asan/), under ThreadSanitizer with two agents whose threads are all
# busy (tools/sanitize.sh --thread, build-tsan/), and every fuzz target for
# 15 s (tools/fuzz.sh --ci, build-fuzz/); the sanitizer builds run at the
# lowest priority beside ctest. Every stage runs; the script
# fails if any of them failed. Each stage's time is printed at the end.
# SKIP_SANITIZE=1 / SKIP_TSAN=1 / SKIP_FUZZ=1 leave a stage out (local
# runs only).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}

stage_times=()
stage_from=$(date +%s)
stage_done() { # stage_done NAME: how long the stage since the last took
    local now
    now=$(date +%s)
    stage_times+=("$1 $((now - stage_from)) s")
    stage_from=$now
}

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)"
stage_done build
# The sanitizer stages' builds run beside ctest, at the lowest priority:
# the namespace tests leave most of a CPU idle, and a nice 19 compiler only
# takes what they do not use. Their own stages then find them built (or
# build what failed here, showing why).
prebuild_log=$build/sanitizer-prebuild.log
(
    set +e # each build on its own: one that fails does not stop the other
    ((${SKIP_SANITIZE:-0})) || nice -n 19 "$root/tools/sanitize.sh" --build-only --quick
    ((${SKIP_TSAN:-0})) || nice -n 19 "$root/tools/sanitize.sh" --build-only --thread
) >"$prebuild_log" 2>&1 &
prebuild=$!
cd "$build"
failed=()
ctest --output-on-failure --timeout 600 "$@" || failed+=(ctest)
stage_done ctest
wait "$prebuild" || echo "test: the sanitizer builds beside ctest failed (their stages build again; $prebuild_log)"
stage_done "sanitizer builds (after ctest)"

if [[ ${SKIP_SANITIZE:-0} != 1 ]]; then
    echo "== sanitizers: tools/sanitize.sh --quick"
    "$root/tools/sanitize.sh" --quick || failed+=(sanitize)
    stage_done "ASan/UBSan"
fi
if [[ ${SKIP_TSAN:-0} != 1 ]]; then
    echo "== ThreadSanitizer: tools/sanitize.sh --thread"
    "$root/tools/sanitize.sh" --thread || failed+=(tsan)
    stage_done TSan
fi
if [[ ${SKIP_FUZZ:-0} != 1 ]]; then
    echo "== fuzzing: tools/fuzz.sh --ci"
    "$root/tools/fuzz.sh" --ci || failed+=(fuzz)
    stage_done fuzzing
fi
times=$(printf '%s, ' "${stage_times[@]}")
echo "test: stages: ${times%, }"
if ((${#failed[@]})); then
    echo "test: FAILED: ${failed[*]}" >&2
    exit 1
fi
