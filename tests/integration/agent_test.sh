#!/usr/bin/env bash
# Three agents in namespaces (tools/testbed/cluster.sh), heartbeat
# every 100 ms, dead_after 3, loads from files:
# discovery, loads driving real curl traffic, run-time settings, an unhealthy
# service, a killed agent (dead for its peers, fail-safe at home), a
# restarted agent with its connections intact, and forged heartbeats from
# the client namespace that never reach the peer table.
# Usage: agent_test.sh BUILD_DIR
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/check.sh"
source "$here/../../tools/testbed/cluster.sh"

CL_BUILD=$(cd "${1:?usage: agent_test.sh BUILD_DIR}" && pwd)
name=agent_test
require_root "$name"

CL_PREFIX="plb$$a"
CL_TMP=$(mktemp -d /tmp/peerlb-agent.XXXXXX)
CL_INTERVAL_MS=100
CL_AGENT_MANAGED=1
# This test is about membership and the fail-safe of a node whose agent died;
# takeover of a dead node's addresses has its own test (takeover_test.sh).
CL_CLUSTER_EXTRA="takeover = false"
cleanup() {
    ((CHECK_FAILED)) && cl_agent_logs
    cl_down
    rm -rf "$CL_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

svc=([1]=${CL_SVC_ADDR[1]} [2]=${CL_SVC_ADDR[2]} [3]=${CL_SVC_ADDR[3]})

# peers_json N: server N's agent's view (JSON array), "[]" if it does not answer.
peers_json() { cl_agent_cli "$1" peers --json 2>/dev/null || echo '[]'; }

# peer_field N ID FIELD: a field of peer ID in server N's view.
peer_field() {
    peers_json "$1" | python3 -c '
import json, sys
for p in json.load(sys.stdin):
    if p["id"] == sys.argv[1]:
        print(p[sys.argv[2]])
' "$2" "$3"
}



peer_load_is() { [[ $(peer_field "$1" "$2" load) == "$3" ]]; }    # peer_load_is N ID PCT
routable_is() { [[ $(peer_field "$1" "$2" routable) == "$3" ]]; } # routable_is N ID True|False


state_is() { [[ $(peer_field "$1" "$2" state) == "$3" ]]; }          # state_is N ID STATE
agent_up() { cl_agent_cli "$1" peers --json >/dev/null 2>&1; }       # agent_up N

served_by() { # served_by N COUNT: COUNT new connections to server N's address
    local i
    for i in $(seq "$2"); do cl_in c curl -s --max-time 3 "http://${svc[$1]}/" || echo failed; done
}
tally() { sort | uniq -c | awk '{printf "%s%s=%s", sep, $2, $1; sep=" "} END {print ""}'; }
only_from() { local r; for r in $2; do [[ " $1 " == *" $r "* ]] || return 1; done; [[ -n $2 ]]; }

# Loads reach the peers by heartbeat: give them a few periods.
settle() { sleep 0.4; }

echo "$name: namespaces $CL_PREFIX*"
cl_topology_up || { echo "$name: topology failed"; exit 1; }
for n in 1 2 3; do cl_nginx_start "$n"; done
cl_wait_ready || exit 1
for n in 1 2 3; do cl_agent_config "$n"; done

echo "$name: bad configuration changes nothing"
echo 'node = 3' >"$CL_TMP/bad.toml"
out=$(cl_in s1 "$CL_BUILD/peerlb" agent -c "$CL_TMP/bad.toml" --pin-root "$(cl_pin_root 1)" \
    --run-dir "$CL_TMP/run-s1" --state-dir "$CL_TMP/state-s1" 2>&1)
rc=$?
check "invalid config: non-zero exit with file and line" \
    bash -c '[[ $1 -ne 0 && $2 == *bad.toml:1* ]]' _ "$rc" "$out"
check "invalid config: nothing attached" bash -c "! ip -n $(cl_ns s1) -d link show eth0 | grep -q prog/xdp"

echo "$name: discovery"
for n in 1 2 3; do cl_agent_start "$n"; done
for n in 1 2 3; do cl_wait_until 10000 agent_up "$n" >/dev/null; done
cl_wait_until 3000 cl_all_see_all >/dev/null
# From the agents' own logs: when the last one was up, and when the last
# peer joined anywhere.
last_up=0
last_join=0
for n in 1 2 3; do
    up=$(cl_log_ms "$n" "agent s$n up")
    ((${up:-0} > last_up)) && last_up=$up
    for m in 1 2 3; do
        [[ $m == "$n" ]] && continue
        join=$(cl_log_ms "$n" "peer s$m .* joined")
        join=${join:-999999999999999}
        ((join > last_join)) && last_join=$join
    done
done
waited=$((last_join - last_up))
echo "    all three saw each other alive ${waited} ms after the last agent was up"
check "three agents discover each other within two heartbeat periods (200 ms)" \
    bash -c '[[ $1 -le 200 ]]' _ "$waited"
check "peers --json has id, address, state, load, owns" python3 -c '
import json, sys
peers = json.loads(sys.argv[1])
s2 = next(p for p in peers if p["id"] == "s2")
me = next(p for p in peers if p["id"] == "s1")
assert me["state"] == "self" and s2["state"] == "alive", peers
assert s2["address"] == "10.77.0.12" and "10.77.0.112" in s2["owns"], s2
assert 0 <= s2["load"] <= 100
' "$(peers_json 1)"

echo "$name: loads from files drive the decisions"
cl_agent_load 1 90; cl_agent_load 2 10; cl_agent_load 3 10; settle
check "s2 sees s1's load 90 % from its heartbeats" test "$(peer_field 2 s1 load)" == "90.0"
got=$(served_by 1 30)
echo "    s1 busy: 30 connections to ${svc[1]} served by $(tally <<<"$got")"
check "s1 busy: its connections go to s2 and s3" only_from "s2 s3" "$got"
cl_agent_load 1 60; cl_agent_load 2 45; cl_agent_load 3 45; settle
got=$(served_by 1 10)
check "s1 60 %, peers 45 %: no peer 20 points lower, s1 keeps them" only_from "s1" "$got"
cl_agent_load 1 10; settle
got=$(served_by 1 10)
check "s1 idle: it serves its own traffic" only_from "s1" "$got"

echo "$name: run-time settings"
cl_agent_load 1 90; settle
cl_agent_cli 1 set balance.accept_below 95 >/dev/null
got=$(served_by 1 10)
check "set balance.accept_below 95: s1 at 90 % keeps its connections" only_from "s1" "$got"
cl_agent_cli 1 set balance.accept_below 50 >/dev/null
got=$(served_by 1 10)
check "set balance.accept_below 50: handed off again" only_from "s2 s3" "$got"
out=$(cl_agent_cli 1 set balance.accept_below 150 2>&1)
rc=$?
echo "    set balance.accept_below 150: $out"
check "set out of range: refused with one line, non-zero exit" \
    bash -c '[[ $1 -ne 0 && $(wc -l <<<"$2") -eq 1 && $2 == *accept_below* ]]' _ "$rc" "$out"
check "set out of range: setting unchanged" test "$(cl_agent_cli 1 status --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["config"]["accept_below"])')" == 50.0

echo "$name: a slow peer, and a load jump announced at once"
cl_agent_cli 1 set cluster.interval_ms 2000 >/dev/null
cl_agent_load 1 10; cl_agent_load 2 90; cl_agent_load 3 90; settle
sleep 0.6 # over a second since s1's last heartbeat: 3 of s2's own periods
got=$(served_by 2 10)
check "a peer on a 2 s period stays a candidate between its heartbeats" only_from "s1" "$got"
cl_agent_load 1 90
waited=$(cl_wait_until 1500 peer_load_is 2 s1 90.0)
echo "    s2 saw s1's load jump to 90 % after $waited ms (s1's heartbeat period: 2000 ms)"
check "load jump beyond load_step: extra heartbeat well before the period" \
    bash -c '[[ $1 != timeout && $1 -lt 1000 ]]' _ "$waited"
cl_agent_load 2 45; cl_agent_load 3 45
cl_agent_cli 1 set cluster.interval_ms 100 >/dev/null
settle

echo "$name: metrics and top"
metrics=$(cl_in s1 curl -s --max-time 2 http://127.0.0.1:9477/metrics)
check "metrics: per-peer state" grep -q 'peerlb_peer_state{node="s2",state="alive"} 1' <<<"$metrics"
check "metrics: per-peer load" grep -q 'peerlb_peer_load_percent{node="s2"} 45' <<<"$metrics"
check "metrics: redirects per peer" grep -qE 'peerlb_redirects_total\{node="s3"\} [1-9]' <<<"$metrics"
check "metrics: decisions by reason" grep -qE 'peerlb_decisions_total\{kind="forwarded",counter="syn_forward_weighted"\} [1-9]' <<<"$metrics"
top=$(cl_agent_cli 1 top --frames 1)
check "top: a row per node" bash -c '[[ $(grep -cE "^s[123] " <<<"$1") -eq 3 ]]' _ "$top"

echo "$name: forged heartbeats from the client namespace"
drops_before=$(cl_agent_cli 1 status --json 2>/dev/null)
"$CL_BUILD/tests/forge_heartbeat" --help >/dev/null
cl_in c "$CL_BUILD/tests/forge_heartbeat" --to "$CL_GROUP" --iface eth0 --kind wrong-key --count 50
cl_in c "$CL_BUILD/tests/forge_heartbeat" --to "$CL_GROUP" --iface eth0 --kind wrong-key --id s2 --count 50
cl_in c "$CL_BUILD/tests/forge_heartbeat" --to "$CL_GROUP" --iface eth0 --kind garbage --count 50
cl_in c "$CL_BUILD/tests/forge_heartbeat" --to "$CL_GROUP" --iface eth0 --kind stale \
    --key "$CL_TMP/cluster.key" --count 20
# A real heartbeat of s2's captured on the wire and sent again: a replay.
cl_in c python3 - "$CL_GROUP" <<'EOF'
import socket, struct, sys
group, port = sys.argv[1].rsplit(":", 1)
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
rx.bind((group, int(port)))
rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
              struct.pack("4s4si", socket.inet_aton(group), socket.inet_aton("0.0.0.0"),
                          socket.if_nametoindex("eth0")))
rx.settimeout(2)
while True:  # one of s2's, to replay to s1
    captured, (source, _) = rx.recvfrom(2048)
    if source == "10.77.0.12":
        break
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("10.77.0.100"))
for _ in range(5):
    tx.sendto(captured, (group, int(port)))
