#!/usr/bin/env bash
# Shared service addresses, ECMP delivery (DESIGN.md section 5b), in
# namespaces: a router running BIRD 2 spreads the client's flows over the
# servers (ECMP, routes announced by each server's BIRD, which its agent
# drives), nginx on every server, and a client beyond the router holding
# SHARED_CONNS keep-alive connections that each make requests
# (peerlb-holdconns), plus new connections all along. Through
#   1. one node draining (its route withdrawn, its buckets moved away) and
#      coming back,
#   2. two nodes draining at once and coming back (so buckets move twice
#      within 60 s),
#   3. load moving buckets (loads follow the buckets' clients; s1's become
#      three times as costly): every load within 10 points, and staying so,
#   4. a node joining (s4),
#   5. a node dying (s4: agent, BIRD and nginx killed, link down; it served
#      none of the held connections),
# no held connection is lost, and at least 99.9 % of new ones are answered.
# Usage: shared_test.sh BUILD_DIR
#   SHARED_CONNS    held connections (default 400; the benchmark: 10 000)
#   SHARED_REPORT   a file to write each phase's figures to (JSON lines:
#                   time from the event to a table converged on every node,
#                   held connections lost, packets per delivered packet that
#                   went to the owner or along a chain), for tools/bench
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/check.sh"
source "$here/../../tools/testbed/cluster.sh"
source "$here/../../tools/testbed/shared.sh"

CL_BUILD=$(cd "${1:?usage: shared_test.sh BUILD_DIR}" && pwd)
name=shared_test
require_root "$name"
# A missing BIRD is a failure, not a skip: tools/install-deps.sh installs it.
command -v bird >/dev/null || { echo "$name: FAIL: bird (Debian bird2) is not installed"; exit 1; }

