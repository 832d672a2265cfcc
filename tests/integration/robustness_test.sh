#!/usr/bin/env bash
# Robustness in namespaces (tools/testbed/cluster.sh): three agents,
# heartbeat every 100 ms, dead_after 3, takeover on.
#  1. Floods of hostile datagrams to the heartbeat group from the client
#     namespace (random, truncated, bit-flipped, replayed, wrong key,
#     future- and past-dated, malformed; built by forge_heartbeat, bounded
#     in count and time): every one that reaches an agent dropped and
#     counted by its reason, the peer tables unchanged, no peer dead (nor,
#     at a rate the test bed absorbs, even suspect), each agent's CPU under
#     a budget.
#  2. Crash safety: under continuous traffic (long-lived keep-alive
#     connections, some handed off between nodes, and a loop of new curl
#     connections) node 2's agent is SIGKILLed at random moments (fixed seed)
#     and restarted at once: no long-lived connection breaks or moves, no new
#     connection fails, its maps are consistent after every restart, and no
#     service address is ever held by two nodes (sampled every ~50 ms).
#  3. More joiners than node slots (LB_MAX_NODES); an agent stalled
#     (SIGSTOP) resumes.
#  4. Control clients that send their requests one byte at a time, again
#     and again: the agent's heartbeats go out on time all the same (its
#     peers never see it suspect) and the CLI is answered.
# Usage: robustness_test.sh BUILD_DIR
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/check.sh"
source "$here/../../tools/testbed/cluster.sh"

CL_BUILD=$(cd "${1:?usage: robustness_test.sh BUILD_DIR}" && pwd)
name=robustness_test
require_root "$name"

CL_PREFIX="plb$$r"
CL_TMP=$(mktemp -d /tmp/peerlb-robust.XXXXXX)
CL_INTERVAL_MS=100
CL_AGENT_MANAGED=1

# Two floods. "paced": 100000 datagrams at 10000/s, which this test bed
# (2 CPUs for three agents, nginx and the sender) absorbs: the strict checks,
# not even a suspect peer. "flat-out": as fast as forge_heartbeat can (each
# sendto delivers to three namespaces in its own context: ~17000-19000/s on
# 2 CPUs), for at most FLOOD_MAX_S; the machine saturates and the agents'
# sockets overflow, so real heartbeats get lost too: suspect blips are shown,
# everything else is checked as strictly.
FLOOD_RATE=${FLOOD_RATE:-10000}
FLOOD_COUNT=${FLOOD_COUNT:-100000}
STRESS_COUNT=${STRESS_COUNT:-200000}
FLOOD_MAX_S=10
KERNEL_DROP_MAX_PCT=20 # datagrams the kernel may drop on a full agent socket
CPU_BUDGET_PCT=${CPU_BUDGET_PCT:-50} # of one core, per agent, averaged over a flood
# Crash safety: KILLS SIGKILLs of node 2's agent, each after a random delay
# of 200..1500 ms (bash's RANDOM, seeded: the same delays every run).
KILLS=5
KILL_SEED=4242
DOWN_BUDGET_MS=300 # dead_after x interval: back before any peer calls it dead