EOF
sleep 0.3
status=$(cl_agent_cli 1 status --json 2>/dev/null)
check "forged heartbeats dropped and counted by reason" python3 -c '
import json, sys
before = json.loads(sys.argv[1])["agent"]["heartbeat_drops"]
after = json.loads(sys.argv[2])["agent"]["heartbeat_drops"]
d = {k: after[k] - before[k] for k in after}
print("    drops at s1:", d)
assert d["bad_mac"] >= 100, d
assert d["bad_magic"] + d["truncated"] + d["bad_mac"] >= 150, d
assert d["stale"] >= 20, d
assert d["replayed"] >= 4, d   # the original was taken once, or dropped as replayed itself
' "$drops_before" "$status"
peers=$(peers_json 1)
check "no forged peer appears in peers" bash -c '! grep -q intruder <<<"$1"' _ "$peers"
check "s2's entry is not overwritten by a forgery (load 45, not 0)" \
    test "$(peer_field 1 s2 load)" == "45.0"

echo "$name: a second node with s1's id"
# Signed with the key, current, from another node address: two nodes
# configured as s1. Incarnation 1, low sequences: the real s1 keeps its
# entry at its peers.
cl_in c "$CL_BUILD/tests/forge_heartbeat" --to "$CL_GROUP" --iface eth0 --kind duplicate --id s1 \
    --key "$CL_TMP/cluster.key" --count 3
