#!/usr/bin/env bash
# A larger cluster in namespaces: SCALE_NODES agents (default 16; e.g.
# SCALE_NODES=24 for a manual run), each with nginx, the real XDP program and
# one l4 service address (v4 and v6), heartbeat every SCALE_INTERVAL_MS
# (default 100 ms), dead_after 3, addresses managed by the agents
# (tools/testbed/cluster.sh's layout above 9 servers). All the agents share
# this machine's CPUs, and every one hears every heartbeat: their CPU use
# grows with the square of the count (about 30 % of one CPU for 16 idle
# agents at 100 ms, 60 % for 24); a longer period makes room for more.
#  (a) every agent sees every other alive and all agree on who holds which
#      address (each its own); every service address answers the client; a
#      loaded node hands its new connections to the lightly loaded half of
#      the cluster only, spread among several of them;
#  (b) the last node dies (agent and nginx stopped, link down): every
#      survivor declares it dead within interval x dead_after + a margin, by
#      its own log; exactly one survivor holds its addresses, all survivors
#      agree which, and its address answers;
#  (c) it returns, fresh: every agent sees it alive again, its addresses go
#      back to it after the hold-down (only it holds them), it answers them.
# Every live node's view is checked at each phase.
# Usage: scale_test.sh BUILD_DIR
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/check.sh"
source "$here/../../tools/testbed/cluster.sh"

CL_BUILD=$(cd "${1:?usage: scale_test.sh BUILD_DIR}" && pwd)
name=scale_test
require_root "$name"

nodes=${SCALE_NODES:-16}
cl_server_count "$nodes" || exit 1
((nodes >= 4)) || fail "$name" "SCALE_NODES: at least 4 nodes"
CL_PREFIX="plb$$z"
CL_TMP=$(mktemp -d /tmp/peerlb-scale.XXXXXX)
CL_INTERVAL_MS=${SCALE_INTERVAL_MS:-100}
DEAD_AFTER=3 # cl_agent_config's
HOLD_DOWN_MS=800
CL_AGENT_MANAGED=1
CL_CLUSTER_EXTRA="hold_down_ms = $HOLD_DOWN_MS"
CL_NGINX_CONNECTIONS=128 # a light service: one worker, few connections
cleanup() {
    ((CHECK_FAILED)) && cl_agent_logs
    cl_down
    rm -rf "$CL_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

victim=$nodes                              # the node that dies and returns
survivors=$(seq -s ' ' 1 $((nodes - 1)))
everyone=$(cl_ids)
svc_v=${CL_SVC_ADDR[$victim]}
svc6_v=${CL_SVC_ADDR6[$victim]}

# views_agree "OBSERVERS" "DEAD": every observer's `peers --json` lists every
# node, the DEAD ones dead and the others alive, and all observers agree on
# who holds each service address (two per node), one holder each. Prints the
# holder map.
views_agree() {
    local n
    for n in $1; do
        cl_agent_cli "$n" peers --json >"$CL_TMP/view-s$n.json" 2>/dev/null ||
            echo '[]' >"$CL_TMP/view-s$n.json"
    done
    python3 - "$CL_TMP" "$1" "$2" "$everyone" <<'EOF'
import json, sys
tmp, observers, dead, everyone = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4].split()
maps = {}
for o in observers:
    view = {p["id"]: p for p in json.load(open(f"{tmp}/view-s{o}.json"))}
    if sorted(view) != sorted(f"s{n}" for n in everyone):
        sys.exit(f"s{o} lists {sorted(view)}")
    for n in everyone:
        want = "self" if n == o else "dead" if n in dead else "alive"
        if view[f"s{n}"]["state"] != want:
            sys.exit(f"s{o} sees s{n} {view[f's{n}']['state']}, not {want}")
    holders = {}
    for p in view.values():
        for a in p["owns"]:
            holders.setdefault(a, []).append(p["id"])
    if any(len(h) != 1 for h in holders.values()) or len(holders) != 2 * len(everyone):
        sys.exit(f"s{o}: not one holder for each of the {2 * len(everyone)} addresses: {holders}")
    maps[o] = {a: h[0] for a, h in holders.items()}
first = maps[observers[0]]
for o, m in maps.items():
    if m != first:
        sys.exit(f"s{o} and s{observers[0]} disagree: {m} vs {first}")
print(json.dumps(first, sort_keys=True))
EOF
}
# owner_in_views ADDR: who holds ADDR in the views views_settle last agreed
# on ("nobody" if they did not agree).
owner_in_views() {
    python3 -c '
import json, sys
try:
    print(json.load(open(sys.argv[1])).get(sys.argv[2], "nobody"))
except ValueError:
    print("nobody")' "$CL_TMP/holders.json" "$1"
}
# views_settle TIMEOUT_MS "OBSERVERS" "DEAD": waits for views_agree; the
# holder map in $CL_TMP/holders.json, the last disagreement in views.err.
views_settle() {
    local limit=$1 start
    start=$(cl_now_ms)
    until views_agree "$2" "$3" >"$CL_TMP/holders.json" 2>"$CL_TMP/views.err"; do
        (($(cl_now_ms) - start > limit)) && { echo timeout; return 1; }
        sleep 0.1
    done
    echo $(($(cl_now_ms) - start))
}