CONNS=${SHARED_CONNS:-400}
CL_NGINX_CONNECTIONS=$((CONNS + 2048)) # one server may hold them all (two drain at once)
CL_PREFIX="plb$$h"
CL_TMP=$(mktemp -d /tmp/peerlb-shared.XXXXXX)
CL_INTERVAL_MS=100
CL_SERVER_COUNT=4 # s4 joins in phase 4
CL_CLUSTER_EXTRA="takeover = false"
# Load moves stop when no node above T1 has a peer T2 lower: loads settle
# within T2 of each other, so T2 = 10 for "within 10 points".
CL_MIN_DIFFERENCE=10
HOLD_PID=
FOLLOWER_PID=
cleanup() {
    [[ -n $HOLD_PID ]] && kill "$HOLD_PID" 2>/dev/null && wait "$HOLD_PID" 2>/dev/null
    [[ -n $FOLLOWER_PID ]] && kill "$FOLLOWER_PID" 2>/dev/null && wait "$FOLLOWER_PID" 2>/dev/null
    ((CHECK_FAILED)) && {
        cl_agent_logs
        tail -n 20 "$CL_TMP"/bird-*.log "$CL_TMP/follower.out" "$CL_TMP/follower.json" 2>/dev/null
    }
    sh_down
    rm -rf "$CL_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

SH_ACTIVE=(1 2 3) # the servers running now


# node_start N: server N's BIRD, nginx and agent.
node_start() {
    local n=$1
    cl_agent_config "$n" "
[shared]
addresses = [\"$SH_ADDR\"]
delivery = \"ecmp\"
buckets = 1024
announce = \"bird\"
bird_socket = \"$(sh_bird_ctl "s$n")\"
bird_protocol = \"peerlb\""
    sh_bird_node_config "$n"
    sh_bird_start "s$n"
    cl_nginx_start "$n"
    cl_agent_start "$n"
}

# shared_counters: the shared_* data plane counters of the active servers,
# as "sN.NAME=PACKETS ...".
shared_counters() {
    local n
    for n in "${SH_ACTIVE[@]}"; do
        cl_agent_cli "$n" stats --json 2>/dev/null | python3 -c '
import json, sys
node = sys.argv[1]
counters = json.load(sys.stdin)["counters"]
print(" ".join(node + "." + k + "=" + str(c["packets"]) for k, c in counters.items() if k.startswith("shared_")))' "s$n"
    done | tr '\n' ' '
}
# record PHASE CONVERGED_MS: one line of figures for SHARED_REPORT, with the
# hops per delivered packet since the last record.
last_counters=""
record() {
    local now
    now=$(shared_counters)
    echo "  $1: converged in $2 ms; new connections failed so far: $(status_field new_failed 2>/dev/null)"
    [[ -n ${SHARED_REPORT:-} ]] && python3 - "$1" "$2" "$last_counters" "$now" "$CL_TMP/hold.json" \
        >>"$SHARED_REPORT" <<'PY'
import json, sys
phase, ms, before, after, hold = sys.argv[1:6]
parse = lambda s: {k: int(v) for k, v in (kv.split("=") for kv in s.split())}
b, a = parse(before), parse(after)
d = {}
for k in a.keys() & b.keys() if b else a.keys():  # nodes seen at both ends
    name = k.split(".", 1)[1]
    d[name] = d.get(name, 0) + a[k] - b.get(k, 0)
delivered = d.get("shared_local", 0) + d.get("shared_previous_local", 0)
try:
    h = json.load(open(hold))
except (OSError, ValueError):
    h = {}
print(json.dumps({"phase": phase, "converged_ms": int(ms) if ms.isdigit() else None,
                  "delivered": delivered,
                  "to_owner_per_delivered": d.get("shared_to_owner", 0) / delivered if delivered else None,
                  "chain_hops_per_delivered": d.get("shared_second_hop", 0) / delivered if delivered else None,
                  "chain_drops": d.get("shared_chain_drop", 0),
                  "held": h.get("target"), "lost": h.get("lost"),
                  "new_answered": h.get("new_answered"), "new_failed": h.get("new_failed"),
                  "new_failed_by_reason": h.get("new_failed_by_reason")}))
PY
    last_counters=$now
}

status_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' \
    "$CL_TMP/hold.json" "$1"; }
held_ok() { # held_ok PHASE: no held connection lost so far
    check_eq "$1: held connections lost" "$(status_field lost)" 0
    check_eq "$1: connections that changed server" "$(status_field server_changed)" 0
}

sh_topology_up || fail "$name" "topology"
sh_bird_router_config
sh_bird_start r
for n in 1 2 3; do node_start "$n"; done
cl_wait_until 15000 sh_tables_agree >/dev/null || fail "$name" "the agents never agreed on a table: $(for n in 1 2 3; do sh_table_of $n; done)"
cl_wait_until 10000 sh_nexthops_are s1 s2 s3 >/dev/null ||
    fail "$name" "the router's route is not ECMP over s1 s2 s3: '$(sh_nexthops)'"
echo "table: $(sh_table_of 1)"

# Loads follow the buckets (phase 3) from now on.
FOLLOWER_PID=
python3 "$here/lib/load_follower.py" \
    "ip netns exec $(cl_ns s1) $CL_BUILD/peerlb buckets --json --pin-root $(cl_pin_root 1) --run-dir $CL_TMP/run-s1" \
    "$CL_TMP" s1,s2,s3,s4 50 >"$CL_TMP/follower.out" 2>&1 &
FOLLOWER_PID=$!

clients=$(sh_client_addresses 64)
ip netns exec "$(cl_ns e)" "$CL_BUILD/peerlb-holdconns" --target "$SH_ADDR:80" --connections "$CONNS" \
    --request-every-ms 500 --new-rate 20 --timeout-ms 9000 --source-addresses "$clients" \
    --status "$CL_TMP/hold.json" \
    >"$CL_TMP/hold.out" 2>"$CL_TMP/hold.err" &
HOLD_PID=$!
all_open() { [[ $(status_field all_open 2>/dev/null) == True ]]; }
cl_wait_until 30000 all_open >/dev/null || fail "$name" "the connections did not all open: $(cat "$CL_TMP/hold.json" 2>/dev/null)"
echo "held: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["per_server"])' "$CL_TMP/hold.json")"
last_counters=$(shared_counters)
sleep 3
record "steady" -
held_ok "open"

# 1. s2 drains: its route goes, its buckets go, and comes back.
cl_agent_cli 2 drain >/dev/null || fail "$name" "peerlb drain on s2"
cl_wait_until 10000 sh_nexthops_are s1 s3 >/dev/null || fail "$name" "s2's route stayed: '$(sh_nexthops)'"
drained2() { sh_tables_agree && [[ $(sh_owned_by 2) == 0 ]]; }
ms=$(cl_wait_until 10000 drained2) || fail "$name" "s2 kept buckets: $(sh_table_of 1)"
sleep 1
record "one drains" "$ms"
held_ok "s2 drained"
cl_agent_cli 2 drain --undo >/dev/null || fail "$name" "peerlb drain --undo on s2"
undone2() { sh_tables_agree && (($(sh_owned_by 2) > 200)) && sh_nexthops_are s1 s2 s3; }
ms=$(cl_wait_until 10000 undone2) || fail "$name" "s2 did not come back: $(sh_table_of 1) '$(sh_nexthops)'"
sleep 1
record "drain undone" "$ms"
held_ok "s2 back"

# 2. s2 and s3 drain at once: s1 owns everything, then they come back.
cl_agent_cli 2 drain >/dev/null && cl_agent_cli 3 drain >/dev/null || fail "$name" "drain s2, s3"
only_s1() { sh_tables_agree && [[ $(sh_owned_by 1) == 1024 ]] && sh_nexthops_are s1; }
ms=$(cl_wait_until 10000 only_s1) || fail "$name" "s1 does not own all: $(sh_table_of 1) '$(sh_nexthops)'"
sleep 1
record "two drain at once" "$ms"
held_ok "s2 and s3 drained"
cl_agent_cli 2 drain --undo >/dev/null && cl_agent_cli 3 drain --undo >/dev/null || fail "$name" "undo s2, s3"
all_back() { sh_tables_agree && (($(sh_owned_by 2) > 200 && $(sh_owned_by 3) > 200)) && sh_nexthops_are s1 s2 s3; }
ms=$(cl_wait_until 10000 all_back) || fail "$name" "s2, s3 did not come back: $(sh_table_of 1)"
sleep 1
record "both undone" "$ms"
held_ok "s2 and s3 back"

# 3. Load moves buckets. Each server's load is its buckets' cost
# (lib/load_follower.py, from the start); now s1's buckets become three
# times as costly: its load jumps from ~34 % to 100 %, the others stay.
kill -USR1 "$FOLLOWER_PID"
follower_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' \
    "$CL_TMP/follower.json" "$1"; }
converged() { [[ $(follower_field converged_ms 2>/dev/null) =~ ^[0-9]+$ ]]; }
cl_wait_until 20000 converged >/dev/null || fail "$name" "loads never came within 10 points: $(sh_table_of 1)"
ms=$(follower_field converged_ms)
sleep 3 # no oscillation: the spread stays within 10 points
record "load moves" "$ms"
check "load moves: loads within 10 points in $ms ms, and stay so (spread after: $(follower_field spread_after))" \
    test "$(follower_field spread_after | cut -d. -f1)" -le 10
held_ok "load moves"
echo "after load moves: $(sh_table_of 1), $(follower_field moved) buckets moved"

# 4. s4 joins.
node_start 4
SH_ACTIVE=(1 2 3 4)
joined() { sh_tables_agree && (($(sh_owned_by 4) > 100)) && sh_nexthops_are s1 s2 s3 s4; }
ms=$(cl_wait_until 15000 joined) || fail "$name" "s4 did not join: $(sh_table_of 1) '$(sh_nexthops)'"
sleep 1
record "a node joins" "$ms"
held_ok "s4 joined"

# 5. s4 dies: agent, BIRD and server killed at once and its link down (a
# machine that is gone sends no RST): the router withdraws its route when
# BGP's hold timer runs out.
cl_agent_stop 4 KILL
sh_bird_stop s4 KILL
cl_nginx_stop 4
ip -n "$(cl_ns s4)" link set eth0 down
SH_ACTIVE=(1 2 3)
gone4() { sh_tables_agree && [[ -z $(sh_owned_by 4) || $(sh_owned_by 4) == 0 ]] && sh_nexthops_are s1 s2 s3; }
ms=$(cl_wait_until 15000 gone4) || fail "$name" "s4's buckets or route stayed: $(sh_table_of 1) '$(sh_nexthops)'"
sleep 1
record "a node dies" "$ms"
held_ok "s4 died"

# An answer counts as lost only after --timeout-ms (9 s: a request sent to
# a dead node retransmits after the hold timer at 6.2 s): wait that long
# so that the last phases' losses would show.
sleep 9
held_ok "the end"
kill -USR1 "$HOLD_PID"
sleep 1.2
answered=$(status_field new_answered)
failed=$(status_field new_failed)
echo "new connections: $answered answered, $failed failed ($(status_field new_failed_by_reason)); requests: $(status_field requests_ok)"
check "new connections answered >= 99.9 %" test $((failed * 1000)) -le $((answered + failed))
check_summary "$name"
