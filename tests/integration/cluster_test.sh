#!/usr/bin/env bash
# End to end in namespaces: three nginx servers running peerlb and a client
# (tools/testbed/cluster.sh). With server 1 busy, its new connections
# are served by servers 2 and 3; transfers through a handed-off flow arrive
# intact; a keep-alive connection stays where it started; an idle server 1
# serves its own traffic.
# With SERVICE_MODE http the services are in "http" mode (DESIGN.md section
# 4): the receiving node answers SYNs with cluster cookies and decides at the
# first request; the same checks hold, plus the cookie path's counters.
# With l4-cookies the services are l4 with syn_cookies = "always" (what a SYN
# flood turns on, DESIGN.md section 5): cookies, decided at the handshake ACK.
# Usage: cluster_test.sh BUILD_DIR l2|ipip [l4|http|l4-cookies]
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/check.sh"
source "$here/../../tools/testbed/cluster.sh"

CL_BUILD=${1:?usage: cluster_test.sh BUILD_DIR l2|ipip}
mode=${2:?usage: cluster_test.sh BUILD_DIR l2|ipip}
[[ $mode == l2 || $mode == ipip ]] || { echo "mode must be l2 or ipip" >&2; exit 2; }
CL_SERVICE_MODE=${3:-l4}
cookies_l4=0
if [[ $CL_SERVICE_MODE == l4-cookies ]]; then
    CL_SERVICE_MODE=l4 CL_SYN_COOKIES=always cookies_l4=1
fi
[[ $CL_SERVICE_MODE == l4 || $CL_SERVICE_MODE == http ]] || { echo "service mode must be l4, http or l4-cookies" >&2; exit 2; }
CL_BUILD=$(cd "$CL_BUILD" && pwd)
name="cluster_test[$mode,${3:-l4}]"
require_root "$name"

CL_PREFIX="plb$$${mode:0:1}${CL_SERVICE_MODE:0:1}$cookies_l4"
CL_TMP=$(mktemp -d /tmp/peerlb-cluster.XXXXXX)
trap 'cl_down; rm -rf "$CL_TMP"' EXIT
trap 'exit 130' INT TERM

svc1=${CL_SVC_ADDR[1]}

# served_by URL...: one new connection per URL; prints each serving server.
served_by() {
    local url
    for url in "$@"; do
        cl_in c curl -s --max-time 3 "$url" || echo "failed"
    done
}

# tally: counts of each line of stdin, as "s2=12 s3=8".
tally() { sort | uniq -c | awk '{printf "%s%s=%s", sep, $2, $1; sep=" "} END {print ""}'; }

only_from() { # only_from "ALLOWED..." "RESPONSES": every response is allowed
    local allowed=$1 r
    for r in $2; do [[ " $allowed " == *" $r "* ]] || return 1; done
    [[ -n $2 ]]
}

each_present() { # each_present "WANTED..." "RESPONSES"
    local w
    for w in $1; do [[ " $(echo $2) " == *" $w "* ]] || return 1; done
}

echo "$name: setting up namespaces ($CL_PREFIX*)"
cl_topology_up || { echo "$name: topology failed"; exit 1; }
for n in 1 2 3; do cl_nginx_start "$n"; done
cl_wait_ready || exit 1
cl_peerlb_up "$mode" || { echo "$name: peerlb attach failed"; exit 1; }

echo "$name: server 1 busy (90 %), servers 2 and 3 idle (10 %)"
cl_set_load 1 90
urls=()
for i in $(seq 40); do urls+=("http://$svc1/"); done
got=$(served_by "${urls[@]}")
echo "    40 connections to $svc1 served by: $(tally <<<"$got")"
check "busy s1: every connection served by s2 or s3" only_from "s2 s3" "$got"
check "busy s1: both s2 and s3 serve (weighted spread)" each_present "s2 s3" "$got"

urls6=()
for i in $(seq 20); do urls6+=("http://[${CL_SVC_ADDR6[1]}]/"); done
got6=$(served_by "${urls6[@]}")
echo "    20 IPv6 connections to [${CL_SVC_ADDR6[1]}] served by: $(tally <<<"$got6")"
check "busy s1, IPv6: every connection served by s2 or s3" only_from "s2 s3" "$got6"

