#!/usr/bin/env bash
# Balancing quality (benchmark part 2): servers in namespaces, each an
# application of known capacity (peerlb-bench-app: W workers, S ms per
# request), an open-loop Poisson client (peerlb-bench-loadgen), one new
# connection per request, spread over the servers' service addresses as
# cached DNS would. Scenarios (every configuration of a scenario gets the
# same offered load, the same arrivals for a repeat's seed):
#   equal     3 servers x 8 workers, arrivals 80/10/10, 50 % of capacity
#   unequal   3 servers x 4 / 8 / 12 workers, arrivals 60/20/20 (the small
#             server gets 2x its capacity), 57.5 % of capacity
#   single    3 servers x 8 workers, every arrival to s1, 50 %
#   bursts    as equal, but arrivals come 500 ms on at twice the mean rate,
#             500 ms off (50 % of capacity on average, 100 % in a burst)
#   five      5 servers x 8 workers, arrivals 60/10/10/10/10, 50 %
#   five-unequal  5 servers x 4 / 8 / 8 / 8 / 12 workers, arrivals
#             60/10/10/10/10 (the small server gets 3.6x its capacity), 50 %
#   five-single   5 servers x 8 workers, every arrival to s1, 50 %
# Configurations:
#   haproxy-leastconn  a central HAProxy in its own namespace, balance
#                      leastconn, weight = workers
#   haproxy-random2    the same with balance random(2) (power of two choices)
#   peerlb             the agents, load.source = "inflight" (connections open
#                      on the service port, counted by the data plane) over
#                      the workers, [node] weight = workers / 8, pick weighted
#   peerlb-tight       the same with accept_below = 0, min_difference = 10
#                      (thresholds set for balance first)
#   peerlb-full        peerlb with choices = 0: every candidate compared
#                      (the full scan) instead of d = 2 drawn ones; the
#                      scenarios of five nodes (with two peers, d = 2 is
#                      the full scan) compare it with peerlb
# and, only when asked for in BENCH_CONFIGS: none (no balancing: each address
# served by its owner), least / weighted (peerlb, load.source =
# "connections", conn_cost one worker's share), least-published /
# weighted-published (load.source = "file": the application publishes its
# requests in flight every 5 ms), haproxy (= haproxy-leastconn).
# Each (scenario, configuration) runs BENCH_REPEATS times, the
# configurations interleaved, each on a fresh topology (namespaces),
# applications, agents and pins. Per
# run (SCENARIO/CONFIG-rK.*): the client's JSON summary (completed rate,
# latency percentiles), each server's in-flight requests every 100 ms
# (-sN.stats), and for peerlb each node's counters (-sN.counters.json) and
# its agent's log (-sN.agent.log).
#
# Usage: balance.sh BUILD_DIR OUT_DIR
# Env: BENCH_SCENARIOS (all seven), BENCH_CONFIGS (haproxy-leastconn
#      haproxy-random2 peerlb peerlb-tight peerlb-full; peerlb-full runs only
#      in the five-node scenarios), BENCH_REPEATS (3), BENCH_SECONDS (measured,
#      12), BENCH_WARMUP (2), BENCH_SERVICE_MS (20), BENCH_LOAD_SCALE (1: the
#      scenarios' offered loads times this), BENCH_INTERVAL_MS (heartbeat,
#      500), BENCH_LOAD_EXTRA / BENCH_BALANCE_EXTRA / BENCH_NODE_EXTRA (more
#      TOML lines for the agents' [load] / [balance] / [node], to try
#      settings; peerlb_config below is the one place of the rest).
# shellcheck source-path=SCRIPTDIR
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=../testbed/cluster.sh
source "$root/tools/testbed/cluster.sh"
source "$here/lib.sh"

CL_BUILD=$(cd "${1:?usage: balance.sh BUILD_DIR OUT_DIR}" && pwd)
res=${2:?usage: balance.sh BUILD_DIR OUT_DIR}
# A fresh directory: the report reads whatever it holds.
rm -rf "$res/balance"
mkdir -p "$res/balance"
res=$(cd "$res/balance" && pwd)

