#!/usr/bin/env bash
# The peerlb demo: three nginx servers, each with its peerlb agent, and a
# client in network namespaces (nothing outside them is touched); real curl
# and wrk traffic, and a table of who served what while server 1 is idle,
# then busy, then while an agent is down. Loads are set through the agents'
# `load.source = "file"`, so the demo does not depend on this machine's speed.
# Usage: tools/demo.sh [l2|ipip]   (as root; BUILD_DIR overrides build/)
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:-l2}
[[ $mode == l2 || $mode == ipip ]] || { echo "usage: demo.sh [l2|ipip]" >&2; exit 2; }
[[ $EUID -eq 0 ]] || { echo "demo: run as root (namespaces, BPF)" >&2; exit 1; }

source "$root/tools/testbed/cluster.sh"
CL_BUILD=${BUILD_DIR:-$root/build}
CL_PREFIX="plbdemo$$"
CL_TMP=$(mktemp -d /tmp/peerlb-demo.XXXXXX)
keep_tmp=0 # 1: a failure left its logs in $CL_TMP, kept for the user
trap 'cl_down; [[ $keep_tmp == 1 ]] || rm -rf "$CL_TMP"' EXIT
trap 'exit 130' INT TERM

echo "== building"
cmake -S "$root" -B "$CL_BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
    cmake --build "$CL_BUILD" -j "$(nproc)" >/dev/null || { echo "demo: build failed" >&2; exit 1; }

echo "== cluster: s1 ${CL_NODE_ADDR[1]}, s2 ${CL_NODE_ADDR[2]}, s3 ${CL_NODE_ADDR[3]}," \
    "client $CL_CLIENT_ADDR; forwarding $mode"
cl_topology_up || exit 1
for n in 1 2 3; do cl_nginx_start "$n"; done
cl_wait_ready || exit 1
CL_INTERVAL_MS=200
CL_FORWARD=$mode
# agent_running N: server N's agent (started by cl_agent_start) still runs.
agent_running() { [[ -n ${CL_AGENT_PIDS[$1]:-} ]] && kill -0 "${CL_AGENT_PIDS[$1]}" 2>/dev/null; }
# agent_error N: the last error or critical line of server N's agent log (a
# fatal error is the CLI's last "peerlb: ..." line), or its last line if none.
agent_error() {
    local log=$CL_TMP/agent-s$1.log line
    line=$(grep -E '^[0-9-]+ [0-9:.]+ (error|critical) |^peerlb: ' "$log" 2>/dev/null | tail -n 1)
    [[ -n $line ]] || line=$(tail -n 1 "$log" 2>/dev/null)
    echo "${line:-(empty log)}"
}
agents_failed() { # keeps $CL_TMP and says why each agent failed
    local n state
    keep_tmp=1
    echo "demo: agents did not come up; logs kept in $CL_TMP (agent-sN.log)" >&2
    for n in 1 2 3; do
        state=running
        agent_running "$n" || state="not running"
        echo "  s$n ($state): $(agent_error "$n")" >&2
    done
    exit 1
}
for n in 1 2 3; do cl_agent_config "$n" && cl_agent_start "$n"; done
echo "== agents started (heartbeat every 200 ms); waiting until they see each other"
alive=0
for try in $(seq 300); do # a fresh attach first verifies the programs (seconds)
    alive=$(cl_agent_cli 1 peers --json 2>/dev/null | grep -c '"state": "alive"')
    [[ $alive == 2 ]] && break
    for n in 1 2 3; do agent_running "$n" || agents_failed; done # no waiting on an exited one
    sleep 0.1
done
cl_agent_cli 1 peers && [[ $alive == 2 ]] || agents_failed
# Loads travel by heartbeat: wait a few periods after changing one.
settle() { sleep 0.8; }

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
cl_agent_load 1 90; settle
table "s1 at 90 %: its new connections go to s2 and s3 (weighted by spare capacity)"
cl_agent_load 3 75; settle
table "s1 at 90 %, s3 at 75 %: only s2 is 20 points lower than either"

echo
echo "== wrk, 3 s, 32 connections to ${CL_SVC_ADDR[1]} (s1 at 90 %, s2 and s3 at 10 %)"
cl_agent_load 3 10; settle
cl_in c wrk -t2 -c32 -d3s "http://${CL_SVC_ADDR[1]}/" | sed -n '/requests in/p;/Requests\/sec/p'
echo
echo "== peerlb top on s1 (one frame) while the client opens new connections to every address"
cl_in c bash -c 'for i in $(seq 400); do for a in "$@"; do curl -s -o /dev/null "http://$a/"; done; done' \
    _ "${CL_SVC_ADDR[@]:1}" &
traffic=$!
sleep 2.5 # the rates are per second, carried by the heartbeats
cl_agent_cli 1 top --frames 1 --interval-ms 1000
kill "$traffic" 2>/dev/null
wait "$traffic" 2>/dev/null

echo
echo "== s3's agent is killed: s1 and s2 mark it dead after 3 silent periods, one of them"
echo "   takes s3's address over, and s3's data plane fences it (stops answering ARP for it)"
cl_agent_stop 3 KILL
taken_over() { [[ $(cl_holders "${CL_SVC_ADDR[3]}") == "s1 s3" || $(cl_holders "${CL_SVC_ADDR[3]}") == "s2 s3" ]]; }
cl_wait_until 10000 taken_over >/dev/null
sleep 0.5
cl_agent_cli 1 peers
echo "   ${CL_SVC_ADDR[3]} is on the NICs of: $(cl_holders "${CL_SVC_ADDR[3]}") (s3's own copy fenced)"
table "s1 at 90 %, s3's agent dead: s1 hands off to s2 only; s3's address, taken over, goes to s2"

echo
echo "== peerlb status on s1"
cl_agent_cli 1 status
echo
echo "== peerlb stats on s1 (non-zero counters)"
cl_agent_cli 1 stats | awk 'NR == 1 || $2 != 0'
echo
echo "== inspect with bpftool, e.g. s1's settings:"
bpftool map dump pinned "$(cl_pin_root 1)/eth0/lb_config" | head -20
echo
echo "demo: done; removing the namespaces"