BG_PIDS=() # background helpers this script started (by PID)
cleanup() {
    local pid n
    # The helpers stop by themselves once stop-all exists (a curl or a
    # request in flight ends within its timeout); whatever is left is ended.
    touch "$CL_TMP"/stop-all 2>/dev/null
    local waited=0
    while ((waited < 40)); do
        for pid in "${BG_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && break; pid=; done
        [[ -z ${pid:-} ]] && break
        sleep 0.1
        waited=$((waited + 1))
    done
    for pid in "${BG_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            pkill -TERM -P "$pid" 2>/dev/null # its own children (a curl)
            kill "$pid" 2>/dev/null
        fi
        wait "$pid" 2>/dev/null
    done
    # ROBUSTNESS_KEEP_LOGS=DIR: the agents' whole logs are copied there.
    [[ -n ${ROBUSTNESS_KEEP_LOGS:-} ]] && mkdir -p "$ROBUSTNESS_KEEP_LOGS" &&
        cp "$CL_TMP"/agent-s*.log "$CL_TMP"/*.json "$CL_TMP"/*.log "$ROBUSTNESS_KEEP_LOGS"/ 2>/dev/null
    ((CHECK_FAILED)) && cl_agent_logs
    cl_down
    rm -rf "$CL_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# log_lines_since N REGEX AFTER_MS: the lines of agent N's log matching
# REGEX stamped at or after AFTER_MS.
log_lines_since() {
    python3 - "$CL_TMP/agent-s$1.log" "$2" "$3" <<'EOF'
import re, sys, time
path, pattern, after = sys.argv[1], re.compile(sys.argv[2]), int(sys.argv[3])
for line in open(path, errors="replace"):
    stamp = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3}) ", line)
    if stamp and pattern.search(line):
        ms = int(time.mktime(time.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S"))) * 1000 + int(stamp.group(2))
        if ms >= after:
            print(line.rstrip())
EOF
}

agent_json() { cl_agent_cli "$1" "${@:2}" --json 2>/dev/null; } # agent_json N status|peers

all_alive() { # every agent sees its two peers alive
    local n
    for n in 1 2 3; do
        agent_json "$n" peers | python3 -c '
import json, sys
assert sum(p["state"] == "alive" for p in json.load(sys.stdin)) == 2' || return 1
    done
}
holds_own() { # every node's eth0 holds exactly its own addresses (v4 and v6)
    local n
    for n in 1 2 3; do
        [[ $(cl_holders "${CL_SVC_ADDR[$n]}") == "s$n" && $(cl_holders "${CL_SVC_ADDR6[$n]}") == "s$n" ]] || return 1
    done
}

cpu_ticks() { # cpu_ticks PID: utime + stime of a process, in clock ticks
    python3 -c '
import sys
fields = open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")", 1)[1].split()
print(int(fields[11]) + int(fields[12]))  # fields 14 and 15 of stat(5)
' "$1"
}

# udp_drops N: datagrams the kernel dropped on server N's heartbeat socket
# (the socket bound to the group; /proc/net/udp is per namespace).
udp_drops() {
    cl_in "s$1" python3 -c '
import socket, struct, sys
group, port = sys.argv[1].rsplit(":", 1)
local = "%08X:%04X" % (struct.unpack("<I", socket.inet_aton(group))[0], int(port))
print(sum(int(l.split()[-1]) for l in open("/proc/net/udp").read().splitlines()[1:] if l.split()[1] == local))
' "$CL_GROUP"
}

echo "$name: namespaces $CL_PREFIX*"
cl_topology_up || { echo "$name: topology failed"; exit 1; }
for n in 1 2 3; do cl_nginx_start "$n"; done
cl_wait_ready || exit 1
for n in 1 2 3; do cl_agent_config "$n" && cl_agent_start "$n"; done
waited=$(cl_wait_until 8000 all_alive)
check "three agents see each other alive" test "$waited" != timeout
waited=$(cl_wait_until 3000 holds_own)
check "each node holds its own service addresses" test "$waited" != timeout

# --------------------------------------------------------------------------
# The peer table as agent N sees it, minus what moves by itself (age).
peer_table() {
    agent_json "$1" peers | python3 -c '
import json, sys
rows = json.load(sys.stdin)
print(json.dumps(sorted(({k: p[k] for k in ("id", "address", "state", "load", "owns", "routable", "slot", "incarnation")} for p in rows), key=lambda p: p["id"]), sort_keys=True))'
}
cpu_pct_since() { # cpu_pct_since PID TICKS_BEFORE MS: % of one core used since
    python3 -c 'import sys, os; print(round((int(sys.argv[2]) - int(sys.argv[1])) * 1000 / os.sysconf("SC_CLK_TCK") / int(sys.argv[3]) * 100, 1))' \
        "$2" "$(cpu_ticks "$1")" "$3"
}

# flood LABEL RATE COUNT MAX_S STRICT: one flood of COUNT datagrams of every
# kind in turn at RATE per second, cut after MAX_S seconds, then the checks.
# STRICT=1: no peer may even turn suspect. STRICT=0 (the test bed saturated
# on purpose): suspect blips are counted and shown, dead is still a failure.
flood() {
    local label=$1 rate=$2 count=$3 max_s=$4 strict=$5 n start_ms ms rc sent kdrops transitions samples
    local -A table_before status_before cpu_before kdrops_before cpu_pct
    echo "$name: hostile heartbeat flood, $label: $count datagrams at up to $rate/s"
    for n in 1 2 3; do
        table_before[$n]=$(peer_table "$n")
        status_before[$n]=$(agent_json "$n" status)
        kdrops_before[$n]=$(udp_drops "$n")
    done
    # A watcher asks every agent for its peers every ~100 ms during the flood
    # and records any answer without exactly two alive peers. (The CLI talks
    # to the agents' unix sockets from here; no python: the flood has the CPUs.)
    rm -f "$CL_TMP/stop-watch" "$CL_TMP/watch.log" "$CL_TMP/watch-samples"
    touch "$CL_TMP/watch.log"
    (
        while [[ ! -e $CL_TMP/stop-watch && ! -e $CL_TMP/stop-all ]]; do
            for n in 1 2 3; do
                rows=$("$CL_BUILD/peerlb" peers --json --run-dir "$CL_TMP/run-s$n" 2>&1)
                [[ $(grep -c '"state": "alive"' <<<"$rows") == 2 && $(grep -c '"state": "self"' <<<"$rows") == 1 &&
                    $(grep -c '"state":' <<<"$rows") == 3 ]] ||
                    echo "$(date +%T.%3N) s$n: $(tr -d ' \n' <<<"$rows" | head -c 400)" >>"$CL_TMP/watch.log"
                echo "s$n" >>"$CL_TMP/watch-samples"
            done
            sleep 0.1
        done
    ) &
    BG_PIDS+=($!)
    local watcher=$!

    for n in 1 2 3; do cpu_before[$n]=$(cpu_ticks "${CL_AGENT_PIDS[$n]}"); done
    start_ms=$(cl_now_ms)
    cl_in c "$CL_BUILD/tests/forge_heartbeat" --to "$CL_GROUP" --iface eth0 --kind mix \
        --key "$CL_TMP/cluster.key" --receivers s1,s2,s3 --count "$count" --rate "$rate" \
        --max-seconds "$max_s" --summary >"$CL_TMP/flood-$label.json" 2>"$CL_TMP/flood.err"
    rc=$?
    ms=$(($(cl_now_ms) - start_ms))
    for n in 1 2 3; do cpu_pct[$n]=$(cpu_pct_since "${CL_AGENT_PIDS[$n]}" "${cpu_before[$n]}" "$ms"); done
    sleep 0.5 # the agents empty their sockets; a few more heartbeat periods
    touch "$CL_TMP/stop-watch"
    wait "$watcher" 2>/dev/null

    check "$label: forge_heartbeat ran (rc $rc $(head -c 200 "$CL_TMP/flood.err"))" test "$rc" -eq 0
    python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
print("    sent %d datagrams in %.2f s: %.0f/s; kinds:" % (s["sent"], s["seconds"], s["per_s"]),
      " ".join("%s=%d" % kv for kv in sorted(s["kinds"].items())))
' "$CL_TMP/flood-$label.json" 2>/dev/null
    sent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sent"])' "$CL_TMP/flood-$label.json" 2>/dev/null || echo 0)
    # Every kind, real heartbeats of all three captured, and at least 10000/s
    # kept up (or all of them sent).
    check "$label: $sent datagrams of all 8 kinds sent within ${max_s} s" python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
assert len(s["kinds"]) == 8 and len(s["captured_from"]) == 3, s
assert s["sent"] == int(sys.argv[2]) or s["sent"] >= 10000 * int(sys.argv[3]), s
' "$CL_TMP/flood-$label.json" "$count" "$max_s"

    for n in 1 2 3; do
        kdrops=$(($(udp_drops "$n") - ${kdrops_before[$n]}))
        echo "    s$n: the kernel dropped $kdrops datagrams on its full heartbeat socket ($(python3 -c 'import sys; print(round(int(sys.argv[1]) * 100 / max(int(sys.argv[2]), 1), 2))' "$kdrops" "$sent") % of those sent)"
        check "$label, s$n: kernel socket drops under ${KERNEL_DROP_MAX_PCT} % of the flood" \
            test $((kdrops * 100)) -le $((sent * KERNEL_DROP_MAX_PCT))
        check "$label, s$n: every hostile datagram that reached the agent dropped and counted by its reason" python3 -c '
import json, sys
me, kdrops = sys.argv[1], int(sys.argv[5])
before = json.loads(sys.argv[2])["agent"]["heartbeat_drops"]
after = json.loads(sys.argv[3])["agent"]["heartbeat_drops"]
expect = json.load(open(sys.argv[4]))["expect"][me]
got = {r: after[r] - before[r] for r in after}
print(f"    {me} drops by reason:", " ".join(f"{r}={got[r]}/{expect.get(r, 0)}" for r in sorted(got)),
      "(counted/sent)")
# A datagram the kernel dropped for a full socket never reached the agent:
# it may be missing from one reason. With no kernel drop the counts are exact.
for r in got:
    assert expect.get(r, 0) - kdrops <= got[r] <= expect.get(r, 0), (r, got[r], expect.get(r, 0))
assert sum(expect.values()) - sum(got.values()) <= kdrops
' "s$n" "${status_before[$n]}" "$(agent_json "$n" status)" "$CL_TMP/flood-$label.json" "$kdrops"
        check "$label, s$n: agent CPU under ${CPU_BUDGET_PCT} % of one core (${cpu_pct[$n]} %; idle ${IDLE_PCT[$n]} %)" \
            python3 -c 'import sys; assert float(sys.argv[1]) < float(sys.argv[2])' "${cpu_pct[$n]}" "$CPU_BUDGET_PCT"
        check "$label, s$n: peer table unchanged (ids, addresses, states, loads, owns, incarnations)" \
            test "$(peer_table "$n")" == "${table_before[$n]}"
        transitions=$(log_lines_since "$n" "-> dead" "$start_ms")
        check "$label, s$n: no peer marked dead${transitions:+: $transitions}" test -z "$transitions"
        transitions=$(log_lines_since "$n" "-> suspect" "$start_ms")
        if ((strict)); then
            check "$label, s$n: no peer marked suspect${transitions:+: $transitions}" test -z "$transitions"
        else
            echo "    s$n marked a live peer suspect $(grep -c . <<<"$transitions") times${transitions:+:}" \
                "$(sed -E 's/^[0-9-]+ ([0-9:.]+) .*peer (s[0-9]).*/\1 \2/' <<<"$transitions" | tr '\n' ' ')"
        fi
    done
    samples=$(wc -l <"$CL_TMP/watch-samples" 2>/dev/null || echo 0)
    if ((strict)); then
        check "$label: peers --json during the flood ($samples answers): always 3 rows, every peer alive" \
            bash -c '[[ $1 -ge 15 && ! -s $2 ]] || { cat "$2"; false; }' _ "$samples" "$CL_TMP/watch.log"
    else
        check "$label: peers --json during the flood ($samples answers): always 3 rows, never dead" \
            bash -c '[[ $1 -ge 15 ]] && ! grep -v suspect "$2" | grep . && ! grep dead "$2"' \
            _ "$samples" "$CL_TMP/watch.log"
    fi
    holds_own || for a in "${CL_SVC_ADDR[@]}" "${CL_SVC_ADDR6[@]}"; do echo "      $a held by: $(cl_holders "$a")"; done
    check "$label: each node still holds its own addresses" holds_own
}