seconds=${BENCH_SECONDS:-12}
warmup=${BENCH_WARMUP:-2}
repeats=${BENCH_REPEATS:-3}
service_ms=${BENCH_SERVICE_MS:-20}
load_scale=${BENCH_LOAD_SCALE:-1}
read -ra scenarios <<<"${BENCH_SCENARIOS:-equal unequal single bursts five five-unequal five-single}"
read -ra configs <<<"${BENCH_CONFIGS:-haproxy-leastconn haproxy-random2 peerlb peerlb-tight peerlb-full}"

CL_PREFIX="plb$$b"
CL_TMP=$(mktemp -d /tmp/peerlb-bench-balance.XXXXXX)
CL_HEALTH_PATH=/health
CL_INTERVAL_MS=${BENCH_INTERVAL_MS:-500}
APP_PIDS=()

stop_apps() {
    local pid
    for pid in "${APP_PIDS[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
    APP_PIDS=()
}
topology_down() {
    bench_haproxy_stop
    cl_down
    ip netns del "$(cl_ns lb)" 2>/dev/null
    return 0
}
cleanup() {
    stop_apps
    topology_down
    rm -rf "$CL_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# scenario NAME: the scenario's servers and arrivals: sc_workers (one per
# server), sc_shares (% of the arrivals to each server's address), sc_load (%
# of the cluster's capacity offered on average), sc_burst ("ON OFF" ms, or
# empty), and from them sc_rate (requests/s).
scenario() {
    sc_burst=
    case $1 in
    equal) sc_workers=(8 8 8) sc_shares=(80 10 10) sc_load=50 ;;
    unequal) sc_workers=(4 8 12) sc_shares=(60 20 20) sc_load=57.5 ;;
    single) sc_workers=(8 8 8) sc_shares=(100 0 0) sc_load=50 ;;
    bursts) sc_workers=(8 8 8) sc_shares=(80 10 10) sc_load=50 sc_burst="500 500" ;;
    five) sc_workers=(8 8 8 8 8) sc_shares=(60 10 10 10 10) sc_load=50 ;;
    five-unequal) sc_workers=(4 8 8 8 12) sc_shares=(60 10 10 10 10) sc_load=50 ;;
    five-single) sc_workers=(8 8 8 8 8) sc_shares=(100 0 0 0 0) sc_load=50 ;;
    *)
        echo "balance: unknown scenario '$1' (equal, unequal, single, bursts, five, five-unequal, five-single)" >&2
        return 1
        ;;
    esac
    local total=0 w
    for w in "${sc_workers[@]}"; do total=$((total + w)); done
    sc_rate=$(awk -v w="$total" -v s="$service_ms" -v l="$sc_load" -v k="$load_scale" \
        'BEGIN { printf "%.0f", w * 1000 / s * l / 100 * k }')
}

# The peerlb agents' settings for server N (W workers), for the next
# cl_agent_config (CL_LOAD_TOML, CL_NODE_EXTRA, ...): the one place to
# change when the agent's keys change. Load: the connections open on the
# service port, counted by the data plane, over the workers (100 % = every
# worker busy); weight: the server's capacity relative to 8 workers.
# peerlb-tight: the same with the thresholds set for balance first (T1 0:
# never keep a connection a peer T2 lower could take; T2 10 points).
peerlb_config() { # peerlb_config CONFIG N W
    local config=$1
    shift
    if [[ $config == peerlb-tight ]]; then
        CL_ACCEPT_BELOW=0 CL_MIN_DIFFERENCE=10
    else
        unset CL_ACCEPT_BELOW CL_MIN_DIFFERENCE # the defaults, 50 and 20
    fi
    local choices=
    [[ $config == peerlb-full ]] && choices='choices = 0'

    CL_LOAD_TOML=$(printf 'source = "inflight"\ncapacity = %s\n%s' "$2" "${BENCH_LOAD_EXTRA:-}")
    CL_NODE_EXTRA=$(printf 'weight = %s\n%s' "$(awk -v w="$2" 'BEGIN { printf "%g", w / 8 }')" \
        "${BENCH_NODE_EXTRA:-}")
    CL_PICK=weighted
    CL_BALANCE_EXTRA=$(printf '%s\n%s' "$choices" "${BENCH_BALANCE_EXTRA:-}")
}

