#!/usr/bin/env bash
# The heartbeat fan-in generator against one real agent (tools/testbed/
# cluster.sh, one server): peerlb-heartbeat-flood sends the signed
# heartbeats of FANIN_SENDERS nodes at 2 a second each from the client
# namespace. The agent lists every sender alive, takes the heartbeats sent
# and drops none (signature, sequence and send time are right), gives data
# plane slots to as many as there are, and sees the loads move; once the
# generator stops, every sender is dead within dead_after periods. Checks
# what the generator does, not how fast: the benchmark (tools/bench/run.sh
# --parts fanin) measures the agent's CPU.
# Usage: fanin_test.sh BUILD_DIR
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
CL_SERVER_COUNT=1
source "$here/lib/check.sh"
source "$here/../../tools/testbed/cluster.sh"

CL_BUILD=$(cd "${1:?usage: fanin_test.sh BUILD_DIR}" && pwd)
name=fanin_test
require_root "$name"

CL_PREFIX="plb$$i"
CL_TMP=$(mktemp -d /tmp/peerlb-fanin.XXXXXX)
CL_AGENT_MANAGED=1
SENDERS=${FANIN_SENDERS:-200}
RATE=2            # heartbeats a second per sender: a 500 ms period
DEAD_WITHIN_MS=4000 # dead_after (3) x 500 ms, with room for a busy machine
# LB_MAX_NODES (maps/common.h): this node takes one.
MAX_SLOTS=$(sed -n 's/^#define LB_MAX_NODES \([0-9]*\).*/\1/p' "$here/../../maps/common.h")
GEN_PID=

gen_stop() {
    [[ -n $GEN_PID ]] || return 0
    kill -TERM "$GEN_PID" 2>/dev/null
    wait "$GEN_PID" 2>/dev/null
    GEN_PID=
}
cleanup() {
    gen_stop
    ((CHECK_FAILED)) && cl_agent_logs && cat "$CL_TMP/gen.err" 2>/dev/null
    cl_down
    rm -rf "$CL_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

status_field() { # status_field PYTHON-EXPR: of s1's `peerlb status --json` (as s)
    cl_agent_cli 1 status --json | python3 -c "import json, sys; s = json.load(sys.stdin); print($1)"
}

echo "$name: namespaces $CL_PREFIX*"
cl_topology_up || fail "$name" "topology"
cl_agent_config 1 && cl_agent_start 1 || fail "$name" "agent start"
waited=$(cl_wait_until 10000 cl_agent_cli 1 status --json)
[[ $waited != timeout ]] || fail "$name" "the agent does not answer"

# A plain command in the background: $! is the generator's own PID.
ip netns exec "$(cl_ns c)" "$CL_BUILD/peerlb-heartbeat-flood" --to "$CL_GROUP" --iface eth0 \
    --key "$CL_TMP/cluster.key" --senders "$SENDERS" --rate "$RATE" --summary \
    >"$CL_TMP/gen.json" 2>"$CL_TMP/gen.err" &
GEN_PID=$!

all_alive() { [[ $(cl_peer_count 1 alive hb-) == "$SENDERS" ]]; }
waited=$(cl_wait_until 10000 all_alive)
check "the agent lists all $SENDERS senders alive (after $waited ms)" test "$waited" != timeout

# Each count is stamped halfway through its request.
t0=$(cl_now_ms) taken0=$(status_field 's["agent"]["heartbeats_taken"]') t0=$(((t0 + $(cl_now_ms)) / 2))
loads0=$(cl_agent_cli 1 peers --json)
sleep 2
t1=$(cl_now_ms) taken1=$(status_field 's["agent"]["heartbeats_taken"]') t1=$(((t1 + $(cl_now_ms)) / 2))
taken=$((taken1 - taken0))
expected=$((SENDERS * RATE * (t1 - t0) / 1000))
check "heartbeats taken in $((t1 - t0)) ms: $taken, about $expected" \
    test "$taken" -ge $((expected * 8 / 10)) -a "$taken" -le $((expected * 12 / 10))
drops=$(status_field 'sum(s["agent"]["heartbeat_drops"].values())')
check_eq "heartbeats dropped (bad signature, replayed, stale, malformed...)" "$drops" 0
peers=$(cl_agent_cli 1 peers --json)
slots=$(python3 -c 'import json, sys; print(sum(1 for p in json.loads(sys.argv[1]) if p["id"].startswith("hb-") and p["slot"] is not None))' "$peers")
want_slots=$((SENDERS < MAX_SLOTS - 1 ? SENDERS : MAX_SLOTS - 1))
check_eq "senders with a data plane slot" "$slots" "$want_slots"
moved=$(python3 -c '
import json, sys
before = {p["id"]: p["load"] for p in json.loads(sys.argv[1]) if p["id"].startswith("hb-")}
after = {p["id"]: p["load"] for p in json.loads(sys.argv[2]) if p["id"].startswith("hb-")}
print(sum(1 for i in after if i in before and after[i] != before[i]))' "$loads0" "$peers")
check "loads moved between two reads ($moved of $SENDERS senders)" test "$moved" -ge $((SENDERS / 2))

gen_stop
sent=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["sent"])' "$CL_TMP/gen.json" 2>/dev/null)
check "the generator's summary counts what it sent (${sent:-none})" test "${sent:-0}" -gt "$expected"
none_alive() { [[ $(cl_peer_count 1 dead hb-) == "$SENDERS" ]]; }
waited=$(cl_wait_until "$DEAD_WITHIN_MS" none_alive)
check "all $SENDERS senders dead within $DEAD_WITHIN_MS ms of the generator's stop ($waited)" \
    test "$waited" != timeout
check "the agent is still running" kill -0 "${CL_AGENT_PIDS[1]}"

check_summary "$name"
