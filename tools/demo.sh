#!/usr/bin/env bash
# The peerlb demo: three nginx servers and a client in network namespaces
# (nothing outside them is touched), real curl and wrk traffic, and a table
# of who served what while server 1 is idle, then busy.
# Usage: tools/demo.sh [l2|ipip]   (as root; BUILD_DIR overrides build/)
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:-l2}
[[ $mode == l2 || $mode == ipip ]] || { echo "usage: demo.sh [l2|ipip]" >&2; exit 2; }
[[ $EUID -eq 0 ]] || { echo "demo: run as root (namespaces, BPF)" >&2; exit 1; }

source "$root/tests/integration/lib/cluster.sh"
CL_BUILD=${BUILD_DIR:-$root/build}
CL_PREFIX="plbdemo$$"
CL_TMP=$(mktemp -d /tmp/peerlb-demo.XXXXXX)
trap 'cl_down; rm -rf "$CL_TMP"' EXIT
trap 'exit 130' INT TERM

echo "== building"
cmake -S "$root" -B "$CL_BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
    cmake --build "$CL_BUILD" -j "$(nproc)" >/dev/null || { echo "demo: build failed" >&2; exit 1; }

echo "== cluster: s1 ${CL_NODE_ADDR[1]}, s2 ${CL_NODE_ADDR[2]}, s3 ${CL_NODE_ADDR[3]}," \
    "client $CL_CLIENT_ADDR; forwarding $mode"
cl_topology_up || exit 1
for n in 1 2 3; do cl_nginx_start "$n"; done
cl_wait_ready || exit 1
cl_peerlb_up "$mode" || exit 1

# table TITLE: 30 new connections to each service address, counted by server.
table() {
    echo
    echo "== $1"
    printf '   %-16s %6s %6s %6s\n' "service address" s1 s2 s3
    local n i who
    for n in 1 2 3; do
        declare -A count=([s1]=0 [s2]=0 [s3]=0)
        for i in $(seq 30); do
            who=$(cl_in c curl -s --max-time 3 "http://${CL_SVC_ADDR[$n]}/")
            [[ -n ${count[$who]+x} ]] && count[$who]=$((count[$who] + 1))
        done
        printf '   %-16s %6d %6d %6d\n' "${CL_SVC_ADDR[$n]}" "${count[s1]}" "${count[s2]}" \
            "${count[s3]}"
        unset count
    done
}

table "all servers at 10 % load: each keeps its own connections"
cl_set_load 1 90
table "s1 at 90 %: its new connections go to s2 and s3 (weighted by spare capacity)"
cl_set_load 3 75
table "s1 at 90 %, s3 at 75 %: only s2 is 20 points lower than either"

echo
echo "== wrk, 3 s, 32 connections to ${CL_SVC_ADDR[1]} (s1 at 90 %, s2 and s3 at 10 %)"
cl_set_load 3 10
cl_in c wrk -t2 -c32 -d3s "http://${CL_SVC_ADDR[1]}/" | sed -n '/requests in/p;/Requests\/sec/p'
echo
echo "== peerlb status on s1"
cl_peerlb 1 status
echo
echo "== peerlb stats on s1 (non-zero counters)"
cl_peerlb 1 stats | awk 'NR == 1 || $2 != 0'
echo
echo "== inspect with bpftool, e.g. s1's settings:"
bpftool map dump pinned "$(cl_pin_root 1)/eth0/lb_config" | head -20
echo
echo "demo: done; removing the namespaces"
