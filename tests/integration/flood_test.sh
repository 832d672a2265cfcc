#!/usr/bin/env bash
# Spoofed floods against a node that hands its new connections to its peers
# (DESIGN.md section 5: "SYN floods must not evict established flows";
# issue 15, item 1). Three agents (tools/testbed/cluster.sh), forward "l2";
# s1 busy (file load 90 %), s2 and s3 idle (10 %): s1 forwards its new
# connections. An attacker namespace on the same bridge (10.77.0.200) runs
# peerlb-flood (tools/flood) flat out against s1's service address, from
# sources in 198.18.0.0/15; every server routes that prefix to the
# attacker, whose kernel drops the answers (it does not forward): nothing
# leaves the namespaces and no server resolves more than one neighbour.
#  1. handshake: SYN, ACK, ACK until s1 has handled FLOOD_TUPLES (400 000)
#     tuples, more than the established table lb_flows holds (262 144);
#  2. syn: FLOOD_SYNS (150 000) SYNs, more than the half-open table
#     lb_flows_new holds (65 536).
# Through both, from the client namespace:
#  - LONG_LIVED (200) keep-alive connections to s1's address that s1
#    forwarded to s2 and s3, idle during the floods (one request before,
#    one after);
#  - new connections all along: CHURN_CLIENTS clients, one request each;
#  - slow handshakes (tests/integration/lib/slow_handshakes.py): real
#    clients from 10.77.0.101 open a handshake every 50 ms from 1 s before
#    each flood to its end and send their handshake ACK and request only
#    then, as a far client would whose handshake spans many flood SYNs (at
#    the 50 000 SYNs/s this test bed reaches, 65 536 take 1.3 s; at 50 Mpps,
#    1.3 ms).
# Passes when every long-lived connection answers after the floods and every
# new connection and slow handshake succeeded (none reset, none left
# unanswered; a SYN the client's TCP retransmitted shows as latency, and is
# fine). Prints the flood rates (sent, and handled by s1's XDP), s1's
# counters, the servers' kernel SYN-cookie counters and the new
# connections' latency.
# Usage: flood_test.sh BUILD_DIR
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/check.sh"
source "$here/../../tools/testbed/cluster.sh"

CL_BUILD=$(cd "${1:?usage: flood_test.sh BUILD_DIR}" && pwd)
name=flood_test
require_root "$name"

FLOOD_TUPLES=${FLOOD_TUPLES:-400000}
FLOOD_SYNS=${FLOOD_SYNS:-150000}
FLOOD_THREADS=${FLOOD_THREADS:-1}
FLOOD_MAX_S=${FLOOD_MAX_S:-40} # each flood stops after this, whatever s1 has seen
LONG_LIVED=${LONG_LIVED:-200}
CHURN_CLIENTS=${CHURN_CLIENTS:-4}
FLOWS_MAX=262144    # lb_flows (maps/flow.h LB_MAX_FLOWS)
FLOWS_NEW_MAX=65536 # lb_flows_new (LB_MAX_FLOWS_NEW)
SLOW_ADDR=10.77.0.101
SLOW_MARK=0x77 # the slow handshakes' own RSTs
ATTACKER_ADDR=10.77.0.200
ATTACKER_MAC=02:77:00:00:00:c8
SPOOFED=198.18.0.0/15

[[ -x $CL_BUILD/peerlb-flood ]] || { echo "$name: $CL_BUILD/peerlb-flood is not built" >&2; exit 1; }

CL_PREFIX="plb$$f"
CL_TMP=$(mktemp -d /tmp/peerlb-flood.XXXXXX)
CL_AGENT_MANAGED=1
# The production heartbeat period: at 100 ms the agents, starved of CPU by
# the floods on a 2-core test bed, call each other dead and take over
# addresses, which is not what this test is about.
CL_INTERVAL_MS=500
BG_PIDS=() # the clients this script started

