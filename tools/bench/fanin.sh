#!/usr/bin/env bash
# Heartbeat fan-in (benchmark part fanin, issue 17): what one real agent
# spends taking the heartbeats of many peers. One server namespace (s1)
# runs `peerlb agent` as in production (XDP attached to eth0, heartbeat
# every 500 ms, load source inflight, metrics on, nginx for its health
# check); the client namespace runs peerlb-heartbeat-flood: properly signed
# heartbeats from N senders (ids hb-0..hb-N-1, node addresses 10.80.0.1 +
# i) at FANIN_RATE a second each, to the cluster group. For each N in
# FANIN_LEVELS, in one run: the generator starts, the agent must list all N
# alive, FANIN_WARMUP_S later the agent process's CPU (utime + stime, every
# thread) is read over FANIN_MEASURE_S, as % of one core, with the
# heartbeats it took (`peerlb status`: heartbeats_taken) and the datagrams
# the kernel dropped on its socket. N = 0 is the idle baseline: the
# generator runs and sends nothing.
#
# Writes OUT_DIR/fanin/levels.jsonl (one object per level) and params.
# Usage: fanin.sh BUILD_DIR OUT_DIR
# Env: FANIN_LEVELS ("0 250 500 1000"), FANIN_RATE (2), FANIN_MEASURE_S
# (20), FANIN_WARMUP_S (5), FANIN_JOIN_TIMEOUT_S (60).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
CL_SERVER_COUNT=1
source "$root/tools/testbed/cluster.sh"
source "$here/lib.sh"

CL_BUILD=$(cd "${1:?usage: fanin.sh BUILD_DIR OUT_DIR}" && pwd)
out=${2:?usage: fanin.sh BUILD_DIR OUT_DIR}
mkdir -p "$out/fanin"
out=$(cd "$out/fanin" && pwd)

levels=${FANIN_LEVELS:-0 250 500 1000}
rate=${FANIN_RATE:-2}
measure_s=${FANIN_MEASURE_S:-20}
warmup_s=${FANIN_WARMUP_S:-5}
join_timeout_s=${FANIN_JOIN_TIMEOUT_S:-60}
CL_PREFIX="plb$$h"
CL_TMP=$(mktemp -d /tmp/peerlb-bench-fanin.XXXXXX)
# As in production (tools/peerlb.example.toml): the agent puts its service
# addresses in place, heartbeats every 500 ms, counts open connections.
CL_AGENT_MANAGED=1
CL_INTERVAL_MS=500
CL_LOAD_TOML=$'source = "inflight"\ncapacity = 1000'
GEN_PID=

gen_stop() {
    [[ -n $GEN_PID ]] || return 0
    kill -TERM "$GEN_PID" 2>/dev/null
    wait "$GEN_PID" 2>/dev/null
    GEN_PID=
}
cleanup() {
    gen_stop
    cl_down
    rm -rf "$CL_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# gen_start N: the generator in the client namespace, N senders, until
# gen_stop; its summary in $CL_TMP/gen-N.json. A plain command in the
# background: $! is the generator's own PID (ip netns exec execs).
gen_start() {
    ip netns exec "$(cl_ns c)" "$CL_BUILD/peerlb-heartbeat-flood" --to "$CL_GROUP" --iface eth0 \
        --key "$CL_TMP/cluster.key" --senders "$1" --rate "$rate" --summary \
        >"$CL_TMP/gen-$1.json" 2>>"$CL_TMP/gen.err" &
    GEN_PID=$!
}

# udp_drops: datagrams the kernel dropped on s1's heartbeat socket (bound
# to the group; /proc/net/udp is per namespace).
udp_drops() {
    cl_in s1 python3 -c '
import socket, struct, sys
group, port = sys.argv[1].rsplit(":", 1)
local = "%08X:%04X" % (struct.unpack("<I", socket.inet_aton(group))[0], int(port))
print(sum(int(l.split()[-1]) for l in open("/proc/net/udp").read().splitlines()[1:] if l.split()[1] == local))
' "$CL_GROUP"
}

taken() { # heartbeats s1's agent took so far
    cl_agent_cli 1 status --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["agent"]["heartbeats_taken"])'
}

