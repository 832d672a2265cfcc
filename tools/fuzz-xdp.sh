#!/usr/bin/env bash
# Builds the BPF test binary and runs the XDP packet fuzz test
# (tests/bpf/xdp_fuzz_test.cpp) on 1,000,000 packets, then prints its
# figures: packets run, verdicts, generators, the seed, the time. On a
# failure it prints the failures too (seed, packet index, hex dumps).
# Needs root (BPF_PROG_TEST_RUN). PEERLB_FUZZ_PACKETS and PEERLB_FUZZ_SEED
# override the count and the seed; BUILD_DIR overrides build/.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}

if [ "$(id -u)" -ne 0 ]; then
    echo "fuzz-xdp: needs root to load BPF programs (BPF_PROG_TEST_RUN)" >&2
    exit 1
fi

cmake -S "$root" -B "$build" >/dev/null
cmake --build "$build" -j "$(nproc)" --target bpf_tests

export PEERLB_FUZZ_PACKETS=${PEERLB_FUZZ_PACKETS:-1000000}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

start=$(date +%s%N)
rc=0
"$build/tests/bpf_tests" --gtest_filter='XdpFuzz.*' --gtest_color=no >"$log" 2>&1 || rc=$?
end=$(date +%s%N)

if [ "$rc" -ne 0 ]; then
    cat "$log"
else
    grep -E '^\[ fuzz     \]|^\[  (PASSED|FAILED)  \]' "$log"
fi
printf 'fuzz-xdp: %s packets requested, wall time %d.%03d s, %s\n' "$PEERLB_FUZZ_PACKETS" \
    $(((end - start) / 1000000000)) $(((end - start) / 1000000 % 1000)) \
    "$([ "$rc" -eq 0 ] && echo passed || echo "FAILED (exit $rc)")"
exit "$rc"
