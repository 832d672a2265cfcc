#!/usr/bin/env bash
# Fault tolerance in namespaces (DESIGN.md sections 3 and 5): three agents,
# heartbeat 100 ms, dead_after 3, service addresses managed by the agents.
#  - a SYN flood against a node while long-lived, mostly idle connections
#    run through its data plane: none breaks;
#  - node 1 dies (agent and nginx stopped, link down): a new connection to
#    its address succeeds within 1 s, exactly one live node holds it, and
#    long-lived connections that nodes 2 and 3 serve keep working;
#  - node 1 returns, fresh (no data plane, no address): it holds its address
#    again after the hold-down and nobody else does; the connections still
#    work through the give-back;
#  - two nodes that both hold an address after a partition settle it within
#    one heartbeat period once they hear each other;
#  - an agent that restarts with a peer's addresses left on its NIC (as its
#    crashed predecessor would have left them) gives them back to the live
#    owner: one holder, one ARP reply;
#  - a node whose agent alone dies (data plane, nginx and connections stay)
#    is fenced: once a peer holds its address only the peer answers ARP,
#    and the node's own long-lived connections keep working through the
#    peer (sent on to it) past the grace period.
# Usage: takeover_test.sh BUILD_DIR
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/check.sh"
source "$here/../../tools/testbed/cluster.sh"

CL_BUILD=$(cd "${1:?usage: takeover_test.sh BUILD_DIR}" && pwd)
name=takeover_test
require_root "$name"