cl_agent_load 1 20; cl_agent_load 2 30; cl_agent_load 3 40
sleep 0.5
# The agents' CPU when idle, over one second, for comparison.
declare -A IDLE_PCT idle_ticks
for n in 1 2 3; do idle_ticks[$n]=$(cpu_ticks "${CL_AGENT_PIDS[$n]}"); done
idle_start=$(cl_now_ms)
sleep 1
for n in 1 2 3; do IDLE_PCT[$n]=$(cpu_pct_since "${CL_AGENT_PIDS[$n]}" "${idle_ticks[$n]}" $(($(cl_now_ms) - idle_start))); done

# (The paced flood takes COUNT / RATE = 10 s; its bound only guards a hang.)
flood paced "$FLOOD_RATE" "$FLOOD_COUNT" $((FLOOD_COUNT / FLOOD_RATE + 3)) 1
flood flat-out 1000000 "$STRESS_COUNT" "$FLOOD_MAX_S" 0

# --------------------------------------------------------------------------
echo "$name: crash safety: node 2's agent killed $KILLS times under traffic"

# keeper NAME ADDR COUNT: COUNT keep-alive connections from the client to
# ADDR, one request on each every 100 ms, until $CL_TMP/stop-all exists;
# writes "up SERVERS" once connected, and a JSON summary to keeper-NAME.json.
keeper() {
    ip netns exec "$(cl_ns c)" python3 -u - "$@" "$CL_TMP/stop-all" "$CL_TMP/keeper-$1.json" \
        >"$CL_TMP/keeper-$1.log" 2>&1 <<'EOF' &
import http.client, json, os, sys, time
name, addr, count, stop, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
conns = [http.client.HTTPConnection(addr, 80, timeout=5) for _ in range(count)]
served = [None] * count
ok, failures, moves = 0, [], []
def one_round():
    global ok
    for i, c in enumerate(conns):
        try:
            c.request("GET", "/")
            who = c.getresponse().read().decode().strip()
        except Exception as e:
            failures.append(f"{time.time():.3f} conn {i}: {e!r}")
            continue
        ok += 1
        if served[i] is None:
            served[i] = who
        elif who != served[i]:
            moves.append(f"{time.time():.3f} conn {i}: {served[i]} -> {who}")
one_round()
print("up", *served, flush=True)
while not os.path.exists(stop):
    time.sleep(0.1)
    one_round()
one_round()
json.dump({"ok": ok, "failures": failures, "moves": moves, "served": served}, open(out, "w"))
EOF
    BG_PIDS+=($!)
}
keeper_up() { grep -q '^up' "$CL_TMP/keeper-$1.log"; }
keeper_servers() { sed -n 's/^up //p' "$CL_TMP/keeper-$1.log"; }

