#!/usr/bin/env bash
# Builds peerlb and runs every test: unit (decision arithmetic), BPF
# (BPF_PROG_TEST_RUN on crafted packets) and namespace integration tests.
# Needs root for the BPF and namespace tests. BUILD_DIR overrides build/.
# Then the unit tests again under ASan/LSan/UBSan (tools/sanitize.sh --quick,
# build-asan/) and every fuzz target for 15 s (tools/fuzz.sh --ci,
# build-fuzz/). Every stage runs; the script fails if any of them failed.
# SKIP_SANITIZE=1 / SKIP_FUZZ=1 leave a stage out (local runs only).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)"
cd "$build"
failed=()
ctest --output-on-failure --timeout 600 "$@" || failed+=(ctest)

if [[ ${SKIP_SANITIZE:-0} != 1 ]]; then
    echo "== sanitizers: tools/sanitize.sh --quick"
    "$root/tools/sanitize.sh" --quick || failed+=(sanitize)
fi
if [[ ${SKIP_FUZZ:-0} != 1 ]]; then
    echo "== fuzzing: tools/fuzz.sh --ci"
    "$root/tools/fuzz.sh" --ci || failed+=(fuzz)
fi
if ((${#failed[@]})); then
    echo "test: FAILED: ${failed[*]}" >&2
    exit 1
fi