# own_addresses_only N: server N's eth0 holds its own two service addresses
# and no other server's.
own_addresses_only() {
    local n=$1 m addrs
    addrs=$(ip -n "$(cl_ns "s$n")" -o addr show dev eth0)
    for m in $everyone; do
        local want=1 a
        [[ $m == "$n" ]] || want=0
        for a in "${CL_SVC_ADDR[$m]}" "${CL_SVC_ADDR6[$m]}"; do
            [[ $(grep -cE "inet6? ${a//./\\.}/(32|128) " <<<"$addrs") == "$want" ]] || return 1
        done
    done
}
all_hold_their_own() { local n; for n in $1; do own_addresses_only "$n" || return 1; done; }

# answers ADDR...: the server names answering one request to each ADDR.
answers() {
    local a
    for a in "$@"; do
        [[ $a == *:* ]] && a="[$a]"
        cl_in c curl -s --max-time 2 "http://$a/" || echo failed
    done
}
tally() { sort | uniq -c | awk '{printf "%s%s=%s", sep, $2, $1; sep=" "} END {print ""}'; }
only_from() { local r; for r in $2; do [[ " $1 " == *" $r "* ]] || return 1; done; [[ -n $2 ]]; }
# loads_seen_by N: server N's view of every node's load is what the files say.
loads_seen_by() {
    cl_agent_cli "$1" peers --json 2>/dev/null | python3 -c '
import json, sys
tmp = sys.argv[1]
for p in json.load(sys.stdin):
    node = p["id"]
    assert p["load"] == float(open(f"{tmp}/load-{node}").read()), p' "$CL_TMP"
}

echo "$name: $nodes agents, namespaces $CL_PREFIX*"
started=$(cl_now_ms)
elapsed() { local ms=$(($(cl_now_ms) - started)); printf '%d.%d s' $((ms / 1000)) $((ms % 1000 / 100)); }
cl_topology_up || fail "$name" "topology"
for n in $everyone; do cl_nginx_start "$n"; done
cl_wait_ready || fail "$name" "nginx"
echo "    namespaces and $nodes nginx ready at $(elapsed)"
for n in $everyone; do cl_agent_config "$n" && cl_agent_start "$n"; done
# Every fresh attach verifies the programs: $nodes of them share two CPUs.
agents=$(cl_now_ms)
echo "    agents started at $(elapsed)"
waited=$(cl_wait_until 90000 cl_all_see_all)
last_up=0
for n in $everyone; do
    up=$(cl_log_ms "$n" "agent s$n up")
    ((${up:-0} > last_up)) && last_up=$up
done
echo "    the last agent was up $((last_up - agents)) ms after they started;"
echo "    every agent saw all $((nodes - 1)) peers alive $waited ms after they started"
check "every agent sees all $((nodes - 1)) peers alive" test "$waited" != timeout