# Handed off by s1 (busy) to s2 and s3: s1's flow table carries them.
cl_agent_load 1 90; cl_agent_load 2 10; cl_agent_load 3 10
sleep 0.5
keeper k1 "${CL_SVC_ADDR[1]}" 4
cl_wait_until 5000 keeper_up k1 >/dev/null
# Handed off by s2 (the node whose agent dies) to s1 and s3, v4 and v6;
# kept by s3 itself (40 % is under accept_below).
cl_agent_load 1 10; cl_agent_load 2 90; cl_agent_load 3 40
sleep 0.5
keeper k2 "${CL_SVC_ADDR[2]}" 4
keeper k2v6 "${CL_SVC_ADDR6[2]}" 2
keeper k3 "${CL_SVC_ADDR[3]}" 2
for k in k2 k2v6 k3; do cl_wait_until 5000 keeper_up "$k" >/dev/null; done
for k in k1 k2 k2v6 k3; do echo "    long-lived $k served by: $(keeper_servers "$k")"; done
check "long-lived connections are handed off as set up (k1: s2/s3, k2: s1/s3, k3: s3)" bash -c '
[[ -n $1 && " $1 " != *" s1 "* && " $1 " != *None* ]] &&
[[ -n $2 && " $2 $3 " != *" s2 "* && " $2 $3 " != *None* ]] && [[ $4 == "s3 s3" ]]' _ \
    "$(keeper_servers k1)" "$(keeper_servers k2)" "$(keeper_servers k2v6)" "$(keeper_servers k3)"