cleanup() {
    local pid i
    # The clients stop by themselves.
    touch "$CL_TMP/stop" "$CL_TMP/stop-long" "$CL_TMP/release-handshake" "$CL_TMP/release-syn" 2>/dev/null
    for i in $(seq 150); do
        for pid in "${BG_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && break; pid=; done
        [[ -z ${pid:-} ]] && break
        sleep 0.1
    done
    for pid in "${BG_PIDS[@]}"; do
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    ((CHECK_FAILED)) && cl_agent_logs
    cl_down
    rm -rf "$CL_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

svc1=${CL_SVC_ADDR[1]}

all_alive() {
    local n
    for n in 1 2 3; do
        [[ $(cl_agent_cli "$n" peers --json 2>/dev/null | grep -c '"state": "alive"') == 2 ]] || return 1
    done
}
holds_own() {
    local n
    for n in 1 2 3; do cl_held_by "${CL_SVC_ADDR[$n]}" "s$n" || return 1; done
}
s1_stats() { cl_agent_cli 1 stats --json; }
# kernel_counters N: server N's kernel SYN-queue and cookie counters, "name value" lines.
kernel_counters() {
    cl_in "s$1" nstat -asz TcpExtSyncookiesSent TcpExtSyncookiesRecv TcpExtSyncookiesFailed \
        TcpExtListenDrops TcpExtTCPReqQFullDoCookies TcpExtTCPReqQFullDrop | awk '!/^#/ {print $1, $2}'
}

# counters_delta BEFORE AFTER: "seen=N" (the packets s1's XDP program
# handled: each is counted once by a counter of kind passed, kept,
# forwarded, sent or dropped), then the counters that moved, largest first.
counters_delta() {
    python3 -c '
import json, sys
b, a = json.loads(sys.argv[1])["counters"], json.loads(sys.argv[2])["counters"]
d = {k: v["packets"] - b.get(k, {"packets": 0})["packets"] for k, v in a.items()}
seen = sum(n for k, n in d.items() if a[k]["kind"] != "other")
moved = sorted(((n, k) for k, n in d.items() if n), reverse=True)
print(f"seen={seen}", " ".join(f"{k}=+{n}" for n, k in moved))
' "$1" "$2"
}

# long_lived ADDR: LONG_LIVED keep-alive connections to ADDR, one request on
# each; "up SERVERS..." once all are open; idle until stop-long exists; then
# one more request on each and a JSON summary in long.json.
long_lived() {
    ip netns exec "$(cl_ns c)" python3 -u - "$1" "$LONG_LIVED" "$CL_TMP/stop-long" "$CL_TMP/long.json" \
        >"$CL_TMP/long.log" 2>&1 <<'EOF' &
import http.client, json, os, sys, time
addr, count, stop, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
conns = [http.client.HTTPConnection(addr, 80, timeout=10) for _ in range(count)]
def ask(c):
    c.request("GET", "/")
    r = c.getresponse()
    body = r.read().decode().strip()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}")
    return body
first, start_failures = [], []
for i, c in enumerate(conns):
    try:
        first.append(ask(c))
    except Exception as e:
        first.append(None)
        start_failures.append(f"conn {i}: {e!r}")
print("up", *first, flush=True)
while not os.path.exists(stop):
    time.sleep(0.1)
ok, failures, moved = 0, [], 0
for i, c in enumerate(conns):
    if first[i] is None:
        continue
    try:
        who = ask(c)
    except Exception as e:
        failures.append(f"conn {i} (on {first[i]}): {e!r}")
        continue
    ok += 1
    moved += who != first[i]
json.dump({"opened": count - len(start_failures), "start_failures": start_failures, "ok": ok,
           "failures": failures, "moved": moved, "servers": first}, open(out, "w"))
EOF
    BG_PIDS+=($!)
}