sleep 0.3
# duplicates_at N ID: how many heartbeats server N took as evidence of two nodes with ID.
duplicates_at() {
    cl_agent_cli "$1" status --json 2>/dev/null | python3 -c '
import json, sys
print(json.load(sys.stdin)["agent"]["duplicate_ids"].get(sys.argv[1], 0))' "$2"
}
dup1=$(duplicates_at 1 s1)
dup2=$(duplicates_at 2 s1)
echo "    heartbeats showing two nodes with id s1: at s1 ${dup1:-none}, at s2 ${dup2:-none}"
check "s1's status --json shows its own id duplicated (duplicate_ids)" test "${dup1:-0}" -ge 3
check "s2's status --json shows two nodes with id s1" test "${dup2:-0}" -ge 3
check "s1 logs it as an error naming the other node's address" \
    grep -q "error *duplicate node id: .*this node's id s1 comes from 10.77.0.250" "$CL_TMP/agent-s1.log"
check "metrics: peerlb_duplicate_node_id_total counts it" grep -qE '^peerlb_duplicate_node_id_total [3-9]' \
    <<<"$(cl_in s1 curl -s --max-time 2 http://127.0.0.1:9477/metrics)"
check "s1's agent keeps running" agent_up 1
check "s2 keeps the real s1 (10.77.0.11, alive)" \
    bash -c '[[ $1 == 10.77.0.11 && $2 == alive ]]' _ "$(peer_field 2 s1 address)" "$(peer_field 2 s1 state)"

echo "$name: unhealthy service"
cl_nginx_stop 2
waited=$(cl_wait_until 3000 routable_is 1 s2 False)
echo "    s1 saw s2 not routable ${waited} ms after its nginx stopped"
check "s2 announces itself not routable when its service fails" test "$waited" != timeout
got=$(served_by 1 20)
check "s1 busy, s2 unroutable: handed only to s3" only_from "s3" "$got"
got=$(served_by 2 10)
echo "    10 connections to ${svc[2]} (s2 unhealthy) served by $(tally <<<"$got")"
check "s2 unhealthy: its own new connections go to its peers" only_from "s1 s3" "$got"
cl_nginx_start 2
waited=$(cl_wait_until 5000 routable_is 1 s2 True)
check "s2 routable again once nginx is back" test "$waited" != timeout