# New connections all along: curl to every service address in turn.
ip netns exec "$(cl_ns c)" bash -c '
stop=$1; shift
while [[ ! -e $stop ]]; do
    for a in "$@"; do
        who=$(curl -gs --max-time 3 "http://$a/")
        echo "$(date +%s%3N) $a ${who:-FAILED}"
    done
done' _ "$CL_TMP/stop-all" "${CL_SVC_ADDR[1]}" "${CL_SVC_ADDR[2]}" "${CL_SVC_ADDR[3]}" \
    "[${CL_SVC_ADDR6[1]}]" "[${CL_SVC_ADDR6[2]}]" "[${CL_SVC_ADDR6[3]}]" >"$CL_TMP/curls.log" 2>&1 &
BG_PIDS+=($!)

# Who holds each service address on its NIC, every ~50 ms.
# (The sampler runs in the root namespace: `ip -n` only reads the servers'.)
python3 - "$CL_TMP/stop-all" "$CL_TMP/holders.log" "$(cl_ns s1)" "$(cl_ns s2)" "$(cl_ns s3)" \
    "${CL_SVC_ADDR[@]}" "${CL_SVC_ADDR6[@]}" <<'EOF' &
import os, subprocess, sys, time
stop, out, namespaces, addresses = sys.argv[1], sys.argv[2], sys.argv[3:6], sys.argv[6:]
with open(out, "w") as log:
    while not os.path.exists(stop):
        t = time.time()
        held = {}
        for i, ns in enumerate(namespaces):
            text = subprocess.run(["ip", "-n", ns, "-o", "addr", "show", "dev", "eth0"],
                                  capture_output=True, text=True).stdout
            words = set(w.split("/")[0] for w in text.split())
            for a in addresses:
                if a in words:
                    held.setdefault(a, []).append(f"s{i + 1}")
        log.write(f"{t:.3f} " + " ".join(f"{a}={','.join(held.get(a, [])) or '-'}" for a in addresses) + "\n")
        log.flush()
        time.sleep(max(0.0, 0.05 - (time.time() - t)))
EOF
BG_PIDS+=($!)
sleep 0.5

status2() { cl_in s2 "$CL_BUILD/peerlb" status "$@" --pin-root "$(cl_pin_root 2)" --run-dir "$CL_TMP/run-s2"; }
# What must survive every restart: slot -> address, the settings, the flows.
ref=$(status2 --json)
slots_of() { python3 -c 'import json,sys; print(sorted((n["slot"], n["address"]) for n in json.load(sys.stdin)["nodes"]))'; }
ref_slots=$(slots_of <<<"$ref")
ref_config=$(python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["config"], sort_keys=True))' <<<"$ref")
echo "    s2 slots before: $ref_slots"
check "s2's config map holds the configured values" python3 -c '
import json, sys
c = json.loads(sys.argv[1])
want = {"accept_below": 50.0, "min_difference": 20.0, "pick": "weighted", "forward": "l2",
        "peer_stale_ms": 300, "self_stale_ms": 500, "node_slots": 3}
assert all(c[k] == v for k, v in want.items()), c
' "$ref_config"

