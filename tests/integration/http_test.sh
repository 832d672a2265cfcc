#!/usr/bin/env bash
# The "http" mode end to end (DESIGN.md section 4): three agents whose
# service is in mode "http", with URI rules; nginx servers and a curl client
# in namespaces. The receiving node answers SYNs with cluster cookies (keys
# derived by every agent from the cluster key), reads the first request and
# routes it by its path: /banking/ to s2, /shop/ to s3, the rest by load;
# the serving kernel creates the connection from the cookie. /banking/ is
# stateful: it pins the client to its node, on every node, until
# /banking/logout.
# Usage: http_test.sh BUILD_DIR
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/check.sh"
source "$here/../../tools/testbed/cluster.sh"

CL_BUILD=$(cd "${1:?usage: http_test.sh BUILD_DIR}" && pwd)
name=http_test
require_root "$name"

CL_PREFIX="plb$$h"
CL_TMP=$(mktemp -d /tmp/peerlb-http.XXXXXX)
CL_INTERVAL_MS=100
CL_AGENT_MANAGED=1
CL_CLUSTER_EXTRA="takeover = false"
BG_PIDS=()
cleanup() {
    local pid
    for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
    ((CHECK_FAILED)) && cl_agent_logs
    cl_down
    rm -rf "$CL_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

svc1=${CL_SVC_ADDR[1]}
RULES='mode = "http"

[http]
cookie_epoch_s = 64

[[uri_rule]]
prefix = "/banking/"
nodes = ["s2"]
stateful = true
exit = "/banking/logout"
timeout_s = 300

[[uri_rule]]
path = "/shop/*"
nodes = ["s3"]'

# server_of URL [OUT [CURL ARGS...]]: one new connection, the body to OUT
# (default none); the X-Server that answered.
server_of() {
    local url=$1 out=${2:-/dev/null}
    shift $(($# < 2 ? $# : 2))
    cl_in c curl -s --max-time 3 -o "$out" -D - "$@" "$url" |
        tr -d '\r' | awk -F': ' 'tolower($1)=="x-server" {print $2}' | grep . || echo failed
}
tally() { sort | uniq -c | awk '{printf "%s%s=%s", sep, $2, $1; sep=" "} END {print ""}'; }
only_from() { local r; for r in $2; do [[ " $1 " == *" $r "* ]] || return 1; done; [[ -n $2 ]]; }
each_present() { local w; for w in $1; do [[ " $(echo $2) " == *" $w "* ]] || return 1; done; }
many() { # many COUNT URL: the servers of COUNT new connections, one per line
    local i
    for i in $(seq "$1"); do server_of "$2"; done
}
counter() { # counter N NAME: packets of counter NAME on server N
    cl_agent_cli "$1" stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["counters"][sys.argv[1]]["packets"])' "$2"
}
agent_up() { cl_agent_cli "$1" peers --json >/dev/null 2>&1; }
all_alive() {
    local n
    for n in 1 2 3; do
        [[ $(cl_agent_cli "$n" peers --json 2>/dev/null | grep -c '"alive"') == 2 ]] || return 1
    done
}

echo "$name: namespaces $CL_PREFIX*"
cl_topology_up || { echo "$name: topology failed"; exit 1; }
for n in 1 2 3; do cl_nginx_start "$n"; done
cl_wait_ready || exit 1
for n in 1 2 3; do cl_agent_config "$n" "$RULES"; done
# The client's kernel would otherwise answer nothing odd; s1's kernel has
# SYN cookies off to show that the agent turns them on.
cl_in s1 sysctl -qw net.ipv4.tcp_syncookies=0
for n in 1 2 3; do cl_agent_start "$n"; done
for n in 1 2 3; do cl_wait_until 10000 agent_up "$n" >/dev/null; done
cl_wait_until 5000 all_alive >/dev/null
check "the agent turned SYN cookies on (http mode needs them)" \
    test "$(cl_in s1 sysctl -n net.ipv4.tcp_syncookies)" -ge 1
# The keys every agent derived: (epoch, k0) of the valid slots, per node.
cookie_keys() {
    bpftool map dump pinned "$CL_TMP/bpffs/s$1/eth0/lb_cookie_keys" -j | python3 -c '
import json, sys
print(sorted((e["formatted"]["value"]["epoch"], e["formatted"]["value"]["k0"])
             for e in json.load(sys.stdin) if e["formatted"]["value"]["valid"]))'
}
keys1=$(cookie_keys 1)
echo "    s1's valid cookie keys (epoch, k0): ${keys1:0:120}..."
check "three valid cookie keys, the same on every node (derived from the cluster key)" bash -c '
    [[ $(grep -o "(" <<<"$1" | wc -l) == 3 && $1 == "$2" && $1 == "$3" ]]' _ \
    "$keys1" "$(cookie_keys 2)" "$(cookie_keys 3)"
echo "$name: URI rules, s1 idle"
got=$(many 10 "http://$svc1/banking/account")
echo "    /banking/account: $(tally <<<"$got")"
check "/banking/ to s1's address is served by s2 (its rule)" only_from "s2" "$got"
check "/banking/logout goes to the pinned s2 too" test "$(server_of "http://$svc1/banking/logout")" == s2
got=$(many 10 "http://$svc1/shop/cart")
echo "    /shop/cart: $(tally <<<"$got")"
check "/shop/* to s1's address is served by s3 (its glob rule)" only_from "s3" "$got"
got=$(many 10 "http://$svc1/")
echo "    / (no rule): $(tally <<<"$got")"
check "other paths stay on idle s1 (load decision)" only_from "s1" "$got"
got=$(many 6 "http://[${CL_SVC_ADDR6[1]}]/banking/x")
check "IPv6: /banking/ served by s2" only_from "s2" "$got"
server_of "http://[${CL_SVC_ADDR6[1]}]/banking/logout" >/dev/null

echo "$name: s1 busy (90 %): other paths go by load"
cl_agent_load 1 90
sleep 0.5
got=$(many 20 "http://$svc1/")
echo "    /: $(tally <<<"$got")"
check "busy s1: other paths served by s2 and s3" only_from "s2 s3" "$got"
# http first requests are decisions like SYNs: the agent's metrics count them.
metrics=$(cl_in s1 curl -s --max-time 2 http://127.0.0.1:9477/metrics)
check "s1's metrics count its http hand-offs as forwarded decisions" \
    grep -qE 'peerlb_decisions_total\{kind="forwarded",counter="http_forward"\} [1-9]' <<<"$metrics"
got=$(many 6 "http://$svc1/banking/x")
check "busy s1: /banking/ still to s2" only_from "s2" "$got"
server_of "http://$svc1/banking/logout" >/dev/null

echo "$name: s2 above T1 too: /banking/ spills over (its only node is busy)"
cl_agent_load 2 80
sleep 0.5
got=$(many 10 "http://$svc1/banking/x")
echo "    /banking/ with s2 at 80 %: $(tally <<<"$got")"
check "all of a rule's nodes above T1: the request goes by load (s3, the idle one)" only_from "s3" "$got"
server_of "http://$svc1/banking/logout" >/dev/null
cl_agent_load 2 10
cl_agent_load 1 10
sleep 0.5

echo "$name: a stateful entry pins the client to its node, cluster-wide, until the exit"
svc3=${CL_SVC_ADDR[3]}
check "before: / to s1's address stays on idle s1" test "$(server_of "http://$svc1/")" == s1
check "before: / to s3's address stays on idle s3" test "$(server_of "http://$svc3/")" == s3
check "entry request /banking/login served by s2" test "$(server_of "http://$svc1/banking/login")" == s2
sleep 0.2 # s1's agent tells s2 and s3 (one datagram, well under a heartbeat period)
got="$(many 4 "http://$svc1/") $(many 4 "http://$svc1/shop/cart")"
echo "    pinned client, any path to s1's address: $(tally <<<"$(tr ' ' '\n' <<<"$got")")"
check "pinned client: every path to s1's address goes to s2 (even /shop/)" only_from "s2" "$got"
got=$(many 6 "http://$svc3/")
echo "    pinned client, / to s3's address (received by s3): $(tally <<<"$got")"
check "pinned client: connections received by another node (s3) go to s2 too" only_from "s2" "$got"
flows=$(cl_agent_cli 3 flows --json 2>&1)
check "s3's flow table says why: pinned by /banking/" python3 -c '
import json, sys
flows = json.loads(sys.argv[1])
assert any(f["reason"] == "pinned" and f["rule"] == "/banking/" for f in flows), flows[:4]
' "$flows"
check "exit request /banking/logout served by the pinned s2" \
    test "$(server_of "http://$svc3/banking/logout")" == s2
sleep 0.2
check "after the exit: / to s1's address is s1's again" test "$(server_of "http://$svc1/")" == s1
check "after the exit: / to s3's address is s3's again" test "$(server_of "http://$svc3/")" == s3
cl_agent_load 1 90 # s1 busy again: what follows is handed off
sleep 0.5

echo "$name: transfers and keep-alive through a handed-off connection"
blob_sum=$(sha256sum <"$CL_TMP/blob" | cut -d' ' -f1)
server=$(server_of "http://$svc1/blob" "$CL_TMP/download" --max-time 30)
check "5 MiB download handed off (served by ${server})" only_from "s2 s3" "$server"
check "5 MiB download intact" test "$(sha256sum <"$CL_TMP/download" | cut -d' ' -f1)" == "$blob_sum"
server=$(server_of "http://$svc1/up/upload-http" /dev/null -T "$CL_TMP/blob" --max-time 30)
check "5 MiB upload handed off (stored by ${server})" only_from "s2 s3" "$server"
check "5 MiB upload intact" \
    test "$(sha256sum <"$CL_TMP/www/$server/root/up/upload-http" 2>/dev/null | cut -d' ' -f1)" == "$blob_sum"
out=$(cl_in c curl -sv --max-time 5 "http://$svc1/" "http://$svc1/" 2>&1)
check "two requests on one keep-alive connection" bash -c '
    [[ $(grep -c "^< HTTP/1.1 200" <<<"$1") == 2 && $1 == *"Re-using existing connection"* ]]' _ "$out"

echo "$name: clients without TCP options"
for opt in tcp_timestamps tcp_sack tcp_window_scaling; do
    cl_in c sysctl -qw "net.ipv4.$opt=0"
    got=$(many 6 "http://$svc1/")
    big=$(server_of "http://$svc1/blob" "$CL_TMP/download-$opt" --max-time 30)
    cl_in c sysctl -qw "net.ipv4.$opt=1"
    check "client with $opt off: new connections work (served by $(echo $got))" only_from "s2 s3" "$got"
    check "client with $opt off: 5 MiB download intact (from $big)" \
        test "$(sha256sum <"$CL_TMP/download-$opt" | cut -d' ' -f1)" == "$blob_sum"
done

echo "$name: a client that waits 30 s before its first request"
cl_in c python3 -c '
import socket, sys, time
s = socket.create_connection((sys.argv[1], 80), timeout=5)
time.sleep(30)
s.settimeout(5)
s.sendall(b"GET /shop/late HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print([l.split(b": ")[1].decode() for l in data.split(b"\r\n") if l.lower().startswith(b"x-server")][0])
' "$svc1" >"$CL_TMP/late" 2>&1 &
late_pid=$!
BG_PIDS+=("$late_pid")

echo "$name: forged cookies"
# ACKs with made-up cookies from the client (python raw socket, no
# handshake): none may create a connection; the kernel answers RST.
assigned() { local n t=0; for n in 1 2 3; do t=$((t + $(counter "$n" tc_cookie_assigned))); done; echo "$t"; }
before_fwd=$(counter 1 http_forward)
before_assigned=$(assigned)
before_invalid=$(counter 1 tc_cookie_invalid)
cl_in c python3 - "$svc1" <<'EOF' >"$CL_TMP/forged" 2>&1
import random, socket, struct, sys
dst = sys.argv[1]
src = "10.77.0.100"
def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
payload = b"GET /banking/forged HTTP/1.1\r\nHost: x\r\n\r\n"
random.seed(7)
for i in range(300):
    sport = 20000 + i
    seq, ack = random.getrandbits(32), random.getrandbits(32)
    hdr = struct.pack("!HHIIBBHHH", sport, 80, seq, ack, 5 << 4, 0x18, 65535, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(hdr) + len(payload))
    c = csum(pseudo + hdr + payload)
    hdr = hdr[:16] + struct.pack("!H", c) + hdr[18:]
    raw.sendto(hdr + payload, (dst, 0))
print("sent 300")
EOF
sleep 0.3
check "300 forged ACKs with data sent" grep -q "sent 300" "$CL_TMP/forged"
check "forged cookies never routed a request (http_forward unchanged)" \
    test "$(counter 1 http_forward)" -eq "$before_fwd"
check "no node created a connection from a forged cookie (tc_cookie_assigned unchanged)" \
    test "$(assigned)" -eq "$before_assigned"
check "s1's kernel saw them refused by TC ingress ($(( $(counter 1 tc_cookie_invalid) - before_invalid )) tc_cookie_invalid)" \
    test "$(( $(counter 1 tc_cookie_invalid) - before_invalid ))" -ge 300

wait "$late_pid" 2>/dev/null
check "a client that waited 30 s before its request is served by s3 ($(cat "$CL_TMP/late"))" \
    test "$(cat "$CL_TMP/late")" == s3

echo "$name: what the data plane says"
rules=$(cl_agent_cli 1 rules --json 2>&1)
echo "$rules" | head -c 600 | sed 's/^/    /'
check "peerlb rules: both rules with hits" python3 -c '
import json, sys
rules = json.loads(sys.argv[1])
assert [r["pattern"] for r in rules] == ["/banking/", "/shop/*"], rules
# /banking/: one entry per pin (the pinned requests count as pinned, not
# as hits), one of them spilled; /shop/: every request.
assert rules[0]["hits"] >= 5 and rules[1]["hits"] >= 10, rules
assert rules[0]["spilled"] >= 1 and rules[1]["spilled"] == 0, rules
' "$rules"
flows=$(cl_agent_cli 1 flows --json 2>&1)
check "peerlb flows: routed flows name their rule" python3 -c '
import json, sys
flows = json.loads(sys.argv[1])
assert any(f.get("rule") == "/banking/" and f["node"] != "local" for f in flows), flows[:3]
' "$flows"
for n in 1 2 3; do
    check "s$n: no cookie check failed in the kernel ($(counter $n tc_cookie_assign_failed))" \
        test "$(counter $n tc_cookie_assign_failed)" -eq 0
done

check_summary "$name"