echo "$name: a killed agent"
cl_agent_load 1 90; cl_agent_load 2 90; cl_agent_load 3 10; settle
# Long-lived connections through s3: one kept by s3 itself, one handed to s3 by s1.
coproc KEEP {
    cl_in c python3 -u -c '
import http.client, sys
conns = [http.client.HTTPConnection(a, 80, timeout=5) for a in sys.argv[1:]]
def ask(c):
    c.request("GET", "/")
    r = c.getresponse()
    return r.read().decode().strip()
while True:
    print(" ".join(ask(c) for c in conns), flush=True)
    if not sys.stdin.readline():
        break
' "${svc[3]}" "${svc[1]}" 2>&1
}
read -r -t 5 first <&"${KEEP[0]}"
echo "    long-lived connections to ${svc[3]} and ${svc[1]} served by: ${first:-none}"
check "long-lived connections both on s3" test "${first:-}" == "s3 s3"
flows_before=$(cl_agent_cli 3 flows --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
prog_before=$(cl_agent_cli 3 status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["prog_id"])')

kill_ms=$(cl_now_ms)
cl_agent_stop 3 KILL
cl_wait_until 2000 state_is 1 s3 dead >/dev/null
waited=$(($(cl_log_ms 1 "peer s3 .*-> dead" "$kill_ms") - kill_ms))
echo "    s1 marked s3 dead $waited ms after its agent was killed (dead_after 3 x 100 ms)"
check "peers mark a killed agent dead after dead_after periods (200..450 ms)" \
    bash -c '[[ $1 -ge 200 && $1 -le 450 ]]' _ "$waited"
check "s2 marks it dead too" state_is 2 s3 dead
cl_agent_load 3 95
sleep 0.6 # past failsafe_after_ms: s3's own load is stale
got=$(served_by 3 10)
check "agent gone: s3's data plane keeps its own connections (fail-safe)" only_from "s3" "$got"
got=$(served_by 1 10)
check "s1 busy, s3 dead: new connections never go to s3" only_from "s1 s2" "$got"
status=$(cl_in s3 "$CL_BUILD/peerlb" status --pin-root "$(cl_pin_root 3)" --run-dir "$CL_TMP/run-s3" 2>&1)
check "status without an agent reports the data plane and says the agent is not running" \
    bash -c '[[ $1 == *"agent       NOT running"* && $1 == *"attached, native mode"* ]]' _ "$status"
echo >&"${KEEP[1]}"
read -r -t 5 during <&"${KEEP[0]}"
check "long-lived connections work while s3's agent is dead" test "${during:-}" == "s3 s3"

echo "$name: the agent restarts"
cl_agent_load 3 10
cl_agent_start 3
waited=$(cl_wait_until 5000 state_is 1 s3 alive)
echo "    s1 saw s3 alive again $waited ms after the restart began"
check "restarted agent is alive again for its peers" test "$waited" != timeout
incarnation=$(peer_field 1 s3 incarnation)
echo "    s3 restarted as incarnation $incarnation ($CL_TMP/state-s3/incarnation: $(cat "$CL_TMP/state-s3/incarnation"))"
check "the restart is incarnation 2, persisted in its --state-dir, and taken by its peers" \
    bash -c '[[ $1 == 2 && $(cat "$2") == 2 ]]' _ "$incarnation" "$CL_TMP/state-s3/incarnation"
echo >&"${KEEP[1]}"
read -r -t 5 after <&"${KEEP[0]}"
exec {KEEP[1]}>&-
wait "$KEEP_PID" 2>/dev/null
check "long-lived connections intact after the restart" test "${after:-}" == "s3 s3"
check "restart kept the attached program" \
    test "$(cl_agent_cli 3 status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["prog_id"])')" == "$prog_before"
flows_after=$(cl_agent_cli 3 flows --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
check "restart kept the flow table ($flows_before -> $flows_after entries)" test "$flows_after" -ge "$flows_before"
check "restarted agent reused the pinned data plane" grep -q "already attached" "$CL_TMP/agent-s3.log"

echo "$name: a stopped agent leaves at once"
stop_ms=$(cl_now_ms)
cl_agent_stop 2 TERM
cl_wait_until 1000 state_is 1 s2 dead >/dev/null
waited=$(($(cl_log_ms 1 "peer s2 .*-> dead" "$stop_ms") - $(cl_log_ms 2 "signal 15" "$stop_ms")))
echo "    s1 marked s2 dead $waited ms after s2's agent took SIGTERM"
check "SIGTERM: the agent announces it leaves; peers mark it dead at once (< 50 ms)" \
    bash -c '[[ $1 -ge 0 && $1 -lt 50 ]]' _ "$waited"

check_summary "$name"
