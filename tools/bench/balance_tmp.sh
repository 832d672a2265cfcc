#!/usr/bin/env bash
# Balancing quality (benchmark part 2): three servers in namespaces, each an
# application of known capacity (peerlb-bench-app: W workers, S ms per
# request), an open-loop Poisson client (peerlb-bench-loadgen) at a fixed rate
# skewed 80/10/10 across the three service addresses, one new connection per
# request. The same offered load, in one run, against:
#   none      no balancing: each address served by its owner
#   haproxy   a central HAProxy, leastconn, in its own namespace
#   least     peerlb agents, pick = least
#   weighted  peerlb agents, pick = weighted (the default)
#             both with load.source = "connections" (the default source)
#   least-published, weighted-published
#             the same with load.source = "file": the application publishes
#             its load (requests in flight over its workers) every 5 ms
# Per configuration: the client's JSON summary (completed rate, latency
# percentiles) and each server's in-flight requests every 100 ms.
#
# Usage: balance.sh BUILD_DIR OUT_DIR
# Env: BENCH_RATE (req/s, default 600), BENCH_SECONDS (measured, default 20),
#      BENCH_WORKERS (8), BENCH_SERVICE_MS (20), BENCH_CONFIGS (all six),
#      BENCH_INTERVAL_MS (heartbeat, 500), BENCH_CONN_COST (100 / workers),
#      BENCH_LOAD_EXTRA / BENCH_BALANCE_EXTRA
#      (more TOML lines for the agents' [load] / [balance], to try settings).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$root/tools/testbed/cluster.sh"
source "$here/lib.sh"

CL_BUILD=$(cd "${1:?usage: balance.sh BUILD_DIR OUT_DIR}" && pwd)
out=${2:?usage: balance.sh BUILD_DIR OUT_DIR}
mkdir -p "$out/balance"
out=$(cd "$out/balance" && pwd)

rate=${BENCH_RATE:-600}
seconds=${BENCH_SECONDS:-20}
workers=${BENCH_WORKERS:-8}
service_ms=${BENCH_SERVICE_MS:-20}
warmup=3
configs=(${BENCH_CONFIGS:-none haproxy least weighted least-published weighted-published})

CL_PREFIX="plb$$b"
CL_TMP=$(mktemp -d /tmp/peerlb-bench-balance.XXXXXX)
# Load = established connections on port 80 over the workers: 100 % when
# every worker is busy. conn_cost: one new connection is one worker's share.
CONNECTIONS_LOAD_TOML="source = \"inflight\"
capacity = $workers
${BENCH_LOAD_EXTRA:-}"
CL_BALANCE_EXTRA="conn_cost = ${BENCH_CONN_COST:-$(awk -v w="$workers" 'BEGIN { printf "%.2f", 100 / w }')}
${BENCH_BALANCE_EXTRA:-}"
CL_HEALTH_PATH=/health
CL_INTERVAL_MS=${BENCH_INTERVAL_MS:-500}
APP_PIDS=()

stop_apps() {
    local pid
    for pid in "${APP_PIDS[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
    APP_PIDS=()
}
cleanup() {
    stop_apps
    bench_haproxy_stop
    cl_down
    ip netns del "$(cl_ns lb)" 2>/dev/null
    rm -rf "$CL_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_apps CONFIG: the three applications, stats under $out/CONFIG-sN.stats.
start_apps() {
    local config=$1 n
    for n in 1 2 3; do
        rm -f "$out/$config-s$n.stats"
        ip netns exec "$(cl_ns "s$n")" "$CL_BUILD/peerlb-bench-app" --port 80 --workers "$workers" \
            --service-ms "$service_ms" --name "s$n" --stats "$out/$config-s$n.stats" \
            --stats-interval-ms 100 --load-file "$CL_TMP/load-s$n" 2>>"$CL_TMP/app-s$n.log" &
        APP_PIDS+=($!)
    done
    cl_wait_ready || return 1
}

# run_client CONFIG TARGET...: the open-loop client; its summary in CONFIG.json.
run_client() {
    local config=$1 targets=() t
    shift
    for t in "$@"; do targets+=(--target "$t"); done
    bench_log "balance: $config: $rate req/s for ${seconds}s"
    cl_now_ms >"$out/$config.start" # the time axis of the report's plots
    ip netns exec "$(cl_ns c)" "$CL_BUILD/peerlb-bench-loadgen" --rate "$rate" --duration "$seconds" \
        --warmup "$warmup" --timeout-ms 5000 --seed 42 "${targets[@]}" --path /work \
        --log "$out/$config.requests.csv" >"$out/$config.json" ||
        { echo "balance: the client failed ($config)" >&2; return 1; }
}

skewed=("${CL_SVC_ADDR[1]}:80:80" "${CL_SVC_ADDR[2]}:80:10" "${CL_SVC_ADDR[3]}:80:10")

# agents_up CONFIG: three agents on fresh maps (flow entries outlive their
# connections, and a reused client port would follow the previous run's
# decision).
agents_up() {
    local n
    for n in 1 2 3; do
        rm -rf "$(cl_pin_root "$n")" "$CL_TMP/run-s$n"
        # *-published: the library's default, the file the application writes.
        CL_PICK=${1%%-*} CL_LOAD_TOML=$([[ $1 == *-published ]] || echo "$CONNECTIONS_LOAD_TOML") \
            cl_agent_config "$n"
        cl_agent_start "$n" || return 1
    done
    # Every agent sees both peers alive and its data plane is attached.
    cl_wait_until 60000 cl_all_see_all >/dev/null ||
        { echo "balance: agents did not meet" >&2; cl_agent_logs >&2; return 1; }
}

# agents_down: agents stopped, data planes detached (a stopped agent leaves
# its data plane attached on purpose: a restart loses no flow).
agents_down() {
    local n
    for n in 1 2 3; do cl_agent_stop "$n"; done
    cl_peerlb_down
}

cl_topology_up && bench_lb_up && bench_client_tuning || exit 1
{
    echo "rate=$rate seconds=$seconds warmup=$warmup workers=$workers service_ms=$service_ms"
    echo "capacity_per_server=$((workers * 1000 / service_ms)) interval_ms=$CL_INTERVAL_MS"
} >"$out/params"

for config in "${configs[@]}"; do
    start_apps "$config" || exit 1
    case $config in
    none)
        run_client none "${skewed[@]}" || exit 1
        ;;
    haproxy)
        bench_haproxy_start || exit 1
        run_client haproxy "$BENCH_LB_ADDR:80:100" || exit 1
        bench_haproxy_stop
        ;;
    least | weighted | least-published | weighted-published)
        agents_up "$config" || exit 1
        run_client "$config" "${skewed[@]}" || exit 1
        for n in 1 2 3; do cl_agent_cli "$n" stats --json >"$out/$config-s$n.counters.json" 2>/dev/null; done
        agents_down
        ;;
    *)
        echo "balance: unknown configuration $config" >&2
        exit 2
        ;;
    esac
    stop_apps
done
bench_log "balance: done, results in $out"
