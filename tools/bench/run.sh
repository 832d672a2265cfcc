#!/usr/bin/env bash
# The benchmark suite: builds peerlb (as tools/test.sh does), runs every part
# and writes tables, plots (PNG, gnuplot) and a markdown summary. Figures are
# ratios or comparisons measured in this run on this machine; nothing here
# passes or fails on a time. Needs root; touches only namespaces it creates.
#
#   tools/bench/run.sh [--out DIR] [--parts xdp,balance,overhead,failover,shared,choices,fanin,membership]
#
#   xdp       per-packet cost of the XDP program beside floor programs
#   balance   balancing quality, seven scenarios: peerlb vs HAProxy leastconn,
#             random(2); at five nodes also d = 2 against the full scan
#   overhead  wrk against nginx: direct, kept, forwarded (l2, ipip), HAProxy
#   failover  node death to first new connection: peerlb vs keepalived
#   shared    shared addresses (ECMP through BIRD): 10 000 held connections
#             through drains, load moves, a join and a death; time to a
#             converged table, hops per delivered packet
#   choices   power of d choices against the full scan, simulated at 5 and
#             100 nodes with the decision's own code (tools/sim/balance_sim.cpp)
#   fanin     one agent's CPU taking the signed heartbeats of 0, 250, 500
#             and 1000 senders at 2 per second each
#   membership  1000 agents' membership simulated (tools/sim/membership_sim.cpp):
#             time to detect a death, false deaths at 0, 1 and 5 % loss with
#             starved nodes, traffic and CPU per node (tools/bench/membership.sh)
#
# DIR defaults to bench-results/ in the repository (the summary the README
# links). BUILD_DIR overrides build/. Dependencies: tools/install-deps.sh --bench.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/tools/bench
build=${BUILD_DIR:-$root/build}
out=$root/bench-results
parts=xdp,balance,overhead,failover,shared,choices,fanin,membership

# usage CODE: this file's header comment (on stderr for an error), exit CODE.
usage() {
    local fd=1
    (($1)) && fd=2
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&"$fd"
    exit "$1"
}
while (($#)); do
    case $1 in
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --parts) parts=${2:?--parts needs a list}; shift 2 ;;
    -h | --help) usage 0 ;;
    *) echo "bench: unknown argument '$1'" >&2; usage 2 ;;
    esac
done
for p in ${parts//,/ }; do
    [[ $p =~ ^(xdp|balance|overhead|failover|shared|choices|fanin|membership)$ ]] || { echo "bench: unknown part '$p'" >&2; exit 2; }
done
if [[ $EUID -ne 0 ]]; then
    echo "bench: needs root (BPF programs, network namespaces)" >&2
    exit 1
fi
for tool in haproxy keepalived gnuplot wrk nginx; do
    command -v "$tool" >/dev/null || { echo "bench: $tool missing: run tools/install-deps.sh --bench" >&2; exit 1; }
done

started=$(date +%s)
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null
mkdir -p "$out"
out=$(cd "$out" && pwd)
machine_info() {
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(
        [[ -n $(git -C "$root" status --porcelain -- . ':!bench-results' 2>/dev/null) ]] &&
            echo '+changes')"
    echo "kernel=$(uname -r)"
    echo "cpus=$(nproc)"
    echo "cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
}
# A run of every part says where the whole summary comes from; a run of
# some parts keeps the others' figures and says, in each part's directory,
# where the new ones come from (the report shows it in their sections).
all_parts=0
[[ $parts == xdp,balance,overhead,failover,shared,choices,fanin,membership ]] && all_parts=1
if ((all_parts)); then
    machine_info >"$out/machine"
    rm -f "$out"/*/machine
fi

failed=()
run_part() {
    local part=$1
    shift
    echo "== bench: $part" >&2
    local t0=$SECONDS
    "$@" || failed+=("$part")
    if ((all_parts)); then
        echo "$part=$((SECONDS - t0))" >>"$out/durations"
    else
        mkdir -p "$out/$part"
        { machine_info; echo "duration=$((SECONDS - t0))"; } >"$out/$part/machine"
    fi
}
((all_parts)) && rm -f "$out/durations"
for p in ${parts//,/ }; do
    case $p in
    xdp)
        mkdir -p "$out/xdp"
        run_part xdp "$build/tests/bench_xdp" --csv "$out/xdp/xdp_cost.csv"
        ;;
    balance) run_part balance "$here/balance.sh" "$build" "$out" ;;
    overhead) run_part overhead "$here/overhead.sh" "$build" "$out" ;;
    failover) run_part failover "$here/failover.sh" "$build" "$out/failover" ;;
    shared)
        # The integration test's phases at full size, its figures kept.
        mkdir -p "$out/shared"
        rm -f "$out/shared/phases.jsonl"
        run_part shared env SHARED_CONNS="${SHARED_CONNS:-10000}" \
            SHARED_REPORT="$out/shared/phases.jsonl" \
            bash "$root/tests/integration/shared_test.sh" "$build"
        ;;
    choices)
        # 5 nodes (the balance part's five-node scenarios' size) and 100, at
        # half and at 80 % of the cluster's capacity.
        mkdir -p "$out/choices"
        rm -f "$out/choices"/*.json
        run_part choices bash -c '
            for n in 5 100; do
                for load in 50 80; do
                    "$1" --nodes "$n" --load "$load" --repeats 5 --seconds 60 \
                        --configs full,d=2,central --json "$2/n$n-load$load.json" || exit 1
                done
            done' _ "$build/peerlb-balance-sim" "$out/choices"
        ;;
    fanin) run_part fanin "$here/fanin.sh" "$build" "$out" ;;
    membership) run_part membership "$here/membership.sh" "$build" "$out/membership" ;;
    esac
done
((all_parts)) && echo "total=$(($(date +%s) - started))" >>"$out/durations"
python3 "$here/report.py" "$out" || failed+=(report)
if ((${#failed[@]})); then
    echo "bench: FAILED: ${failed[*]} (the summary shows what did run)" >&2
    exit 1
fi
echo "bench: summary in $out/summary.md" >&2
