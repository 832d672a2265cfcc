#!/usr/bin/env bash
# Per-packet cost of the XDP program, path by path (pass, forward, new SYN,
# http mode), beside floor programs (XDP_PASS; parse; parse and the two map
# lookups), through BPF_PROG_TEST_RUN: min / median / p99 / max ns per
# packet and the ratio to the floors, measured in the same run. A benchmark
# that prints figures, not a test. Needs root and a build (tools/test.sh).
# Options after RUNS go to bench_xdp (--csv FILE, --family, --batch, --cpu).
#
#   tools/bench-xdp.sh [RUNS [BENCH_XDP_OPTIONS...]]   (runs per path, default 20000)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
if [[ $EUID -ne 0 ]]; then
    echo "bench-xdp: needs root to load BPF programs (BPF_PROG_TEST_RUN)" >&2
    exit 1
fi
runs=${1:-20000}
shift || true
# Configure first: a build dir from before bench_xdp existed has no rule for it.
cmake -S "$root" -B "$build" >/dev/null
cmake --build "$build" --target bench_xdp >/dev/null
exec "$build/tests/bench_xdp" --runs "$runs" "$@"
