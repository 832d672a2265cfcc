#!/usr/bin/env bash
# Shared service addresses, flood delivery (DESIGN.md section 5b), in
# namespaces: the client on the servers' segment reaches the shared address
# through a multicast MAC, so every server gets every packet, and each keeps
# only its buckets' share: nothing is forwarded. Held keep-alive
# connections (peerlb-holdconns) and new ones all along, through one node
# draining and coming back, and a node dying (s3: agent and server killed;
# the connections it served are lost with it, no other).
# Usage: shared_flood_test.sh BUILD_DIR  (SHARED_CONNS: default 300)
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/check.sh"
source "$here/../../tools/testbed/cluster.sh"
source "$here/../../tools/testbed/shared.sh"

CL_BUILD=$(cd "${1:?usage: shared_flood_test.sh BUILD_DIR}" && pwd)
name=shared_flood_test
require_root "$name"

CONNS=${SHARED_CONNS:-300}
CL_PREFIX="plb$$f"
CL_TMP=$(mktemp -d /tmp/peerlb-shared-flood.XXXXXX)
CL_INTERVAL_MS=100
CL_AGENT_MANAGED=1
CL_CLUSTER_EXTRA="takeover = false"
HOLD_PID=
cleanup() {
    [[ -n $HOLD_PID ]] && kill "$HOLD_PID" 2>/dev/null && wait "$HOLD_PID" 2>/dev/null
    ((CHECK_FAILED)) && cl_agent_logs
    sh_down
    rm -rf "$CL_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

SH_ACTIVE=(1 2 3)
status_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' \
    "$CL_TMP/hold.json" "$1"; }
per_server() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["per_server"].get(sys.argv[2], 0))' \
    "$CL_TMP/hold.json" "$1"; }

cl_topology_up || fail "$name" "topology"
sh_flood_client_up || fail "$name" "flood client"
for n in 1 2 3; do
    cl_agent_config "$n" "
[shared]
addresses = [\"$SH_FLOOD_ADDR\"]
delivery = \"flood\"
buckets = 512
announce = \"none\""
    cl_nginx_start "$n"
    cl_agent_start "$n"
done
cl_wait_until 15000 sh_tables_agree >/dev/null || fail "$name" "no agreed table: $(sh_table_of 1)"
echo "table: $(sh_table_of 1)"

# Client addresses on the segment, so that connections fall in many buckets.
clients=()
for i in $(seq 1 32); do
    ip -n "$(cl_ns c)" addr add "10.77.1.$i/16" dev eth0 noprefixroute 2>/dev/null
    clients+=("10.77.1.$i")
done
for n in 1 2 3; do ip -n "$(cl_ns "s$n")" route add 10.77.1.0/24 dev eth0 || fail "$name" "route"; done
ip netns exec "$(cl_ns c)" "$CL_BUILD/peerlb-holdconns" --target "$SH_FLOOD_ADDR:80" \
    --connections "$CONNS" --request-every-ms 500 --new-rate 20 --timeout-ms 5000 \
    --source-addresses "$(IFS=,; echo "${clients[*]}")" --status "$CL_TMP/hold.json" \
    >"$CL_TMP/hold.out" 2>"$CL_TMP/hold.err" &
HOLD_PID=$!
all_open() { [[ $(status_field all_open 2>/dev/null) == True ]]; }
cl_wait_until 30000 all_open >/dev/null || fail "$name" "not all open: $(cat "$CL_TMP/hold.json" 2>/dev/null)"
sleep 2
check_eq "open: lost" "$(status_field lost)" 0
check_eq "open: connections that changed server" "$(status_field server_changed)" 0
served3=$(per_server s3)
echo "held per server: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["per_server"])' "$CL_TMP/hold.json")"

# s2 drains and comes back.
cl_agent_cli 2 drain >/dev/null || fail "$name" "drain s2"
drained() { sh_tables_agree && [[ $(sh_owned_by 2) == 0 ]]; }
cl_wait_until 10000 drained >/dev/null || fail "$name" "s2 kept buckets: $(sh_table_of 1)"
sleep 2
check_eq "s2 drained: lost" "$(status_field lost)" 0
cl_agent_cli 2 drain --undo >/dev/null || fail "$name" "undo s2"
back() { sh_tables_agree && (($(sh_owned_by 2) > 100)); }
cl_wait_until 10000 back >/dev/null || fail "$name" "s2 not back: $(sh_table_of 1)"
sleep 2
check_eq "s2 back: lost" "$(status_field lost)" 0

# s3 dies: only the connections it served are lost.
cl_agent_stop 3 KILL
cl_nginx_stop 3
ip -n "$(cl_ns s3)" link set eth0 down
SH_ACTIVE=(1 2)
gone() { sh_tables_agree && [[ -z $(sh_owned_by 3) || $(sh_owned_by 3) == 0 ]]; }
cl_wait_until 10000 gone >/dev/null || fail "$name" "s3's buckets stayed: $(sh_table_of 1)"
sleep 6 # answers time out after 5 s: s3's connections are counted lost by then
check "s3 died: lost only s3's ($served3)" test "$(status_field lost)" -le "$served3"
check_eq "s3 died: connections that changed server" "$(status_field server_changed)" 0

kill -USR1 "$HOLD_PID"
sleep 1.2
answered=$(status_field new_answered)
failed=$(status_field new_failed)
echo "new connections: $answered answered, $failed failed"
check "new connections answered >= 99.9 %" test $((failed * 1000)) -le $((answered + failed))
check_summary "$name"