# churn LABEL ADDR CLIENTS FROM GAP_S: new connections until the stop file
# exists: CLIENTS threads, each connecting from FROM to ADDR, one request
# (Connection: close), read to the end, again after GAP_S; one line per
# connection in churn-LABEL.log: start_ms latency_ms outcome [detail]. The
# client's own TCP retries a lost SYN (1 s, 3 s) within the 15 s timeout.
churn() {
    ip netns exec "$(cl_ns c)" python3 -u - "$2" "$3" "$4" "$5" "$CL_TMP/stop" \
        >"$CL_TMP/churn-$1.log" 2>"$CL_TMP/churn-$1.err" <<'EOF' &
import os, socket, sys, threading, time
addr, clients, source, gap, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5]
request = f"GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n".encode()
lock = threading.Lock()
def one():
    start = time.time()
    outcome, detail = "ok", ""
    try:
        with socket.create_connection((addr, 80), timeout=15, source_address=(source, 0)) as s:
            s.sendall(request)
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        if not data.startswith(b"HTTP/1.1 200"):
            outcome, detail = "bad", repr(data[:40]).replace(" ", "_")
        else:
            detail = data.split(b"\r\n\r\n", 1)[-1].decode(errors="replace").strip()
    except (ConnectionResetError, ConnectionRefusedError, ConnectionAbortedError, BrokenPipeError) as e:
        outcome, detail = "reset", type(e).__name__
    except (socket.timeout, TimeoutError) as e:
        outcome, detail = "timeout", type(e).__name__
    except OSError as e:
        outcome, detail = "error", repr(e).replace(" ", "_")
    with lock:
        print(f"{int(start * 1000)} {(time.time() - start) * 1000:.1f} {outcome} {detail}", flush=True)
def loop():
    while not os.path.exists(stop):
        one()
        time.sleep(gap)
threads = [threading.Thread(target=loop) for _ in range(clients)]
for t in threads:
    t.start()
    time.sleep(0.02)  # spread out
for t in threads:
    t.join()
EOF
    BG_PIDS+=($!)
}

# flood LABEL PATTERN TUPLES: TUPLES tuples from the attacker to s1's
# service address, flat out. Frames get lost on the way when the CPUs are
# saturated (a veth ring the bridge feeds overflows), so more rounds follow,
# with new tuples, until s1's XDP program has handled TUPLES tuples' worth of
# packets, or FLOOD_MAX_S is over. Leaves the rounds' JSON results in
# flood-LABEL-N.json, the time window (epoch ms) in window-LABEL, and the
# packets s1 handled in FLOOD_SEEN[LABEL].
declare -A FLOOD_SEEN
flood() {
    local label=$1 pattern=$2 tuples=$3 per=1 want chunk rc=0 round=0 t0 t1 left_ms seen=0 delta="" before
    [[ $pattern == handshake ]] && per=3
    want=$((tuples * per))
    before=$(s1_stats)
    t0=$(cl_now_ms)
    chunk=$tuples
    while ((seen < want)); do
        left_ms=$((FLOOD_MAX_S * 1000 - ($(cl_now_ms) - t0)))
        ((left_ms > 100)) || break
        cl_in a "$CL_BUILD/peerlb-flood" --iface eth0 --dst-mac "$(cl_mac 1)" --dst "$svc1" --dport 80 \
            --sources "$SPOOFED" --pattern "$pattern" --count "$chunk" \
            --duration "$((left_ms / 1000)).$(printf %03d $((left_ms % 1000)))" \
            --threads "$FLOOD_THREADS" --seed "$(($$ * 100 + round))" --json \
            >"$CL_TMP/flood-$label-$round.json" 2>"$CL_TMP/flood-$label.err"
        rc=$?
        round=$((round + 1))
        ((rc == 0)) || break
        sleep 0.2 # the last frames through the bridge and the peers
        delta=$(counters_delta "$before" "$(s1_stats)")
        seen=$(sed -E 's/^seen=([0-9]+).*/\1/' <<<"$delta")
        # What is missing, and a fifth more for the next round's losses.
        chunk=$(((want - seen) / per * 6 / 5 + 1000))
    done
    t1=$(cl_now_ms)
    echo "$t0 $t1" >"$CL_TMP/window-$label"
    check "$label flood: peerlb-flood ran (rc $rc $(head -c 300 "$CL_TMP/flood-$label.err" | tr '\n' ' '))" \
        test "$rc" -eq 0
    python3 - "$seen" "$((t1 - t0))" "$CL_TMP"/flood-"$label"-*.json <<'EOF'
import json, sys
seen, wall_ms, rounds = int(sys.argv[1]), int(sys.argv[2]), [json.load(open(p)) for p in sys.argv[3:]]
packets = sum(r["packets"] for r in rounds)
seconds = sum(r["seconds"] for r in rounds)
r0 = rounds[0]
print("    %s: sent %d packets (%d tuples) in %.2f s, %d round(s): %.0f packets/s (%d thread(s), %d waits on a full queue)" % (
    r0["pattern"], packets, sum(r["tuples"] for r in rounds), seconds, len(rounds), packets / max(seconds, 1e-9),
    r0["threads"], sum(r["queue_full_waits"] for r in rounds)))
print("    s1's XDP handled %d packets in %.2f s: %.0f packets/s, %.1f %% of those sent" % (
    seen, wall_ms / 1000, seen * 1000 / max(wall_ms, 1), 100.0 * seen / max(packets, 1)))
EOF
    echo "    s1 counters: ${delta#seen=* }"
    FLOOD_SEEN[$label]=$seen
}