CL_PREFIX="plb$$t"
CL_TMP=$(mktemp -d /tmp/peerlb-takeover.XXXXXX)
CL_INTERVAL_MS=100
CL_AGENT_MANAGED=1
CL_CLUSTER_EXTRA=$'hold_down_ms = 800\ngrace_ms = 3000'
KEEPER_PIDS=()
cleanup() {
    local pid n
    ((CHECK_FAILED)) && cl_agent_logs
    for pid in "${KEEPER_PIDS[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
    for n in 2 3; do ip netns exec "$(cl_ns "s$n")" nft delete table inet plbtest 2>/dev/null; done
    cl_down
    rm -rf "$CL_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

svc1=${CL_SVC_ADDR[1]}
svc2=${CL_SVC_ADDR[2]}


# One of s2 / s3 holds ADDR (s1, down, still has it configured).
one_live_holder() { [[ $(cl_holders "$1") == "s1 s2" || $(cl_holders "$1") == "s1 s3" ]]; }
each_holds_its_own() {
    local n
    for n in 1 2 3; do
        cl_held_by "${CL_SVC_ADDR[$n]}" "s$n" && cl_held_by "${CL_SVC_ADDR6[$n]}" "s$n" || return 1
    done
}

# keeper NAME ADDR COUNT GAP_S: COUNT keep-alive connections to ADDR from
# the client, a request on each every GAP_S seconds, until $CL_TMP/stop-NAME
# exists; then one last round, and a JSON summary in $CL_TMP/keeper-NAME.
keeper() {
    ip netns exec "$(cl_ns c)" python3 -u -c '
import http.client, json, os, sys, time
name, addr, count, gap, stop, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6]
conns = [http.client.HTTPConnection(addr, 80, timeout=10) for _ in range(count)]
first, ok, failed, moved = [None] * count, 0, [], 0
def round_trip(last=False):
    global ok, moved
    for i, c in enumerate(conns):
        try:
            c.request("GET", "/")
            who = c.getresponse().read().decode().strip()
        except Exception as e:
            failed.append(f"conn {i}: {e!r}")
            continue
        ok += 1
        if first[i] is None:
            first[i] = who
        elif who != first[i]:
            moved += 1
round_trip()
print("started", " ".join(str(f) for f in first), flush=True)
while not os.path.exists(stop):
    time.sleep(gap)
    round_trip()
round_trip()
json.dump({"ok": ok, "failed": failed, "moved": moved, "servers": first}, open(out, "w"))
' "$1" "$2" "$3" "$4" "$CL_TMP/stop-$1" "$CL_TMP/keeper-$1" >"$CL_TMP/keeper-$1.log" 2>&1 &
    KEEPER_PIDS+=($!)
}
# arp_replies ADDR: how many hosts answer one ARP request for ADDR from the
# client (distinct sender MACs within 0.5 s).
arp_replies() {
    ip netns exec "$(cl_ns c)" python3 -c '
import socket, struct, sys, time
target, src = socket.inet_aton(sys.argv[1]), socket.inet_aton(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind(("eth0", 0))
mac = s.getsockname()[4]
arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + src + bytes(6) + target
s.send((b"\xff" * 6 + mac + b"\x08\x06" + arp).ljust(60, b"\0"))
s.settimeout(0.05)
senders, end = set(), time.time() + 0.5
while time.time() < end:
    try:
        f = s.recv(1500)
    except socket.timeout:
        continue
    if f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x02" and f[28:32] == target:
        senders.add(f[22:28])
print(len(senders))
' "$1" "$CL_CLIENT_ADDR"
}

keeper_started() { grep -q started "$CL_TMP/keeper-$1.log"; }
keeper_summary() { # keeper_summary NAME: stops it, waits, prints the summary
    touch "$CL_TMP/stop-$1"
    local i
    for i in $(seq 200); do [[ -s $CL_TMP/keeper-$1 ]] && break; sleep 0.1; done
    cat "$CL_TMP/keeper-$1" 2>/dev/null || echo '{"ok": 0, "failed": ["no summary"], "moved": 0, "servers": []}'
}
keeper_clean() { # keeper_clean SUMMARY MIN_OK: no failure, nobody moved, enough requests
    python3 -c '
import json, sys
s = json.loads(sys.argv[1])
assert not s["failed"] and s["moved"] == 0 and s["ok"] >= int(sys.argv[2]), s
' "$1" "$2"
}

echo "$name: namespaces $CL_PREFIX*"
cl_topology_up || { echo "$name: topology failed"; exit 1; }
for n in 1 2 3; do cl_nginx_start "$n"; done
cl_wait_ready || exit 1
for n in 1 2 3; do cl_agent_config "$n" && cl_agent_start "$n"; done
# Three fresh attaches verify the programs at once on this machine's cores.
waited=$(cl_wait_until 20000 cl_all_see_all)
check "agents see each other" test "$waited" != timeout
waited=$(cl_wait_until 3000 each_holds_its_own)
echo "    each agent put its own addresses on its NIC within $waited ms"
check "each node holds exactly its own service addresses" test "$waited" != timeout

echo "$name: SYN flood while long-lived connections run"
cl_agent_load 2 90; cl_agent_load 1 10; cl_agent_load 3 10; sleep 0.4
# Idle for 4 s between requests: an LRU flow table shared with half-open
# entries would let the flood evict them.
keeper flood "$svc2" 8 4
cl_wait_until 5000 keeper_started flood >/dev/null
echo "    long-lived connections to $svc2 served by: $(sed -n 's/^started //p' "$CL_TMP/keeper-flood.log")"
flood_start=$(cl_now_ms)
# 290000 distinct SYNs (more than the whole flow table) from spoofed sources
# in 10.77.1.0/23, which no namespace routes back to: nothing leaves them.
ip netns exec "$(cl_ns c)" timeout 30 python3 -c '
import random, socket, struct, sys
dst = socket.inet_aton(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
rng = random.Random(7)
# Checksums are left zero: the flood is aimed at the data plane flow table,
# which decides at the SYN before any checksum is looked at.
# Each SYN goes twice, as a client retransmitting it would: the flood
# entries are then as recently used as the idle connections.
for i in range(290000):
    src = bytes([10, 77, 1 + (i & 1), rng.randrange(1, 255)])
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, i & 0xffff, 0, 64, 6, 0, src, dst)
    tcp = struct.pack("!HHIIBBHHH", rng.randrange(1024, 65535), 80, rng.getrandbits(32), 0, 5 << 4, 0x02, 65535, 0, 0)
    s.sendto(ip + tcp, (sys.argv[1], 0))
    s.sendto(ip + tcp, (sys.argv[1], 0))
' "$svc2"
flood_ms=$(($(cl_now_ms) - flood_start))
flood_counts=$(cl_agent_cli 2 stats --json | python3 -c '
import json, sys
c = json.load(sys.stdin)["counters"]
print(sum(v["packets"] for k, v in c.items() if k.startswith("syn_")))')
echo "    2 x 290000 SYNs sent in $flood_ms ms; s2 decided $flood_counts new connections"
check "the flood reached s2's data plane (> 250000 decisions)" test "$flood_counts" -gt 250000
sleep 4.5 # one more idle gap after the flood
summary=$(keeper_summary flood)
echo "    long-lived connections: $summary"
check "SYN flood: no long-lived connection broke or moved" keeper_clean "$summary" 16
cl_agent_load 2 10

echo "$name: node 1 dies"
cl_agent_load 1 90; sleep 0.4 # s1 hands its new connections to s2 and s3
keeper takeover "$svc1" 8 0.1
cl_wait_until 5000 keeper_started takeover >/dev/null
servers=$(sed -n 's/^started //p' "$CL_TMP/keeper-takeover.log")
echo "    long-lived connections to $svc1 served by: $servers"
check "long-lived connections are served by s2 and s3" \
    bash -c '[[ -n $1 && ! " $1 " =~ " s1 " && ! " $1 " =~ None ]]' _ "$servers"
sleep 0.5
death=$(cl_now_ms)
cl_agent_stop 1 KILL
cl_nginx_stop 1
ip -n "$(cl_ns s1)" link set eth0 down
first_ok=timeout
while (($(cl_now_ms) - death < 5000)); do
    if who=$(cl_in c curl -s --max-time 0.2 "http://$svc1/") && [[ -n $who ]]; then
        first_ok=$(($(cl_now_ms) - death))
        break
    fi
done
echo "    first new connection to $svc1 after node 1's death: $first_ok ms (served by ${who:-none})"
check "a new connection to the dead node's address succeeds within 1 s" \
    bash -c '[[ $1 != timeout && $1 -le 1000 ]]' _ "$first_ok"
holders=$(cl_holders "$svc1")
echo "    $svc1 held by: $holders (s1 is down)"
check "exactly one live node holds the address" \
    bash -c '[[ $1 == "s1 s2" || $1 == "s1 s3" ]]' _ "$holders"
# (s1's link is down: the kernel dropped its IPv6 addresses with it.) The
# IPv6 address may be taken by the other survivor a few ms later.
one_of_s2_s3() { [[ ${1#s1 } == s2 || ${1#s1 } == s3 ]]; } # one_of_s2_s3 "HOLDERS"
one_live_holder6() { one_of_s2_s3 "$(cl_holders "${CL_SVC_ADDR6[1]}")"; }
cl_wait_until 1000 one_live_holder6 >/dev/null
holders6=$(cl_holders "${CL_SVC_ADDR6[1]}")
echo "    ${CL_SVC_ADDR6[1]} held by: $holders6"
check "exactly one live node holds its IPv6 address" one_of_s2_s3 "$holders6"
status=$(cl_agent_cli 2 status --json; cl_agent_cli 3 status --json)
check "status says who took it over from whom" python3 -c '
import json, sys
docs = [json.loads(d) for d in sys.argv[1].replace("}\n{", "}\x00{").split("\x00")]
taken = [a for d in docs for a in d["agent"]["addresses"] if a["address"] == "10.77.0.111"]
assert len(taken) == 1 and taken[0]["why"] == "taken over" and taken[0]["from"] == "s1", taken
' "$status"
sleep 1.5

echo "$name: node 1 returns (fresh: no data plane, no address)"
cl_in s1 "$CL_BUILD/peerlb" detach --iface eth0 --pin-root "$(cl_pin_root 1)" >/dev/null
for a in "$svc1/32" "${CL_SVC_ADDR6[1]}/128"; do
    ip -n "$(cl_ns s1)" addr del "$a" dev eth0 2>/dev/null
    ip -n "$(cl_ns s1)" addr del "$a" dev lo 2>/dev/null
done
ip -n "$(cl_ns s1)" link set eth0 up
cl_nginx_start 1
started=$(cl_now_ms)
cl_agent_start 1
waited=$(cl_wait_until 15000 cl_held_by "$svc1" s1)
# Counted from "agent s1 up" in its log: before that, the agent attaches
# (loading the programs, ~1-3 s of verification) like any fresh node.
up=$(cl_log_ms 1 "agent s1 up" "$started")
since_up=$([[ $waited != timeout && -n $up ]] && echo $((started + waited - up)) || echo timeout)
echo "    s1 holds $svc1 again $since_up ms after its agent was up ($waited ms after its start; hold-down 800 ms)"
check "the returning node holds its address again, and nobody else does" \
    bash -c '[[ $1 != timeout && $1 -le 3000 ]]' _ "$since_up"
# Its IPv6 address is released by another holder, possibly a tick later.
check "its IPv6 address too" cl_wait_until 3000 cl_held_by "${CL_SVC_ADDR6[1]}" s1
sleep 3.5 # past the grace period
summary=$(keeper_summary takeover)
echo "    long-lived connections through takeover and give-back: $summary"
check "zero failures through takeover and give-back" keeper_clean "$summary" 200
given=$(cl_agent_cli 2 status --json | python3 -c 'import json,sys; d=json.load(sys.stdin)["agent"]; print(d["takeovers"], d["givebacks"])')
metrics=$(cl_in s2 curl -s --max-time 2 http://127.0.0.1:9477/metrics)
check "metrics count takeovers, give-backs and handed-over flows" \
    bash -c 'grep -q "^peerlb_takeovers_total [1-9]" <<<"$1" && grep -q "^peerlb_givebacks_total [1-9]" <<<"$1" && grep -q "peerlb_orphans_total{outcome=\"dropped_in_grace\"}" <<<"$1"' _ "$metrics"

echo "$name: two nodes that both hold an address"
# Partition s2 and s3 (each drops the other's datagrams), then end node 1.
for pair in "2 ${CL_NODE_ADDR[3]}" "3 ${CL_NODE_ADDR[2]}"; do
    set -- $pair
    ip netns exec "$(cl_ns "s$1")" nft -f - <<EOF
table inet plbtest {
    chain input {
        type filter hook input priority 0;
        ip saddr $2 udp dport 7946 drop
    }
}
EOF
done
cl_agent_stop 1 KILL
ip -n "$(cl_ns s1)" link set eth0 down
waited=$(cl_wait_until 5000 cl_held_by "$svc1" "s1 s2 s3")
echo "    partitioned: $svc1 held by $(cl_holders "$svc1") (s1 down)"
check "the partition makes both s2 and s3 hold node 1's address" test "$waited" != timeout
heal=$(cl_now_ms)
for n in 2 3; do ip netns exec "$(cl_ns "s$n")" nft delete table inet plbtest; done
cl_wait_until 3000 one_live_holder "$svc1" >/dev/null
released=""
for n in 2 3; do
    t=$(cl_log_ms "$n" "released $svc1" "$heal")
    [[ -n $t ]] && released=$((t - heal))
done
echo "    after the partition healed: $svc1 held by $(cl_holders "$svc1"); the loser released it ${released:-never} ms after"
check "the conflict is settled within one heartbeat period (<= 150 ms incl. 10 ms tick)" \
    bash -c '[[ -n $1 && $1 -le 150 ]]' _ "$released"
waited=$(cl_wait_until 1000 cl_held_by "$svc2" s2)
check "s2's own address, which s3 took in the partition, is back with s2 ($waited ms)" \
    test "$waited" != timeout

echo "$name: an agent restarts with a peer's addresses left on its NIC"
# As s3's agent would have left them had it crashed holding s2's addresses.
svc2_6=${CL_SVC_ADDR6[2]}
ip -n "$(cl_ns s3)" addr add "$svc2/32" dev eth0
ip -n "$(cl_ns s3)" addr add "$svc2_6/128" dev eth0 nodad
check "left on s3's NIC: s2 and s3 both hold $svc2" cl_held_by "$svc2" "s2 s3"
replies=$(arp_replies "$svc2")
echo "    before the restart: $replies ARP replies for $svc2"
check "before the restart, an ARP request for $svc2 gets two replies" test "$replies" = 2
cl_agent_stop 3 KILL
started=$(cl_now_ms)
cl_agent_start 3
waited=$(cl_wait_until 10000 cl_held_by "$svc2" s2)
up=$(cl_log_ms 3 "agent s3 up" "$started")
since_up=$([[ $waited != timeout && -n $up ]] && echo $((started + waited - up)) || echo timeout)
echo "    only s2 holds $svc2 $since_up ms after s3's agent was up (listens 300 ms first)"
check "after s3's agent restarted, only s2 holds $svc2 within a few heartbeat periods" \
    bash -c '[[ $1 != timeout && $1 -le 1000 ]]' _ "$since_up"
check "and its IPv6 address" cl_wait_until 1000 cl_held_by "$svc2_6" s2
adopted=$(cl_log_ms 3 "found ${svc2//./\\.} \\(s2's service address\\) on eth0 at start" "$started")
check "s3 says it found s2's address on its NIC and adopted it" test -n "$adopted"
replies=$(arp_replies "$svc2")
echo "    after the restart: $replies ARP reply for $svc2"
check "an ARP request for $svc2 gets one reply" test "$replies" = 1
check "s3 holds its own address again, and only s3" \
    cl_wait_until 3000 cl_held_by "${CL_SVC_ADDR[3]}" s3
check "node 1's address has exactly one live holder" cl_wait_until 3000 one_live_holder "$svc1"
check "the node address and s3's other addresses stay" \
    bash -c '[[ $(ip -n "$1" -o addr show dev eth0) =~ "inet ${2}/24 " ]]' _ "$(cl_ns s3)" "${CL_NODE_ADDR[3]}"

echo "$name: node 3's agent alone dies (its data plane, nginx and connections stay)"
svc3=${CL_SVC_ADDR[3]}
cl_agent_load 2 10 && cl_agent_load 3 10
sleep 0.3
keeper fenced "$svc3" 8 0.1
cl_wait_until 5000 keeper_started fenced >/dev/null
servers=$(sed -n 's/^started //p' "$CL_TMP/keeper-fenced.log")
check "long-lived connections to $svc3 are served by s3 itself ($servers)" \
    bash -c '[[ -n $1 && ! " $1 " =~ " s2 " && ! " $1 " =~ None ]]' _ "$servers"
counter() { # counter N NAME: packets of counter NAME on server N
    cl_peerlb "$1" stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["counters"][sys.argv[1]]["packets"])' "$2"
}
cl_agent_stop 3 KILL
waited=$(cl_wait_until 5000 cl_held_by "$svc3" "s2 s3")
echo "    s2 took $svc3 over $waited ms after s3's agent died (s3 keeps it on its NIC)"
check "s2 takes the address of the node whose agent died" test "$waited" != timeout
sleep 0.5 # s3's own information is stale for as long as its peers waited
replies=$(arp_replies "$svc3")
echo "    ARP replies for $svc3 with s3 fenced: $replies"
check "an ARP request for $svc3 gets one reply: s3 is fenced" test "$replies" = 1
check "s3's data plane dropped ARP requests for $svc3 ($(counter 3 drop_fenced_neigh))" \
    test "$(counter 3 drop_fenced_neigh)" -gt 0
sleep 3.5 # past the grace period (3000 ms)
summary=$(keeper_summary fenced)
echo "    long-lived connections to the fenced node: $summary"
check "zero failures of the fenced node's own connections, past the grace period" \
    keeper_clean "$summary" 200
check "s2 sent the fenced node's unknown segments on to it ($(counter 2 tx_grace_previous))" \
    test "$(counter 2 tx_grace_previous)" -gt 0

check_summary "$name"