flows=$(cl_peerlb 1 flows --json)
check "s1's flow table records forwarded flows with their reason" python3 -c '
import json, sys
flows = json.loads(sys.argv[1])
fwd = [f for f in flows if f["node"] != "local"]
assert len(fwd) >= 60 and all(f["reason"] == "weighted" for f in fwd), flows[:3]
' "$flows"

blob_sum=$(sha256sum <"$CL_TMP/blob" | cut -d' ' -f1)
server=$(cl_in c curl -s --max-time 30 -o "$CL_TMP/download" -D - "http://$svc1/blob" |
    tr -d '\r' | awk -F': ' 'tolower($1)=="x-server" {print $2}')
echo "    5 MiB download served by ${server:-nobody}"
check "5 MiB download through a handed-off flow is intact" \
    test "$(sha256sum <"$CL_TMP/download" | cut -d' ' -f1)" == "$blob_sum"
check "5 MiB download was handed off (served by s2 or s3)" only_from "s2 s3" "$server"

server=$(cl_in c curl -s --max-time 30 -T "$CL_TMP/blob" -o /dev/null -D - \
    "http://$svc1/up/upload-$mode-$CL_SERVICE_MODE" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-server" {print $2}')
echo "    5 MiB upload stored by ${server:-nobody}"
check "5 MiB upload was handed off (served by s2 or s3)" only_from "s2 s3" "$server"
check "5 MiB upload arrived intact" \
    test "$(sha256sum <"$CL_TMP/www/$server/root/up/upload-$mode-$CL_SERVICE_MODE" 2>/dev/null | cut -d' ' -f1)" \
    == "$blob_sum"

# Keep-alive: one connection, loads flipped in the middle of it (s1 idle,
# s2 and s3 busy). Its later requests stay on the server that took it; a new
# connection made after the flip stays on s1.
coproc KEEPALIVE {
    cl_in c python3 -u -c '
import http.client, sys
conn = http.client.HTTPConnection(sys.argv[1], 80, timeout=5)
def ask():
    conn.request("GET", "/")
    r = conn.getresponse()
    return r.read().decode().strip()
print(ask())
sys.stdin.readline()  # the test flips the loads meanwhile
print(" ".join(ask() for _ in range(10)))
' "$svc1" 2>&1
}
read -r -t 10 first <&"${KEEPALIVE[0]}"
cl_set_load 1 10 && cl_set_load 2 95 && cl_set_load 3 95
echo go >&"${KEEPALIVE[1]}"
read -r -t 10 rest <&"${KEEPALIVE[0]}"
wait "$KEEPALIVE_PID" 2>/dev/null
echo "    keep-alive connection: first answer ${first:-none}, then: ${rest:-none}"
check "keep-alive connection started on s2 or s3" only_from "s2 s3" "${first:-}"
check "keep-alive connection stays on its server after the loads flip" \
    only_from "${first:-none}" "${rest:-}"
check "keep-alive connection answered all 10 later requests" test "$(wc -w <<<"${rest:-}")" -eq 10
got=$(served_by "http://$svc1/" "http://$svc1/" "http://$svc1/" "http://$svc1/")
check "after the flip, new connections stay on s1" only_from "s1" "$got"

echo "$name: wrk against $svc1 with server 1 busy"
cl_set_load 1 90 && cl_set_load 2 10 && cl_set_load 3 10
before=$(cl_peerlb 1 stats --json)
wrk_out=$(cl_in c wrk -t2 -c32 -d3s --timeout 2s "http://$svc1/" 2>&1)
after=$(cl_peerlb 1 stats --json)
echo "$wrk_out" | sed -n 's/^ *\(Requests\/sec\|.*requests in\|Socket errors\|Non-2xx\).*/    &/p'
check "wrk: requests completed" grep -q 'requests in' <<<"$wrk_out"
check "wrk: no socket errors or bad responses" bash -c '! grep -qE "Socket errors|Non-2xx" <<<"$1"' _ "$wrk_out"
check "wrk: s1 handed connections to both s2 and s3" python3 -c '
import json, sys
def per_node(doc):
    return {n["address"]: n["connections_forwarded"] for n in json.loads(doc)["nodes"]}
b, a = per_node(sys.argv[1]), per_node(sys.argv[2])
new = {addr: a[addr] - b.get(addr, 0) for addr in a}
print("    connections handed off during wrk:", new)
# ~33 connections drawn at random by spare capacity, the two peers equal:
# at least 3 each (a split as uneven as 7/26 is 1 run in 30; under 3 is
# 1 in a million).
assert new.get("10.77.0.12", 0) >= 3 and new.get("10.77.0.13", 0) >= 3, new
' "$before" "$after"

echo "$name: no peer 20 points lower (s1 60 %, s2 and s3 45 %)"
cl_set_load 1 60 && cl_set_load 2 45 && cl_set_load 3 45
got=$(served_by "http://$svc1/" "http://$svc1/" "http://$svc1/" "http://$svc1/" "http://$svc1/")
check "no peer lower by min_difference: s1 keeps its connections" only_from "s1" "$got"

echo "$name: server 1 idle (10 %)"
cl_set_load 1 10 && cl_set_load 2 10 && cl_set_load 3 10
urls=()
for i in $(seq 20); do urls+=("http://$svc1/"); done
got=$(served_by "${urls[@]}")
echo "    20 connections to $svc1 served by: $(tally <<<"$got")"
check "idle s1 serves its own traffic" only_from "s1" "$got"

# The handed-off traffic took the path of this mode on the receiving peers.
counter() { # counter N NAME: packets of counter NAME on server N
    cl_peerlb "$1" stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["counters"][sys.argv[1]]["packets"])' "$2"
}
if [[ $CL_SERVICE_MODE == http ]]; then
    # Every connection was answered by s1's XDP and created from its cookie
    # by the kernel of the node that served it.
    check "s1 answered SYNs with cookies ($(counter 1 tx_syn_cookie))" \
        test "$(counter 1 tx_syn_cookie)" -gt 100
    check "s1 dropped the handshake ACKs ($(counter 1 drop_handshake_ack))" \
        test "$(counter 1 drop_handshake_ack)" -gt 100
    check "s1 never let the kernel answer a SYN ($(counter 1 syn_local_below_t1) l4 decisions)" \
        test "$(( $(counter 1 syn_local_below_t1) + $(counter 1 syn_forward_weighted) ))" -eq 0
