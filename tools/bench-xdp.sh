#!/usr/bin/env bash
# Per-packet cost of the XDP program's http-mode paths (SYN answered with a
# cookie, handshake ACK, first request with and without URI rules), through
# BPF_PROG_TEST_RUN: min / median / p99 ns per packet and the ratio to the
# cheapest path of the same program measured in the same run. A benchmark
# that prints figures, not a test. Needs root and a build (tools/test.sh).
#
#   tools/bench-xdp.sh [RUNS]      (runs per path, default 20000)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
if [[ $EUID -ne 0 ]]; then
    echo "bench-xdp: needs root to load BPF programs (BPF_PROG_TEST_RUN)" >&2
    exit 1
fi
cmake --build "$build" --target bpf_tests >/dev/null
BENCH_RUNS=${1:-20000} "$build/tests/bpf_tests" --gtest_also_run_disabled_tests \
    --gtest_filter='*DISABLED_PerPacketCost*' --gtest_color=no |
    sed -n '/per-packet cost/,/^\[/p' | grep -v '^\['
