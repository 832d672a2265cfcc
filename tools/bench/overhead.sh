#!/usr/bin/env bash
# End-to-end overhead (benchmark part 3): wrk against nginx in the cluster
# topology, to s1's service address, in one run:
#   direct        no XDP program on the servers
#   xdp-pass      an XDP program that only passes, on every server: what any
#                 native XDP program costs on veth, apart from peerlb's work
#   kept          peerlb attached, s1 idle: it keeps every connection
#   forward-l2    peerlb, s1 busy: every connection handed to s2/s3 (MAC rewrite)
#   forward-ipip  the same, IP-in-IP encapsulated
#   haproxy       a central HAProxy (TCP mode, leastconn) in its own namespace
#   direct-again  the first row once more: the run's own noise
# each with keep-alive connections (the established-flow path) and with one
# connection per request (the SYN path every time). Loads are written with
# peerlb-mapctl, no agents, so nothing changes during a measurement.
#
# Usage: overhead.sh BUILD_DIR OUT_DIR
# Env: BENCH_WRK_SECONDS (default 3), BENCH_WRK_REPEAT (3), BENCH_WRK_CONNS (32).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$root/tools/testbed/cluster.sh"
source "$here/lib.sh"

CL_BUILD=$(cd "${1:?usage: overhead.sh BUILD_DIR OUT_DIR}" && pwd)
out=${2:?usage: overhead.sh BUILD_DIR OUT_DIR}
mkdir -p "$out/overhead"
out=$(cd "$out/overhead" && pwd)

wrk_seconds=${BENCH_WRK_SECONDS:-3}
wrk_repeat=${BENCH_WRK_REPEAT:-3}
wrk_conns=${BENCH_WRK_CONNS:-32}
CL_PREFIX="plb$$o"
CL_TMP=$(mktemp -d /tmp/peerlb-bench-overhead.XXXXXX)
cleanup() {
    bench_haproxy_stop
    cl_down
    ip netns del "$(cl_ns lb)" 2>/dev/null
    rm -rf "$CL_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

svc1=${CL_SVC_ADDR[1]}

# served_by ADDR: the server that answers a new connection to ADDR.
served_by() { cl_in c curl -s --max-time 2 "http://$1/"; }

# expect_route CONFIG ADDR WANT...: the path is what the row claims to measure
# (a mislabeled row would be a lie), checked on a few new connections.
expect_route() {
    local config=$1 addr=$2 i who
    shift 2
    for i in 1 2 3 4 5 6; do
        who=$(served_by "$addr")
        [[ " $* " == *" $who "* ]] || {
            echo "overhead: $config: a connection to $addr was served by '$who', expected $*" >&2
            return 1
        }
    done
}

# fresh_peerlb MODE: peerlb attached with empty maps. Flow entries outlive
# their connections (LRU), and a new connection on a reused client port
# follows its tuple's old decision: without this, the forwarded rows would
# partly measure the kept path of the row before. No per-connection charge
# (conn_cost_bp 0): without an agent to reset it at each load update, it
# would pile up over thousands of connections and flip the decision.
fresh_peerlb() {
    local n
    cl_peerlb_down
    for n in 1 2 3; do rm -rf "$(cl_pin_root "$n")"; done
    cl_peerlb_up "$1" || return 1
    for n in 1 2 3; do cl_mapctl "$n" config conn_cost_bp 0 || return 1; done
}

# syn_counts: s1's SYN decisions so far, "kept forwarded".
syn_counts() {
    cl_peerlb 1 stats --json | python3 -c '
import json, sys
c = json.load(sys.stdin)["counters"]
print(sum(v["packets"] for k, v in c.items() if k.startswith("syn_local")),
      sum(v["packets"] for k, v in c.items() if k.startswith("syn_forward")))'
}

# expect_decisions CONFIG kept|forwarded: every SYN s1 decided during the
# measurement went the way the row says.
expect_decisions() {
    local counts
    counts=($(syn_counts)) || return 1
    case $2 in
    kept) ((counts[1] == 0)) ;;
    forwarded) ((counts[0] == 0)) ;;
    esac || {
        echo "overhead: $1: s1 kept ${counts[0]} and forwarded ${counts[1]} new connections" >&2
        return 1
    }
}

# measure CONFIG ADDR: wrk with keep-alive, then one connection per request,
# BENCH_WRK_REPEAT times each (the report takes the median run).
measure() {
    local config=$1 addr=$2 i
    bench_log "overhead: $config"
    for ((i = 1; i <= wrk_repeat; i++)); do
        cl_in c wrk -t2 -c"$wrk_conns" -d"${wrk_seconds}s" --latency "http://$addr/" \
            >"$out/$config-keepalive-$i.txt" 2>&1 || return 1
        cl_in c wrk -t2 -c"$wrk_conns" -d"${wrk_seconds}s" --latency -H "Connection: close" \
            "http://$addr/" >"$out/$config-close-$i.txt" 2>&1 || return 1
    done
}

# topology_up: a fresh cluster for each row, so that no row inherits the
# TIME_WAIT sockets and flow entries of the rows before it.
topology_up() {
    bench_haproxy_stop
    cl_down
    ip netns del "$(cl_ns lb)" 2>/dev/null
    cl_topology_up && bench_lb_up && bench_client_tuning || return 1
    for n in 1 2 3; do cl_nginx_start "$n"; done
    cl_wait_ready
}

fresh_peerlb_row() { topology_up && fresh_peerlb "$1"; } # a fresh cluster, peerlb MODE

rm -f "$out"/*.txt
echo "wrk_seconds=$wrk_seconds wrk_repeat=$wrk_repeat wrk_conns=$wrk_conns wrk_threads=2" >"$out/params"

topology_up || exit 1
expect_route direct "$svc1" s1 && measure direct "$svc1" || exit 1

topology_up || exit 1
for n in 1 2 3; do
    ip -n "$(cl_ns "s$n")" link set eth0 xdp obj "$CL_BUILD/bpf/xdp_pass.bpf.o" sec xdp || exit 1
done
expect_route xdp-pass "$svc1" s1 && measure xdp-pass "$svc1" || exit 1

fresh_peerlb_row l2 || exit 1
expect_route kept "$svc1" s1 && measure kept "$svc1" && expect_decisions kept kept || exit 1

fresh_peerlb_row l2 && cl_set_load 1 90 || exit 1
expect_route forward-l2 "$svc1" s2 s3 && measure forward-l2 "$svc1" &&
    expect_decisions forward-l2 forwarded || exit 1

fresh_peerlb_row ipip && cl_set_load 1 90 || exit 1
expect_route forward-ipip "$svc1" s2 s3 && measure forward-ipip "$svc1" &&
    expect_decisions forward-ipip forwarded || exit 1

topology_up || exit 1
bench_haproxy_start || exit 1
expect_route haproxy "$BENCH_LB_ADDR" s1 s2 s3 && measure haproxy "$BENCH_LB_ADDR" || exit 1

# The first row again: how far apart two measurements of one path are.
topology_up || exit 1
expect_route direct-again "$svc1" s1 && measure direct-again "$svc1" || exit 1
bench_log "overhead: done, results in $out"