fi
if ((cookies_l4)); then
    # Every SYN was answered by s1's XDP; every connection was decided at its
    # handshake ACK.
    check "s1 answered l4 SYNs with cookies ($(counter 1 syn_cookie_l4))" \
        test "$(counter 1 syn_cookie_l4)" -gt 100
    check "s1 decided connections at their cookie ACKs ($(counter 1 cookie_ack_l4))" \
        test "$(counter 1 cookie_ack_l4)" -gt 100
fi
if [[ $CL_SERVICE_MODE == http ]] || ((cookies_l4)); then
    # Each node that served connections created them from their cookies.
    for n in 1 2 3; do
        check "s$n created connections from cookies ($(counter $n tc_cookie_assigned))" \
            test "$(counter $n tc_cookie_assigned)" -gt 10
        check "s$n: no cookie refused or failed ($(counter $n tc_cookie_invalid), $(counter $n tc_cookie_assign_failed))" \
            test "$(( $(counter $n tc_cookie_invalid) + $(counter $n tc_cookie_assign_failed) ))" -eq 0
    done
fi
if [[ $mode == ipip ]]; then
    # The outer frames' next hop from s1's routing table: s2 and s3 share
    # its link (their own MACs, from the heartbeats, when s1 has no
    # neighbour entry for them: ipip_peer_mac).
    fib_drops=$(( $(counter 1 drop_forward_no_route) + $(counter 1 drop_forward_no_neigh) +
        $(counter 1 drop_forward_fib_disabled) ))
    check "s1 found a next hop for every ipip forward ($fib_drops dropped)" test "$fib_drops" -eq 0
    for n in 2 3; do
        check "s$n decapsulated steered-in packets ($(counter $n pass_decapsulated))" \
            test "$(counter $n pass_decapsulated)" -gt 1000
        # With cookies, s1's XDP announces the reduced MSS itself.
        [[ $CL_SERVICE_MODE == http ]] || ((cookies_l4)) && continue
        check "s$n clamped the MSS of its SYN-ACKs ($(counter $n tc_mss_clamped))" \
            test "$(counter $n tc_mss_clamped)" -gt 10
    done
else
    for n in 2 3; do
        check "s$n recognised steered-in packets by MAC ($(counter $n pass_steered_in))" \
            test "$(counter $n pass_steered_in)" -gt 1000
    done
fi
check "s1 never failed to forward (drop_forward_error = 0)" test "$(counter 1 drop_forward_error)" -eq 0

check_summary "$name"