# legacy_config CONFIG N W: the earlier configurations (least, weighted and
# their -published variants): load.source "connections" over the workers
# with conn_cost one worker's share, or the file the application writes.
legacy_config() {
    CL_PICK=${1%%-*}
    if [[ $1 == *-published ]]; then
        CL_LOAD_TOML=$(printf 'source = "file"\nfile = "%s"\n%s' "$CL_TMP/load-s$2" "${BENCH_LOAD_EXTRA:-}")
    else
        CL_LOAD_TOML=$(printf 'source = "connections"\ncapacity = %s\n%s' "$3" "${BENCH_LOAD_EXTRA:-}")
    fi
    CL_NODE_EXTRA=${BENCH_NODE_EXTRA:-}
    CL_BALANCE_EXTRA="conn_cost = $(awk -v w="$3" 'BEGIN { printf "%.2f", 100 / w }')
${BENCH_BALANCE_EXTRA:-}"
}

# start_apps PREFIX: one application per server, stats in PREFIX-sN.stats.
start_apps() {
    local prefix=$1 n
    for n in $(cl_ids); do
        rm -f "$prefix-s$n.stats"
        ip netns exec "$(cl_ns "s$n")" "$CL_BUILD/peerlb-bench-app" --port 80 \
            --workers "${sc_workers[n - 1]}" --service-ms "$service_ms" --name "s$n" \
            --stats "$prefix-s$n.stats" --stats-interval-ms 100 --load-file "$CL_TMP/load-s$n" \
            2>>"$CL_TMP/app-s$n.log" &
        APP_PIDS+=($!)
    done
    cl_wait_ready || return 1
}

# run_client PREFIX SEED TARGET...: the open-loop client; its summary in
# PREFIX.json, the time it started in PREFIX.start (the report's time axis).
run_client() {
    local prefix=$1 seed=$2 targets=() t burst=()
    shift 2
    for t in "$@"; do targets+=(--target "$t"); done
    [[ -n $sc_burst ]] && burst=(--burst-on-ms "${sc_burst% *}" --burst-off-ms "${sc_burst#* }")
    cl_now_ms >"$prefix.start"
    ip netns exec "$(cl_ns c)" "$CL_BUILD/peerlb-bench-loadgen" --rate "$sc_rate" \
        --duration "$seconds" --warmup "$warmup" --timeout-ms 5000 --seed "$seed" "${burst[@]}" \
        "${targets[@]}" --path /work --log "$prefix.requests.csv" >"$prefix.json" ||
        { echo "balance: the client failed ($prefix)" >&2; return 1; }
}

# agents_up CONFIG: one agent per server on fresh maps (flow entries outlive
# their connections, and a reused client port would follow the previous
# run's decision).
agents_up() {
    local config=$1 n
    for n in $(cl_ids); do
        rm -rf "$(cl_pin_root "$n")" "$CL_TMP/run-s$n"
        if [[ $config == peerlb || $config == peerlb-tight || $config == peerlb-full ]]; then
            peerlb_config "$config" "$n" "${sc_workers[n - 1]}"
        else
            legacy_config "$config" "$n" "${sc_workers[n - 1]}"
        fi
        cl_agent_config "$n"
        cl_agent_start "$n" || return 1
    done
    # Every agent sees its peers alive and its data plane is attached; an
    # agent that exits (a configuration it refuses) fails the run at once.
    local until=$(($(cl_now_ms) + 60000))
    until cl_all_see_all; do
        for n in $(cl_ids); do
            kill -0 "${CL_AGENT_PIDS[n]}" 2>/dev/null && continue
            echo "balance: the agent of s$n exited; its configuration:" >&2
            cat "$CL_TMP/s$n.toml" >&2
            cl_agent_logs >&2
            return 1
        done
        (($(cl_now_ms) > until)) && { echo "balance: agents did not meet" >&2; cl_agent_logs >&2; return 1; }
        sleep 0.1
    done
}

# agents_down: agents stopped, data planes detached (a stopped agent leaves
# its data plane attached on purpose: a restart loses no flow).
agents_down() {
    local n
    for n in $(cl_ids); do cl_agent_stop "$n"; done
    cl_peerlb_down
}

