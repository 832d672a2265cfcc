#!/usr/bin/env bash
# ipip forwarding across a router (DESIGN.md section 2): two agents on two
# subnets joined by a router namespace, the client on a third subnet.
#
#   client c  eth0 10.81.3.3/24   fd81:3::3/64 --- r3 .254 / ::fe ---+
#   node s1   eth0 10.81.1.1/24   fd81:1::1/64 --- r1 .254 / ::fe --- router r
#   node s2   eth0 10.81.2.2/24   fd81:2::2/64 --- r2 .254 / ::fe ---+
#
# s1 owns the service addresses 10.81.1.100 and fd81:1::100 and is busy
# (file load source, 90 %), s2 is idle (10 %): s1 hands every new connection
# to s2 in an outer IPv4 header whose next hop is the router, not s2 (which
# is on no link of s1's), and s2 answers the client directly through the
# router. The agents exchange heartbeats by unicast (cluster.peers), which
# also keeps s1's neighbour entry for the router resolved. Checks: every
# request answered, all by s2; a 5 MiB download intact; s1's counters (sent,
# never dropped, never to a peer's own MAC), s2's decapsulations; the agent
# enabled forwarding on lo (the route lookup needs it).
# Usage: routed_test.sh BUILD_DIR
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/check.sh"
source "$here/../../tools/testbed/cluster.sh"

CL_BUILD=$(cd "${1:?usage: routed_test.sh BUILD_DIR}" && pwd)
name=routed_test
require_root "$name"

CL_PREFIX="plb$$r"
CL_TMP=$(mktemp -d /tmp/peerlb-routed.XXXXXX)
CL_INTERVAL_MS=100
CL_FORWARD=ipip
CL_PICK=least
# Two nodes only, and this test is about forwarding: no takeover.
CL_CLUSTER_EXTRA="takeover = false"
CL_NODE_ADDR=([1]=10.81.1.1 [2]=10.81.2.2)
CL_NODE_ADDR6=([1]=fd81:1::1 [2]=fd81:2::2)
CL_SVC_ADDR=([1]=10.81.1.100 [2]=10.81.2.100)
CL_SVC_ADDR6=([1]=fd81:1::100 [2]=fd81:2::100)
CL_PEERS=([1]='"10.81.2.2"' [2]='"10.81.1.1"')
client=10.81.3.3
client6=fd81:3::3
router=$(cl_ns r)