# consistent N_FLOWS_BEFORE: s2's data plane after a restart: every slot
# with its address and fresh, the settings as configured, flows all there.
consistent() {
    python3 -c '
import json, sys
s, ref_slots, ref_config, flows_before = json.loads(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
assert s["agent"]["running"] and s["attached"], "agent or program missing"
assert str(sorted((n["slot"], n["address"]) for n in s["nodes"])) == ref_slots, s["nodes"]
assert all(n["age_ms"] <= 150 and n["state"] in ("self", "alive") for n in s["nodes"]), s["nodes"]
assert s["config"] == ref_config, s["config"]
assert s["flows"] >= flows_before, (s["flows"], flows_before)
' "$(status2 --json 2>/dev/null)" "$ref_slots" "$ref_config" "$1" 2>"$CL_TMP/consistent.err"
}

s2_up_since() { [[ -n $(cl_log_ms 2 "agent s2 up" "$1") ]]; }
RANDOM=$KILL_SEED
down_max=0
restart_failures=()
for i in $(seq "$KILLS"); do
    delay_ms=$((200 + RANDOM % 1301))
    sleep "$((delay_ms / 1000)).$(printf %03d $((delay_ms % 1000)))"
    flows_before=$(status2 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["flows"])')
    kill_ms=$(cl_now_ms)
    cl_agent_stop 2 KILL
    if ((i == 1)); then
        # One look while the agent is gone (one command: the agent must be
        # back within dead_after periods): the data plane, and its absence.
        down_text=$(status2 2>&1)
    fi
    cl_agent_start 2
    cl_wait_until 3000 s2_up_since "$kill_ms" >/dev/null
    up_ms=$(cl_log_ms 2 "agent s2 up" "$kill_ms")
    down=$(( ${up_ms:-999999999999999} - kill_ms ))
    ((down > down_max)) && down_max=$down
    waited=$(cl_wait_until 2000 consistent "$flows_before")
    echo "    kill $i after ${delay_ms} ms: agent back up ${down} ms after SIGKILL; maps consistent after ${waited} ms more"
    [[ $waited == timeout ]] && restart_failures+=("kill $i: $(tail -n 1 "$CL_TMP/consistent.err")")
done
down_ok() { # the text status of s2 with its agent gone
    [[ $1 == *"agent       NOT running"* && $1 == *"attached, native mode"* ]] &&
        [[ $(grep -cE "^ +[0-9]+  10\.77\.0\.1[123] " <<<"$1") -eq 3 && $(grep -c "^service " <<<"$1") -ge 6 ]]
}
down_ok "${down_text:-}" || printf '%s\n' "${down_text:-}" | sed 's/^/      | /'
check "status with the agent gone: the data plane (program, 3 node slots, services), agent NOT running" \
    down_ok "${down_text:-}"
check "every restart: slots, freshness, settings and flows consistent" \
    bash -c '[[ $# -eq 0 ]] || { printf "    %s\n" "$@"; false; }' _ "${restart_failures[@]}"
check "the agent was back within dead_after periods every time (max ${down_max} ms < ${DOWN_BUDGET_MS} ms)" \
    test "$down_max" -lt "$DOWN_BUDGET_MS"

sleep 1 # traffic after the last restart, too
touch "$CL_TMP/stop-all"
for k in k1 k2 k2v6 k3; do cl_wait_until 8000 test -s "$CL_TMP/keeper-$k.json" >/dev/null; done
check "no long-lived connection broke or moved" python3 -c '
import json, sys
total, bad = 0, []
for path in sys.argv[1:]:
    s = json.load(open(path))
    total += s["ok"]
    bad += s["failures"] + s["moves"]
print(f"    long-lived connections: {total} requests answered, {len(bad)} failures or moves")
assert not bad and total >= 200, bad[:5]
' "$CL_TMP"/keeper-k1.json "$CL_TMP"/keeper-k2.json "$CL_TMP"/keeper-k2v6.json "$CL_TMP"/keeper-k3.json
sleep 0.5 # the curl loop finishes its round
check "new connections all succeeded" python3 -c '
import sys
lines = [l.split() for l in open(sys.argv[1]) if l.strip()]
failed = [l for l in lines if l[-1] == "FAILED"]
print(f"    new connections: {len(lines)}, failed: {len(failed)}")
assert len(lines) >= 100 and not failed, failed[:5]
' "$CL_TMP/curls.log"
check "no service address ever held by two nodes, or by another than its home" python3 -c '
import sys
samples = [l.split() for l in open(sys.argv[1]) if l.strip()]
home = {a: f"s{i % 3 + 1}" for i, a in enumerate(sys.argv[2:])}
bad = [s for s in samples if any(f"{a}={h}" not in s[1:] for a, h in home.items())]
gaps = [round(float(b[0]) - float(a[0]), 3) for a, b in zip(samples, samples[1:])]
print(f"    holders sampled {len(samples)} times, every {sum(gaps) / max(len(gaps), 1) * 1000:.0f} ms on average (max gap {max(gaps, default=0) * 1000:.0f} ms); bad samples: {len(bad)}")
assert len(samples) >= 50 and not bad, bad[:3]
' "$CL_TMP/holders.log" "${CL_SVC_ADDR[@]}" "${CL_SVC_ADDR6[@]}"
dead_lines=$(for n in 1 3; do log_lines_since "$n" "peer s2 .*-> dead" 0; done)
check "no peer ever declared s2 dead${dead_lines:+: $dead_lines}" test -z "$dead_lines"
suspects=$(for n in 1 3; do log_lines_since "$n" "peer s2 .*-> suspect" 0; done | grep -c . )
echo "    peers marked s2 suspect $suspects times in all (heard nothing for 1.5 periods)"

# --------------------------------------------------------------------------
# The data plane's node slots (maps/common.h); the three agents hold three.
slots=$(sed -n 's/^#define LB_MAX_NODES \([0-9]*\).*/\1/p' "$here/../../maps/common.h")
joins=$((slots - 3 + 89))
echo "$name: node slots: $joins new nodes join with the key ($((slots - 3)) slots free)"
# A key holder, or a churn of node addresses, brings more nodes than there
# are slots: the agents refuse the surplus, count it and go on; once those
# nodes are dead their slots serve newcomers.
live_peers() { # live_peers N: how many peers agent N sees alive
    agent_json "$1" peers | python3 -c '
import json, sys
print(sum(p["state"] == "alive" for p in json.load(sys.stdin)))'
}
slots_refused() { agent_json "$1" status | python3 -c 'import json,sys; print(json.load(sys.stdin)["agent"]["node_slots_refused"])'; }
# Forged joins, each a new node, at 10 000/s: all of them within ~110 ms,
# before the first is dead (3 periods of 100 ms), and no burst beyond the
# receive queues.
members() { # members ID COUNT
    cl_in c "$CL_BUILD/tests/forge_heartbeat" --to "$CL_GROUP" --iface eth0 --kind members \
        --id "$1" --count "$2" --rate 10000 --key "$CL_TMP/cluster.key" 2>>"$CL_TMP/members.err"
}
members wave1 "$joins"
rc=$?
check "$joins joins sent (rc $rc $(head -c 200 "$CL_TMP/members.err"))" test "$rc" -eq 0
sleep 1.5 # the joiners are dead after dead_after periods of 100 ms
declare -A refused
for n in 1 2 3; do
    check "s$n: the agent still runs after $joins joins" kill -0 "${CL_AGENT_PIDS[$n]}"
    refused[$n]=$(slots_refused "$n")
    check "s$n: the 89 surplus joiners refused and counted (node_slots_refused ${refused[$n]} writes >= 89)" \
        test "${refused[$n]:-0}" -ge 89
done
waited=$(cl_wait_until 3000 all_alive)
check "the three real agents still see each other alive" test "$waited" != timeout
members wave2 60
sleep 0.5
for n in 1 2 3; do
    now_refused=$(slots_refused "$n")
    check "s$n: 60 later joins took the dead joiners' slots (refused ${refused[$n]} -> $now_refused)" \
        test "$now_refused" -eq "${refused[$n]}"
done
for n in 1 2 3; do
    check "s$n: peers --json still answers (JSON, real peers alive)" test "$(live_peers "$n")" -ge 2
done

# --------------------------------------------------------------------------
echo "$name: a stalled agent (SIGSTOP 3 s, 30 heartbeat periods) resumes"
# Its peers, silent to it meanwhile, kept sending: their heartbeats wait in
# its socket. It must read them before it judges anyone, or it declares
# both dead at once and takes all their addresses.
stall_from=$(wc -l <"$CL_TMP/agent-s1.log")
kill -STOP "${CL_AGENT_PIDS[1]}"
sleep 3
kill -CONT "${CL_AGENT_PIDS[1]}"
: >"$CL_TMP/stall-holders.log"
for i in $(seq 20); do # 2 s after the resume
    echo "$(cl_holders "${CL_SVC_ADDR[2]}")|$(cl_holders "${CL_SVC_ADDR[3]}")" >>"$CL_TMP/stall-holders.log"
    sleep 0.1
done
stall_dead=$(tail -n +"$((stall_from + 1))" "$CL_TMP/agent-s1.log" | grep -E "peer s[23] .*-> dead" || true)
check "after the stall s1 declared no real peer dead${stall_dead:+: $stall_dead}" test -z "$stall_dead"
check "after the stall s2's and s3's addresses stayed theirs alone (sampled 20 times)" \
    bash -c '! grep -v "^s2|s3$" "$1"' _ "$CL_TMP/stall-holders.log"
waited=$(cl_wait_until 5000 holds_own)
check "then every node holds its own addresses again (s1's given back)" test "$waited" != timeout

# --------------------------------------------------------------------------
echo "$name: control clients that send their requests one byte at a time"
# The agent serves its control socket on its event loop, so no client may
# hold it, however slowly its request comes: 2 clients at a byte every 30 ms
# (a request in ~0.5 s) and 2 at a byte every 150 ms (never done), each
# connecting again as soon as it is done, for TRICKLE_S seconds. Meanwhile
# s1's heartbeats go out on time (its peers never see it suspect nor hear it
# late) and the CLI's requests are answered at once.
TRICKLE_S=4
trickle_json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
sent_before=$(agent_json 1 status | trickle_json 'd["agent"]["heartbeats_sent"]')
trickle_from=$(cl_now_ms)
python3 - "$CL_TMP/run-s1/agent.sock" "$TRICKLE_S" >"$CL_TMP/trickle.json" 2>"$CL_TMP/trickle.err" <<'EOF' &
import json, socket, sys, threading, time
path, seconds = sys.argv[1], float(sys.argv[2])
request = b'{"cmd": "status"}\n'
end = time.time() + seconds
stats = {}
def trickle(name, gap):
    s = stats[name] = {"connections": 0, "answered": 0, "refused": 0, "cut": 0}
    while time.time() < end:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(path)
        s["connections"] += 1
        try:
            for b in request:
                c.sendall(bytes([b]))
                time.sleep(gap)
            c.settimeout(3)
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = c.recv(1 << 16)
                if not chunk:
                    break
                answer += chunk
            reply = json.loads(answer) if answer.strip() else {}
            s["answered" if "node_id" in reply else "refused"] += 1
        except OSError:
            s["cut"] += 1  # the agent closed it: past its deadline
        finally:
            c.close()
threads = [threading.Thread(target=trickle, args=(f"{n}-{i}", gap))
           for n, gap in (("fast", 0.03), ("slow", 0.15)) for i in range(2)]
for t in threads: t.start()
for t in threads: t.join()
json.dump(stats, sys.stdout)
EOF
trickler=$!
BG_PIDS+=($trickler)
# Meanwhile: s1 asked for its status, s2 and s3 for how long ago they heard s1.
: >"$CL_TMP/trickle-watch.log"
while kill -0 "$trickler" 2>/dev/null; do
    t0=$(cl_now_ms)
    if agent_json 1 status >/dev/null; then
        echo "status $(($(cl_now_ms) - t0))" >>"$CL_TMP/trickle-watch.log"
    else
        echo "status failed" >>"$CL_TMP/trickle-watch.log"
    fi
    for n in 2 3; do
        agent_json "$n" peers | python3 -c '
import json, sys
print("age", sys.argv[1], [p["age_ms"] for p in json.load(sys.stdin) if p["id"] == "s1"][0])' "s$n" \
            >>"$CL_TMP/trickle-watch.log" 2>&1
    done
done
wait "$trickler"
trickle_rc=$?
sent=$(($(agent_json 1 status | trickle_json 'd["agent"]["heartbeats_sent"]') - sent_before))
trickle_ms=$(($(cl_now_ms) - trickle_from))
echo "    tricklers: $(cat "$CL_TMP/trickle.json" 2>/dev/null) $(head -c 300 "$CL_TMP/trickle.err")"
check "the trickling clients ran (rc $trickle_rc) and connected again and again" python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
assert len(s) == 4 and all(c["connections"] >= 2 for c in s.values()), s
' "$CL_TMP/trickle.json"
check "a request that trickles in within the deadline is answered (the fast ones)" python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
assert all(c["answered"] >= 1 for n, c in s.items() if n.startswith("fast")), s
' "$CL_TMP/trickle.json"
ages=$(sed -n 's/^age s[23] //p' "$CL_TMP/trickle-watch.log" | sort -n | tail -n 1)
statuses=$(sed -n 's/^status //p' "$CL_TMP/trickle-watch.log")
echo "    s1 sent $sent heartbeats in $trickle_ms ms (every 100 ms: $((trickle_ms / 100))); its peers heard it at most ${ages:-?} ms before ($(grep -c '^age' "$CL_TMP/trickle-watch.log") looks); CLI status answered $(grep -c . <<<"$statuses") times, the slowest in $(sort -n <<<"$statuses" | tail -n 1) ms"
check "s1 kept sending heartbeats on time ($sent in $trickle_ms ms)" \
    test $((sent * 100 * 100)) -ge $((trickle_ms * 90))
check "s2 and s3 always heard s1 within 1.5 periods (latest age ${ages:-none} ms < 150 ms)" \
    bash -c '[[ -n $1 && $1 -lt 150 ]] && ! grep -q "^age s[23] [^0-9]" "$2"' _ "$ages" "$CL_TMP/trickle-watch.log"
suspects=$(for n in 2 3; do log_lines_since "$n" "peer s1 .*-> (suspect|dead)" "$trickle_from" | sed "s/^/s$n: /"; done)
check "no peer marked s1 suspect${suspects:+: $suspects}" test -z "$suspects"
check "the CLI's requests to s1 were all answered, each within 1 s" \
    bash -c '! grep -q "status failed" "$1" && [[ -n $2 ]] && (( $(sort -n <<<"$2" | tail -n 1) < 1000 ))' \
    _ "$CL_TMP/trickle-watch.log" "$statuses"

check_summary "$name"