# run_one CONFIG PREFIX SEED: one measured run of the current scenario.
run_one() {
    local config=$1 prefix=$2 seed=$3 n skewed=() weights=()
    for n in $(cl_ids); do
        ((sc_shares[n - 1] > 0)) && skewed+=("${CL_SVC_ADDR[$n]}:80:${sc_shares[n - 1]}")
    done
    start_apps "$prefix" || return 1
    case $config in
    none)
        run_client "$prefix" "$seed" "${skewed[@]}" || return 1
        ;;
    haproxy | haproxy-leastconn | haproxy-random2)
        for n in $(cl_ids); do weights+=("${sc_workers[n - 1]}"); done
        local algo=leastconn
        [[ $config == haproxy-random2 ]] && algo="random(2)"
        bench_haproxy_start "$algo" "${weights[@]}" || return 1
        run_client "$prefix" "$seed" "$BENCH_LB_ADDR:80:100" || return 1
        bench_haproxy_stop
        ;;
    peerlb | peerlb-tight | peerlb-full | least | weighted | least-published | weighted-published)
        agents_up "$config" || return 1
        run_client "$prefix" "$seed" "${skewed[@]}" || return 1
        for n in $(cl_ids); do
            cl_agent_cli "$n" stats --json >"$prefix-s$n.counters.json" 2>/dev/null
        done
        agents_down
        for n in $(cl_ids); do mv "$CL_TMP/agent-s$n.log" "$prefix-s$n.agent.log" 2>/dev/null; done
        ;;
    *)
        echo "balance: unknown configuration '$config'" >&2
        return 2
        ;;
    esac
    stop_apps
}

for s in "${scenarios[@]}"; do scenario "$s" || exit 2; done
for c in "${configs[@]}"; do
    [[ $c =~ ^(none|haproxy|haproxy-leastconn|haproxy-random2|peerlb|peerlb-tight|peerlb-full|least|weighted|least-published|weighted-published)$ ]] ||
        { echo "balance: unknown configuration '$c'" >&2; exit 2; }
done
{
    echo "seconds=$seconds warmup=$warmup repeats=$repeats service_ms=$service_ms"
    echo "interval_ms=$CL_INTERVAL_MS load_scale=$load_scale"
    echo "scenarios=$(IFS=,; echo "${scenarios[*]}") configs=$(IFS=,; echo "${configs[*]}")"
} >"$res/params"

failed=()
for s in "${scenarios[@]}"; do
    scenario "$s"
    mkdir -p "$res/$s"
    {
        echo "scenario=$s servers=${#sc_workers[@]} rate=$sc_rate load_pct=$sc_load"
        echo "workers=$(IFS=,; echo "${sc_workers[*]}") shares=$(IFS=,; echo "${sc_shares[*]}")"
        if [[ -n $sc_burst ]]; then
            echo "burst_on_ms=${sc_burst% *} burst_off_ms=${sc_burst#* }"
        else
            echo "burst_on_ms=0 burst_off_ms=0"
        fi
    } >"$res/$s/params"
    cl_server_count "${#sc_workers[@]}" || exit 1
    for ((k = 1; k <= repeats; k++)); do
        for config in "${configs[@]}"; do
            # Two peers: d = 2 draws them both, the full scan is peerlb.
            [[ $config == peerlb-full ]] && ((${#sc_workers[@]} < 5)) && continue
            bench_log "balance: $s: $config, run $k of $repeats: $sc_rate req/s" \
                "(${sc_shares[*]}; workers ${sc_workers[*]}${sc_burst:+; bursts $sc_burst ms}), ${seconds}s"
            # A fresh topology for every run: nothing of the previous one
            # (the servers' TIME_WAIT sockets, the address a stopping agent
            # took over and announced, the client's ARP cache) reaches it.
            cl_topology_up && bench_lb_up && bench_client_tuning || exit 1
            run_one "$config" "$res/$s/$config-r$k" $((41 + k)) && { topology_down; continue; }
            # The other configurations still run; the part fails at the end.
            failed+=("$s/$config-r$k")
            stop_apps
            bench_haproxy_stop
            agents_down
            rm -f "$res/$s/$config-r$k".* "$res/$s/$config-r$k"-s*
            topology_down
        done
    done
done
if ((${#failed[@]})); then
    echo "balance: FAILED runs: ${failed[*]}" >&2
    exit 1
fi
bench_log "balance: done, results in $res"