echo "$name: (a) all alive (at $(elapsed))"
waited=$(cl_wait_until 5000 all_hold_their_own "$everyone")
check "each node's NIC holds exactly its own service addresses ($waited ms)" test "$waited" != timeout
waited=$(views_settle 5000 "$everyone" "")
check "all $nodes views: every node alive, each address held by its home node, all agree" \
    test "$waited" != timeout
[[ $waited == timeout ]] && cat "$CL_TMP/views.err"
check "the views' holder of $svc_v is s$victim" test "$(owner_in_views "$svc_v")" == "s$victim"
addrs=()
for n in $everyone; do addrs+=("${CL_SVC_ADDR[$n]}" "${CL_SVC_ADDR6[$n]}"); done
got=$(answers "${addrs[@]}")
echo "    one request to each of the $((2 * nodes)) service addresses: $(tally <<<"$got" | tr ' ' '\n' | grep -c =) distinct servers answered, $(grep -c failed <<<"$got") failed"
check "every service address answers the client" bash -c '! grep -q failed <<<"$1"' _ "$got"
# s1 busy, the first half of its peers busy too (not min_difference below
# it), the second half idle: only the idle half may take s1's connections.
low=$(seq -s ' ' $((nodes / 2 + 1)) "$nodes")
cl_agent_load 1 90
for n in $(seq 2 $((nodes / 2))); do cl_agent_load "$n" 80; done
for n in $low; do cl_agent_load "$n" 10; done
waited=$(cl_wait_until 5000 loads_seen_by 1)
check "s1 sees every node's new load ($waited ms)" test "$waited" != timeout
got=$(for i in $(seq 30); do answers "${CL_SVC_ADDR[1]}"; done)
spread=$(tally <<<"$got")
echo "    s1 at 90 %, s2..s$((nodes / 2)) at 80 %, the rest at 10 %: 30 connections to ${CL_SVC_ADDR[1]} served by $spread"
low_names=$(for n in $low; do printf 's%s ' "$n"; done)
# Power of two choices (balance.choices = 2): s1 compares two peers drawn
# at random and keeps the connection when both are busy (7 of 15 peers:
# C(7,2)/C(15,2) = 20 % of them, 6 of 30 expected); it never hands one to
# a busy peer.
check "s1's new connections go to the idle half, or stay when both peers drawn are busy" \
    only_from "$low_names s1" "$got"
kept=$(grep -cx s1 <<<"$got")
check "most go to the idle half (kept by s1: $kept of 30)" test "$kept" -le 15
check "and are spread among at least 3 of them" test "$(wc -w <<<"$spread")" -ge 3
for n in $everyone; do cl_agent_load "$n" 10; done
cl_wait_until 5000 loads_seen_by 1 >/dev/null

echo "$name: (b) s$victim dies (at $(elapsed))"
death=$(cl_now_ms)
cl_agent_stop "$victim" KILL
cl_nginx_stop "$victim"
ip -n "$(cl_ns "s$victim")" link set eth0 down
waited=$(views_settle 10000 "$survivors" "$victim")
echo "    all $((nodes - 1)) survivors' views agree $waited ms after the death; $svc_v held by $(owner_in_views "$svc_v")"
check "every survivor sees s$victim dead and the others alive, all agree on the holders" \
    test "$waited" != timeout
[[ $waited == timeout ]] && cat "$CL_TMP/views.err"
bound=$((CL_INTERVAL_MS * DEAD_AFTER + 400))
slowest=0
for n in $survivors; do
    t=$(cl_log_ms "$n" "peer s$victim [a-z]+ -> dead" "$death")
    t=$((${t:-99999999999999} - death))
    ((t > slowest)) && slowest=$t
done
echo "    the last survivor declared s$victim dead $slowest ms after its death (by their logs)"
check "every survivor declared it dead within interval x dead_after + 400 ms ($bound ms)" \
    test "$slowest" -le "$bound"