cleanup() {
    ((CHECK_FAILED)) && cl_agent_logs
    cl_down
    ip netns del "$router" 2>/dev/null
    rm -rf "$CL_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# host_up NAME MAC ROUTER_PORT SUBNET ADDR ADDR6: namespace NAME, eth0 with
# MAC, ADDR/24 and ADDR6/64 of SUBNET (10.81.SUBNET.0/24, fd81:SUBNET::/64),
# its other end ROUTER_PORT in the router namespace with .254 / ::fe,
# default routes through the router.
host_up() {
    local host=$1 mac=$2 port=$3 subnet=$4 addr=$5 addr6=$6 ns
    ns=$(cl_ns "$host")
    ip netns add "$ns" || return 1
    ip -n "$router" link add "$port" type veth peer name eth0 netns "$ns" || return 1
    ip -n "$ns" link set eth0 address "$mac"
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" addr add "$addr6/64" dev eth0 nodad
    ip -n "$router" link set "$port" up
    ip -n "$router" addr add "10.81.$subnet.254/24" dev "$port"
    ip -n "$router" addr add "fd81:$subnet::fe/64" dev "$port" nodad
    # veth would hand XDP partial checksums that XDP_TX never completes.
    ip netns exec "$ns" ethtool -K eth0 tx off >/dev/null 2>&1
    ip netns exec "$router" ethtool -K "$port" tx off >/dev/null 2>&1
    ip -n "$ns" route add default via "10.81.$subnet.254" || return 1
    ip -n "$ns" -6 route add default via "fd81:$subnet::fe" || return 1
}

topology_up() {
    ip netns add "$router" || return 1
    ip -n "$router" link set lo up
    # A router: forwards; the replies s2 sends for s1's service addresses
    # come in by r2 while their source lives behind r1, so no reverse-path
    # filter (DSR across subnets needs that of every router on the way).
    ip netns exec "$router" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
        net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 || return 1
    host_up s1 02:81:00:00:00:01 r1 1 "${CL_NODE_ADDR[1]}" "${CL_NODE_ADDR6[1]}" || return 1
    host_up s2 02:81:00:00:00:02 r2 2 "${CL_NODE_ADDR[2]}" "${CL_NODE_ADDR6[2]}" || return 1
    host_up c 02:81:00:00:00:03 r3 3 "$client" "$client6" || return 1
    local port
    for port in r1 r2 r3; do
        ip netns exec "$router" sysctl -qw "net.ipv4.conf.$port.rp_filter=0" || return 1
    done
    # XDP_TX (s1 sending the outer frames back out of its eth0) reaches the
    # router only if the router's end of that veth runs XDP (DESIGN.md
    # section 7); r2 too, should s2 ever forward.
    for port in r1 r2; do
        ip -n "$router" link set "$port" xdp obj "$CL_BUILD/bpf/xdp_pass.bpf.o" sec xdp || return 1
    done
}

# answers ADDR: one request from the client, prints nginx's body (the server).
answers() { cl_in c curl -s --max-time 3 "http://$1/" 2>/dev/null; }

wait_ready() { # every node's nginx answers the client through the router
    local n try
    for n in 1 2; do
        for try in $(seq 50); do
            [[ $(answers "${CL_NODE_ADDR[$n]}") == "s$n" ]] && break
            sleep 0.1
        done
        [[ $(answers "${CL_NODE_ADDR[$n]}") == "s$n" ]] ||
            { echo "$name: s$n does not answer through the router" >&2; return 1; }
    done
}

peer_state() { # peer_state N ID: ID's state in node N's view
    cl_agent_cli "$1" peers --json 2>/dev/null | python3 -c '
import json, sys
print(next((p["state"] for p in json.load(sys.stdin) if p["id"] == sys.argv[1]), "none"))
' "$2"
}
alive_both_ways() { [[ $(peer_state 1 s2) == alive && $(peer_state 2 s1) == alive ]]; }
s2_holds_s1_services() { # on lo, so s2 terminates what s1 hands it (DESIGN 1)
    local addrs
    addrs=$(ip -n "$(cl_ns s2)" -o addr show dev lo)
    grep -q " ${CL_SVC_ADDR[1]}/" <<<"$addrs" && grep -q " ${CL_SVC_ADDR6[1]}/" <<<"$addrs"
}

counter() { # counter N NAME: packets of counter NAME on node N
    cl_peerlb "$1" stats --json | python3 -c '
import json, sys
print(json.load(sys.stdin)["counters"][sys.argv[1]]["packets"])' "$2"
}

tally() { sort | uniq -c | awk '{printf "%s%s=%s", sep, $2, $1; sep=" "} END {print ""}'; }
all_are() { # all_are WANTED "RESPONSES": every response is WANTED, and there are some
    local r
    for r in $2; do [[ $r == "$1" ]] || return 1; done
    [[ -n $2 ]]
}

echo "$name: namespaces $CL_PREFIX* (router $router)"
topology_up || { echo "$name: topology failed"; exit 1; }
for n in 1 2; do cl_nginx_start "$n"; done
wait_ready || exit 1

cl_agent_load 1 90
cl_agent_load 2 10
for n in 1 2; do
    cl_agent_config "$n"
    cl_agent_start "$n" || { echo "$name: agent s$n did not start"; exit 1; }
done
waited=$(cl_wait_until 10000 alive_both_ways)
check "agents see each other alive across the router (${waited} ms)" test "$waited" != timeout
waited=$(cl_wait_until 5000 s2_holds_s1_services)
check "s2 holds s1's service addresses on lo (${waited} ms)" test "$waited" != timeout
for n in 1 2; do
    check "s$n's agent enabled forwarding on lo (ipip route lookups)" test \
        "$(cl_in "s$n" cat /proc/sys/net/ipv4/conf/lo/forwarding \
            /proc/sys/net/ipv6/conf/lo/forwarding | tr -d '\n')" == 11
done
check "s1 routes nothing itself (net.ipv4.ip_forward = 0)" \
    test "$(cl_in s1 cat /proc/sys/net/ipv4/ip_forward)" == 0
# Toggling ip_forward resets every interface's forwarding, lo's included.
cl_in s1 sysctl -qw net.ipv4.ip_forward=1 net.ipv4.ip_forward=0
# Set at start and again now: logged each time it was off.
lo_forwarding_set_twice() {
    [[ $(grep -c 'set net.ipv4.conf.lo.forwarding = 1 (was 0)' "$CL_TMP/agent-s1.log") == 2 &&
        $(cl_in s1 cat /proc/sys/net/ipv4/conf/lo/forwarding) == 1 ]]
}
waited=$(cl_wait_until 3000 lo_forwarding_set_twice)
check "s1's agent put forwarding on lo back after ip_forward was toggled (${waited} ms)" \
    test "$waited" != timeout

echo "$name: s1 busy (90 %), s2 idle (10 %): 40 IPv4 and 20 IPv6 connections to s1's addresses"
got=$(for i in $(seq 40); do answers "${CL_SVC_ADDR[1]}" || echo failed; echo; done | grep .)
echo "    IPv4: $(tally <<<"$got")"
check "IPv4: 40 requests answered" test "$(grep -cx 's[12]' <<<"$got")" -eq 40
check "IPv4: every one served by s2 (handed on through the router)" all_are s2 "$got"
got6=$(for i in $(seq 20); do answers "[${CL_SVC_ADDR6[1]}]" || echo failed; echo; done | grep .)
echo "    IPv6: $(tally <<<"$got6")"
check "IPv6 (in the IPv4 outer header): 20 requests answered" \
    test "$(grep -cx 's[12]' <<<"$got6")" -eq 20
check "IPv6: every one served by s2" all_are s2 "$got6"

blob_sum=$(sha256sum <"$CL_TMP/blob" | cut -d' ' -f1)
server=$(cl_in c curl -s --max-time 30 -o "$CL_TMP/download" -D - "http://${CL_SVC_ADDR[1]}/blob" |
    tr -d '\r' | awk -F': ' 'tolower($1)=="x-server" {print $2}')
echo "    5 MiB download served by ${server:-nobody}"
check "5 MiB download through the routed tunnel is intact" \
    test "$(sha256sum <"$CL_TMP/download" | cut -d' ' -f1)" == "$blob_sum"
check "5 MiB download served by s2" test "${server:-}" == s2

syns=$(($(counter 1 syn_forward_least) + $(counter 1 syn_forward_weighted)))
flow=$(counter 1 tx_flow_forward)
echo "    s1: $syns SYNs and $flow later segments handed to s2;" \
    "s2 decapsulated $(counter 2 pass_decapsulated)"
check "s1 handed the new connections to s2 ($syns SYNs)" test "$syns" -ge 61
check "s1 sent the flows' later segments on ($flow)" test "$flow" -gt 200
for c in drop_forward_no_neigh drop_forward_no_route drop_forward_fib_disabled drop_forward_error \
    ipip_peer_mac ipip_redirect; do
    check "s1: $c = 0 (the router's MAC from the routing table, out of eth0)" \
        test "$(counter 1 "$c")" -eq 0
done
# A few may be lost on the way (veth rings under load; TCP sends them
# again) or refused while s1 looked dead to a starved s2 for a moment (seen
# once in CI: 1 of 1994); a trust check that refused them all would not pass.
check "s2 decapsulated the steered-in packets ($(counter 2 pass_decapsulated) of $((syns + flow)) sent, $(counter 2 pass_tunnel_refused) refused)" \
    test "$(counter 2 pass_decapsulated)" -ge $(((syns + flow) * 95 / 100))
check "s1's neighbour table knows the router, and not s2 (on no link of s1's)" bash -c '
    n=$(ip -n "$1" neigh show dev eth0)
    grep -q "^10.81.1.254 .*lladdr" <<<"$n" && ! grep -q "^10.81.2.2 " <<<"$n"' _ "$(cl_ns s1)"

check_summary "$name"