all_alive() { [[ $(cl_peer_count 1 alive hb-) == "$1" ]]; }

bench_log "fanin: namespaces $CL_PREFIX*"
cl_topology_up || exit 1
cl_nginx_start 1
cl_wait_ready || exit 1
cl_agent_config 1 && cl_agent_start 1 || exit 1
agent=${CL_AGENT_PIDS[1]}
waited=$(cl_wait_until 10000 cl_agent_cli 1 status --json)
[[ $waited != timeout ]] || { echo "fanin: the agent does not answer" >&2; cl_agent_logs >&2; exit 1; }

echo "levels=${levels// /,} rate=$rate measure_s=$measure_s warmup_s=$warmup_s interval_ms=$CL_INTERVAL_MS" \
    >"$out/params"
rm -f "$out/levels.jsonl"
hz=$(getconf CLK_TCK)
for n in $levels; do
    bench_log "fanin: $n senders x $rate/s"
    gen_start "$n"
    waited=$(cl_wait_until $((join_timeout_s * 1000)) all_alive "$n")
    if [[ $waited == timeout ]]; then
        echo "fanin: $n senders: the agent lists $(cl_peer_count 1 alive hb-) alive, not $n" >&2
        cl_agent_logs >&2
        exit 1
    fi
    sleep "$warmup_s"
    # The count of heartbeats taken is stamped halfway through its request.
    ta0=$(cl_now_ms) taken0=$(taken) ta0=$(((ta0 + $(cl_now_ms)) / 2)) drops0=$(udp_drops)
    t0=$(cl_now_ms) cpu0=$(cl_cpu_ticks "$agent") gcpu0=$(cl_cpu_ticks "$GEN_PID")
    sleep "$measure_s"
    cpu1=$(cl_cpu_ticks "$agent") gcpu1=$(cl_cpu_ticks "$GEN_PID") t1=$(cl_now_ms)
    ta1=$(cl_now_ms) taken1=$(taken) ta1=$(((ta1 + $(cl_now_ms)) / 2)) drops1=$(udp_drops)
    alive=$(cl_peer_count 1 alive hb-)
    gen_stop
    python3 - "$n" "$rate" "$t0" "$t1" "$cpu0" "$cpu1" "$gcpu0" "$gcpu1" "$hz" "$taken0" "$taken1" "$ta0" "$ta1" \
        "$drops0" "$drops1" "$alive" "$waited" "$CL_TMP/gen-$n.json" >>"$out/levels.jsonl" <<'EOF'
import json, sys
(n, rate, t0, t1, cpu0, cpu1, gcpu0, gcpu1, hz, taken0, taken1, ta0, ta1, drops0, drops1,
 alive, join_ms) = (float(a) for a in sys.argv[1:18])
gen = json.load(open(sys.argv[18]))
secs = (t1 - t0) / 1000
print(json.dumps({
    "senders": int(n), "rate": rate, "seconds": round(secs, 2),
    "agent_cpu_pct": round((cpu1 - cpu0) / hz / secs * 100, 2),
    "generator_cpu_pct": round((gcpu1 - gcpu0) / hz / secs * 100, 2),
    "taken_per_s": round((taken1 - taken0) / ((ta1 - ta0) / 1000), 1),
    "sent_per_s": round(gen["per_s"], 1),
    "socket_drops": int(drops1 - drops0),
    "alive_at_end": int(alive), "join_ms": int(join_ms),
    "late_ms_max": gen["late_ms_max"]}))
EOF
    tail -n 1 "$out/levels.jsonl" >&2
done
bench_log "fanin: done, results in $out"