# slow_start LABEL: slow handshakes to s1's address (lib/slow_handshakes.py),
# a new one every 50 ms, held until slow_release LABEL, which checks them.
slow_start() {
    ip netns exec "$(cl_ns c)" python3 "$here/lib/slow_handshakes.py" "$svc1" "$SLOW_ADDR" eth0 0.05 \
        "$CL_TMP/release-$1" "$CL_TMP/slow-$1.json" "$SLOW_MARK" \
        "$(cl_mac 1)=s1" "$(cl_mac 2)=s2" "$(cl_mac 3)=s3" >"$CL_TMP/slow-$1.log" 2>&1 &
    BG_PIDS+=($!)
    sleep 1 # handshakes half-open before the flood
}
slow_release() {
    local s
    touch "$CL_TMP/release-$1"
    cl_wait_until 15000 test -s "$CL_TMP/slow-$1.json" >/dev/null
    s=$(cat "$CL_TMP/slow-$1.json" 2>/dev/null ||
        echo '{"opened": 0, "held": 0, "by": {}, "outcomes": {}, "held_s_max": 0, "held_s_min": 0, "failed": ["no summary"]}')
    [[ -s $CL_TMP/slow-$1.log ]] && head -n 5 "$CL_TMP/slow-$1.log" | sed 's/^/      slow_handshakes: /'
    python3 -c '
import json, sys
s = json.loads(sys.argv[1])
print("    slow handshakes: %d opened, %d answered (SYN-ACK) and held %.1f to %.1f s; then, by the node that answered:" % (
    s["opened"], s["held"], s["held_s_min"], s["held_s_max"]))
for node, outcomes in sorted(s.get("outcomes_by", {}).items()):
    print("      %s: %s" % (node, " ".join("%s=%d" % kv for kv in sorted(outcomes.items()))))
for f in s["failed"][:3]:
    print("      failed: " + f)
' "$s"
    check "$1 flood: slow handshakes held through it, some forwarded by s1" python3 -c '
import json, sys
s = json.loads(sys.argv[1])
sys.exit(not (s["held"] >= 10 and s["by"].get("s2", 0) + s["by"].get("s3", 0) >= 1))
' "$s"
    local resets unanswered
    resets=$(python3 -c '
import json, sys
o = json.loads(sys.argv[1])["outcomes"]
print(o.get("reset", 0) + o.get("reset_before_request", 0))' "$s")
    unanswered=$(python3 -c '
import json, sys
s = json.loads(sys.argv[1])
o = s["outcomes"]
print(s["held"] - o.get("ok", 0) - o.get("reset", 0) - o.get("reset_before_request", 0))' "$s")
    check "$1 flood: no slow handshake reset ($resets)" test "$resets" -eq 0
    check "$1 flood: every other slow handshake answered HTTP 200 ($unanswered did not)" test "$unanswered" -eq 0
}

echo "$name: namespaces $CL_PREFIX*"
cl_topology_up || { echo "$name: topology failed"; exit 1; }
cl_extra_host_up a "$ATTACKER_MAC" "$ATTACKER_ADDR/24" || { echo "$name: attacker namespace failed"; exit 1; }
# The servers' answers to spoofed sources go to the attacker, which drops
# them (net.ipv4.ip_forward stays 0 there).
for n in 1 2 3; do
    ip -n "$(cl_ns "s$n")" route add "$SPOOFED" via "$ATTACKER_ADDR" dev eth0 || exit 1
done
check "the attacker namespace does not forward" test "$(cl_in a sysctl -n net.ipv4.ip_forward)" = 0
cl_in c sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1
# The slow handshakes' address; the client's kernel, which knows nothing of
# them, must not reset them.
ip -n "$(cl_ns c)" addr add "$SLOW_ADDR/24" dev eth0
cl_in c nft -f - <<EOF || { echo "$name: nft failed"; exit 1; }
table ip plbflood {
    chain output {
        type filter hook output priority 0;
        ip saddr $SLOW_ADDR tcp flags & rst == rst meta mark != $SLOW_MARK drop
    }
}
EOF
for n in 1 2 3; do cl_nginx_start "$n"; done
cl_wait_ready || exit 1
cl_agent_load 1 90
cl_agent_load 2 10
cl_agent_load 3 10
for n in 1 2 3; do cl_agent_config "$n" && cl_agent_start "$n"; done
waited=$(cl_wait_until 20000 all_alive)
check "agents see each other ($waited ms)" test "$waited" != timeout
waited=$(cl_wait_until 3000 holds_own)
check "each node holds its own service address" test "$waited" != timeout
sleep 1 # a few heartbeats with the loads

for n in 1 2 3; do kernel_counters "$n" >"$CL_TMP/kernel-s$n-before"; done

echo "$name: $LONG_LIVED long-lived connections to $svc1"
stats0=$(s1_stats)
long_lived "$svc1"
cl_wait_until 20000 grep -q '^up' "$CL_TMP/long.log" >/dev/null
servers=$(sed -n 's/^up //p' "$CL_TMP/long.log")
echo "    served by: $(tr ' ' '\n' <<<"$servers" | sort | uniq -c | awk '{printf "%s=%s ", $2, $1}')"
check "every long-lived connection opened and is served by s2 or s3" \
    bash -c '[[ $(wc -w <<<"$1") -eq $2 && ! " $1 " =~ " "(s1|None)" " ]]' _ "$servers" "$LONG_LIVED"
delta=$(counters_delta "$stats0" "$(s1_stats)")
forwarded=$(grep -oE 'syn_forward_[a-z]+=\+[0-9]+' <<<"$delta" | awk -F+ '{s += $2} END {print s + 0}')
echo "    s1 before the floods: ${delta#seen=* }"
check "s1 forwarded their SYNs to its peers ($forwarded >= $LONG_LIVED)" test "$forwarded" -ge "$LONG_LIVED"
flows_before=$(cl_agent_cli 1 status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["flows"])')

echo "$name: new connections all along ($CHURN_CLIENTS clients)"
churn new "$svc1" "$CHURN_CLIENTS" "$CL_CLIENT_ADDR" 0.01
sleep 1

echo "$name: handshake flood: SYN, ACK, ACK x $FLOOD_TUPLES from $SPOOFED (lb_flows holds $FLOWS_MAX)"
slow_start handshake
flood handshake handshake "$FLOOD_TUPLES"
slow_release handshake
check "handshake flood: s1 handled $FLOOD_TUPLES tuples' packets, more than lb_flows holds ($((${FLOOD_SEEN[handshake]:-0} / 3)) > $FLOWS_MAX)" \
    test "$((${FLOOD_SEEN[handshake]:-0} / 3))" -ge "$FLOOD_TUPLES"

echo "$name: SYN flood: $FLOOD_SYNS SYNs from $SPOOFED (lb_flows_new holds $FLOWS_NEW_MAX)"
slow_start syn
flood syn syn "$FLOOD_SYNS"
slow_release syn
check "SYN flood: s1 handled $FLOOD_SYNS SYNs, more than lb_flows_new holds (${FLOOD_SEEN[syn]:-0} > $FLOWS_NEW_MAX)" \
    test "${FLOOD_SEEN[syn]:-0}" -ge "$FLOOD_SYNS"
flows_after=$(cl_agent_cli 1 status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["flows"])')
echo "    s1's flow tables: $flows_before entries before the floods, $flows_after after"
# The servers' kernels under the floods, and the control plane, for the record.
for n in 1 2 3; do
    echo "    s$n kernel: $(kernel_counters "$n" | join - "$CL_TMP/kernel-s$n-before" |
        awk '{d = $2 - $3; if (d) printf "%s +%d ", $1, d}')"
done
for n in 1 2 3; do
    echo "    agent s$n: a peer turned suspect or dead $(grep -cE "peer s[0-9] .*-> (suspect|dead)" "$CL_TMP/agent-s$n.log") times"
done

sleep 1 # new connections after the floods too
stats_end=$(s1_stats)
touch "$CL_TMP/stop" "$CL_TMP/stop-long"
cl_wait_until 30000 test -s "$CL_TMP/long.json" >/dev/null
for pid in "${BG_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
BG_PIDS=()

echo "$name: after the floods"
long=$(cat "$CL_TMP/long.json" 2>/dev/null ||
    echo '{"opened": 0, "start_failures": ["no summary"], "ok": 0, "failures": ["no summary"], "moved": 0}')
python3 -c '
import json, sys
s = json.loads(sys.argv[1])
print("    long-lived: %d of %d answered, %d failed, %d moved" % (s["ok"], s["opened"], len(s["failures"]), s["moved"]))
for f in s["failures"][:3]:
    print("      " + f)
' "$long"
delta=$(counters_delta "$stats_end" "$(s1_stats)")
echo "    s1 counters while they asked: ${delta#seen=* }"
check "every long-lived forwarded connection answers after the floods (no reset)" python3 -c '
import json, sys
s = json.loads(sys.argv[1])
sys.exit(not (s["opened"] == int(sys.argv[2]) and s["ok"] == s["opened"] and not s["failures"] and not s["moved"]))
' "$long" "$LONG_LIVED"

# The new connections, by client and by when they started: during the
# handshake flood, during the SYN flood, or outside both.
python3 - "$CL_TMP" >"$CL_TMP/churn-summary" <<'EOF'
import sys
tmp = sys.argv[1]
windows = {}
for label in ("handshake", "syn"):
    try:
        windows[label] = [int(x) for x in open(f"{tmp}/window-{label}").read().split()]
    except OSError:
        windows[label] = [0, 0]
def phase(ms):
    for label, (t0, t1) in windows.items():
        if t0 <= ms <= t1:
            return label
    return "outside"
def pct(values, q):
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0
for client in ("new",):
    rows = [l.split(maxsplit=3) for l in open(f"{tmp}/churn-{client}.log") if l.strip()]
    for label in ("handshake", "syn", "outside"):
        these = [r for r in rows if phase(int(r[0])) == label]
        ok = sorted(float(r[1]) for r in these if r[2] == "ok")
        kinds = {}
        for r in these:
            if r[2] != "ok":
                kinds[r[2]] = kinds.get(r[2], 0) + 1
        print(f"ROW {client} {label}: {len(these)} connections, {len(ok)} ok, failed: "
              + (" ".join(f"{k}={n}" for k, n in sorted(kinds.items())) or "none")
              + f"; ms p50 {pct(ok, 0.5):.1f} p99 {pct(ok, 0.99):.1f} max {ok[-1] if ok else 0:.1f}")
        print(f"COUNT {client} {label} {len(these)} {sum(kinds.values())}")
    for r in [r for r in rows if r[2] != "ok"][:3]:
        print(f"EXAMPLE {client}: started {r[0]}, after {r[1]} ms: {' '.join(r[2:])}")
EOF
sed -n 's/^ROW /    new connections, /p; s/^EXAMPLE /      failed, /p' "$CL_TMP/churn-summary"
count() { # count CLIENT PHASE|all made|failed
    awk -v c="$1" -v p="$2" -v f="$3" '$1 == "COUNT" && $2 == c && (p == "all" || $3 == p) {
        s += (f == "made" ? $4 : $5) } END { print s + 0 }' "$CL_TMP/churn-summary"
}
for client in new; do
    during=$(($(count "$client" handshake made) + $(count "$client" syn made)))
    check "$client: new connections made during the floods ($during)" test "$during" -ge 10
    check "$client: every new connection succeeded ($(count "$client" all failed) of $(count "$client" all made) failed)" \
        test "$(count "$client" all failed)" -eq 0
    [[ -s $CL_TMP/churn-$client.err ]] && head -n 3 "$CL_TMP/churn-$client.err" | sed 's/^/      stderr: /'
done

check_summary "$name"