# s$victim still has its IPv4 address configured (its link is down); the
# kernel dropped the IPv6 one with the link.
live_holders() { cl_holders "$1" | sed "s/\bs$victim\b//; s/^ *//; s/ *$//"; }
one_live_holder() { [[ $(live_holders "$1" | wc -w) == 1 ]]; }
# Each address goes to the survivor holding the fewest (then the lowest id):
# the two may go to two survivors.
holders=""
for a in "$svc_v" "$svc6_v"; do
    waited=$(cl_wait_until 3000 one_live_holder "$a")
    holder=$(live_holders "$a")
    echo "    $a on the NIC of: $holder ($waited ms after the views agreed)"
    check "exactly one survivor holds $a" test "$waited" != timeout
    check "the one all views name" test "$holder" == "$(owner_in_views "$a")"
    holders+="$holder "
done
got=$(answers "$svc_v" "$svc6_v")
echo "    requests to $svc_v and $svc6_v answered by: $(tr '\n' ' ' <<<"$got")"
check "the dead node's addresses answer, each from the survivor holding it" \
    test "$(tr '\n' ' ' <<<"$got")" == "$holders"
others=()
for n in $survivors; do others+=("${CL_SVC_ADDR[$n]}"); done
got=$(answers "${others[@]}")
check "every survivor's own address still answers" bash -c '! grep -q failed <<<"$1"' _ "$got"

echo "$name: (c) s$victim returns, fresh: no data plane, no address (at $(elapsed))"
cl_in "s$victim" "$CL_BUILD/peerlb" detach --iface eth0 --pin-root "$(cl_pin_root "$victim")" >/dev/null
for a in "$svc_v/32" "$svc6_v/128"; do
    ip -n "$(cl_ns "s$victim")" addr del "$a" dev eth0 2>/dev/null
    ip -n "$(cl_ns "s$victim")" addr del "$a" dev lo 2>/dev/null
done
ip -n "$(cl_ns "s$victim")" link set eth0 up
# Its IPv6 node address went with the link, as its configuration puts it back.
ip -n "$(cl_ns "s$victim")" addr add "${CL_NODE_ADDR6[$victim]}/64" dev eth0 nodad
cl_nginx_start "$victim"
back=$(cl_now_ms)
cl_agent_start "$victim"
waited=$(cl_wait_until 20000 cl_all_see_all)
echo "    every agent sees all its peers alive again $waited ms after s$victim's agent started"
check "every agent sees s$victim alive again" test "$waited" != timeout
waited=$(cl_wait_until 10000 cl_held_by "$svc_v" "s$victim")
check "only s$victim holds $svc_v again" test "$waited" != timeout
# By its own log: from "up" (its first heartbeat follows) to taking it.
up=$(cl_log_ms "$victim" "agent s$victim up" "$back")
took=$(cl_log_ms "$victim" "holding own address ${svc_v//./\\.}\$" "$back")
since_up=$([[ -n $up && -n $took ]] && echo $((took - up)) || echo never)
echo "    s$victim took $svc_v back $since_up ms after its agent was up (hold-down $HOLD_DOWN_MS ms)"
check "after the hold-down, within hold-down + 2 s" \
    bash -c '[[ $1 != never ]] && (($1 >= $2 && $1 <= $2 + 2000))' _ "$since_up" "$HOLD_DOWN_MS"
waited=$(cl_wait_until 3000 cl_held_by "$svc6_v" "s$victim")
check "only s$victim holds $svc6_v again" test "$waited" != timeout
waited=$(cl_wait_until 3000 all_hold_their_own "$everyone")
check "every node's NIC holds exactly its own service addresses again" test "$waited" != timeout
waited=$(views_settle 5000 "$everyone" "")
check "all $nodes views: every node alive, each address held by its home node, all agree" \
    test "$waited" != timeout
[[ $waited == timeout ]] && cat "$CL_TMP/views.err"
check "the views' holder of $svc_v is s$victim again" test "$(owner_in_views "$svc_v")" == "s$victim"
got=$(answers "$svc_v" "$svc6_v")
check "the returned node answers its addresses itself ($(tr '\n' ' ' <<<"$got"))" \
    test "$(tr '\n' ' ' <<<"$got")" == "s$victim s$victim "

echo "$name: $(elapsed) from the first namespace to the last check"
check_summary "$name"
