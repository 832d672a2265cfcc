#!/usr/bin/env bash
# Builds peerlb and runs every test: unit (decision arithmetic), BPF
# (BPF_PROG_TEST_RUN on crafted packets) and namespace integration tests.
# Needs root for the BPF and namespace tests. BUILD_DIR overrides build/.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)"
cd "$build"
ctest --output-on-failure --timeout 600 "$@"
