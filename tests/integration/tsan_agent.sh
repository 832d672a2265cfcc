#!/usr/bin/env bash
# Two ThreadSanitizer-built agents (tools/sanitize.sh --thread) in
# namespaces (tools/testbed/cluster.sh), heartbeat every 100 ms, with every
# thread of theirs busy for TSAN_SECONDS (10): the event loop (heartbeats,
# peers, takeover, the control socket), the load meter (a load file every
# 10 ms, loads changed all along), the health check (s1's service answers,
# s2's does not until its check is switched off) and the metrics server
# (scraped over and over). Meanwhile `peerlb status` and `peers --json` are
# asked again and again, settings change with `peerlb set` (some of them
# read by the meter and health threads), and s2's agent leaves (SIGTERM) and
# comes back: s1 takes its addresses over and gives them back. Then both
# stop by PID. Any ThreadSanitizer report fails the test; so does an agent
# that died, or a thread whose work did not show.
#
# Reports go to TSAN_LOGS (a directory; default: one under the scratch
# directory, shown on failure): tools/sanitize.sh passes its own so that they
# are kept with the others.
# Usage: tsan_agent.sh BUILD_DIR (a -fsanitize=thread build)
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/check.sh"
source "$here/../../tools/testbed/cluster.sh"

CL_BUILD=$(cd "${1:?usage: tsan_agent.sh BUILD_DIR}" && pwd)
name=tsan_agent
require_root "$name"
if [[ $(ldd "$CL_BUILD/peerlb" 2>&1) != *libtsan* ]]; then
    echo "$name: $CL_BUILD/peerlb is not a ThreadSanitizer build (tools/sanitize.sh --thread)"
    exit 1
fi

SECONDS_BUSY=${TSAN_SECONDS:-10}
CL_PREFIX="plb$$z"
CL_TMP=$(mktemp -d /tmp/peerlb-tsan.XXXXXX)
CL_INTERVAL_MS=100
CL_AGENT_MANAGED=1
CL_CLUSTER_EXTRA="hold_down_ms = 1000"
logs=${TSAN_LOGS:-$CL_TMP/tsan-logs}
mkdir -p "$logs"
# Reports to files, one per process, and the agent carries on after one.
# The agents inherit this through `ip netns exec`.
export TSAN_OPTIONS="halt_on_error=0:second_deadlock_stack=1:suppressions=$here/../../tools/tsan-suppressions.txt:log_path=$logs/tsan-agent"

BG_PIDS=() # the load loops this script started (by PID)
cleanup() {
    local pid
    touch "$CL_TMP/stop" 2>/dev/null
    for pid in "${BG_PIDS[@]}"; do
        # Each loop ends within one round once stop exists.
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    ((CHECK_FAILED)) && cl_agent_logs
    cl_down
    rm -rf "$CL_TMP" # the reports were shown (and TSAN_LOGS is kept)
}
trap cleanup EXIT
trap 'exit 130' INT TERM

agent_json() { cl_agent_cli "$1" "${@:2}" --json 2>/dev/null; } # agent_json N status|peers
both_see_each_other() {
    [[ $(agent_json 1 peers | grep -c '"state": "alive"') == 1 &&
        $(agent_json 2 peers | grep -c '"state": "alive"') == 1 ]]
}
held_by() { [[ $(cl_holders "$1") == "$2" ]]; } # held_by ADDR "s1"
routable_in_s1() { # routable_in_s1 True|False: s2 as s1 sees it
    agent_json 1 peers | python3 -c '
import json, sys
assert [p["routable"] for p in json.load(sys.stdin) if p["id"] == "s2"] == [sys.argv[1] == "True"]' "$1"
}
# stop_agent N: SIGTERM to agent N by PID; its exit status in stopped_rc
# ("dead" if it was not running). ThreadSanitizer exits 66 after a report.
stop_agent() {
    local pid=${CL_AGENT_PIDS[$1]:-}
    stopped_rc=dead
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        wait "$pid"
        stopped_rc=$?
    fi
    CL_AGENT_PIDS[$1]=
}

echo "$name: namespaces $CL_PREFIX*, reports in $logs"
cl_topology_up || { echo "$name: topology failed"; exit 1; }
cl_nginx_start 1 # s2's service is down: its health check fails (until switched off)
cl_wait_until 5000 cl_in c curl -s -o /dev/null --max-time 1 "http://${CL_NODE_ADDR[1]}/" >/dev/null
for n in 1 2; do cl_agent_config "$n" && cl_agent_start "$n"; done
waited=$(cl_wait_until 30000 both_see_each_other)
check "the two agents see each other ($waited ms)" test "$waited" != timeout
waited=$(cl_wait_until 5000 routable_in_s1 False)
check "s2's health check fails: s1 sees it not routable ($waited ms)" test "$waited" != timeout

# load_loop N KIND: until $CL_TMP/stop exists, against agent N, counting
# each answer that looks right in $CL_TMP/KIND-sN.ok and the others in .bad.
load_loop() {
    local n=$1 kind=$2 out
    while [[ ! -e $CL_TMP/stop ]]; do
        case $kind in
        metrics)
            out=$(cl_in "s$n" curl -s --max-time 3 http://127.0.0.1:9477/metrics)
            [[ $out == *"peerlb_heartbeats_sent_total "* && $out == *"peerlb_takeovers_total "* ]] ;;
        status)
            out=$(agent_json "$n" status)
            [[ $out == *'"heartbeats_sent"'* ]] ;;
        peers)
            out=$(agent_json "$n" peers)
            [[ $out == *'"state": "self"'* ]] ;;
        esac && echo x >>"$CL_TMP/$kind-s$n.ok" || echo x >>"$CL_TMP/$kind-s$n.bad"
        sleep 0.02 # leaves the two cores some room for the agents
    done
}
# set_load N PCT: agent N's load file, replaced whole (never read half-written).
set_load() { echo "$2" >"$CL_TMP/load-s$1.new" && mv "$CL_TMP/load-s$1.new" "$CL_TMP/load-s$1"; }
count() { cat "$CL_TMP/$1" 2>/dev/null | wc -l; } # count KIND-sN.ok|bad

echo "$name: every thread busy for $SECONDS_BUSY s"
for n in 1 2; do
    for kind in metrics metrics status peers; do
        load_loop "$n" "$kind" &
        BG_PIDS+=($!)
    done
done

# Settings the loop, the meter and the health thread read, in turn; loads
# that jump (extra heartbeats); s2 leaves and comes back half-way.
settings=("balance.accept_below 60" "load.smoothing_ms 200" "health.interval_ms 100"
    "cluster.hold_down_ms 800" "load.update_ms 20" "balance.pick least" "health.timeout_ms 150"
    "cluster.load_step 5" "balance.accept_below 50" "load.smoothing_ms 0" "load.update_ms 10"
    "cluster.hold_down_ms 1000" "balance.pick weighted")
sets_ok=0 sets_failed=0 round=0 left=0 back=0 took_over=timeout gave_back=timeout left_rc=none
start=$(cl_now_ms)
while (($(cl_now_ms) - start < SECONDS_BUSY * 1000)); do
    for n in 1 2; do
        [[ -n ${CL_AGENT_PIDS[$n]:-} ]] || continue
        # shellcheck disable=SC2086 # "KEY VALUE"
        if cl_agent_cli "$n" set ${settings[round % ${#settings[@]}]} >/dev/null 2>&1; then
            sets_ok=$((sets_ok + 1))
        else
            sets_failed=$((sets_failed + 1))
        fi
    done
    set_load 1 $(((round * 37) % 100))
    set_load 2 $(((round * 53 + 20) % 100))
    round=$((round + 1))
    elapsed=$(($(cl_now_ms) - start))
    if ((!left && elapsed >= SECONDS_BUSY * 250)); then
        left=1
        stop_agent 2 # leaves: s1 takes its addresses over at once
        left_rc=$stopped_rc
        took_over=$(cl_wait_until 3000 held_by "${CL_SVC_ADDR[2]}" s1)
    elif ((left && !back && elapsed >= SECONDS_BUSY * 500)); then
        back=1
        cl_agent_start 2 # the data plane stayed: up at once
        gave_back=$(cl_wait_until 8000 held_by "${CL_SVC_ADDR[2]}" s2)
        # Read by the health thread: s2 routable from here on.
        if cl_agent_cli 2 set health.enabled false >/dev/null 2>&1; then
            sets_ok=$((sets_ok + 1))
        else
            sets_failed=$((sets_failed + 1))
        fi
    fi
    sleep 0.2
done
touch "$CL_TMP/stop"
for pid in "${BG_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
BG_PIDS=()

echo "    $sets_ok settings changed ($sets_failed refused) in $round rounds;" \
    "s1 took s2's address over in $took_over ms, gave it back $gave_back ms after s2's return;" \
    "s2's first agent exited $left_rc"
for n in 1 2; do
    echo "    s$n answered: metrics $(count "metrics-s$n.ok") (bad $(count "metrics-s$n.bad")), status" \
        "$(count "status-s$n.ok") (bad $(count "status-s$n.bad")), peers $(count "peers-s$n.ok")" \
        "(bad $(count "peers-s$n.bad"))"
done
check "every setting was taken ($sets_ok, at least one a second)" \
    test "$sets_failed" -eq 0 -a "$sets_ok" -ge "$SECONDS_BUSY"
for n in 1 2; do
    # s2's counts include its time away: a few refused answers then.
    check "s$n: metrics scraped, status and peers answered, again and again" \
        test "$(count "metrics-s$n.ok")" -ge 10 -a "$(count "status-s$n.ok")" -ge 10 -a "$(count "peers-s$n.ok")" -ge 10
done
check "s1: nothing refused" test "$(count metrics-s1.bad)" -eq 0 -a "$(count status-s1.bad)" -eq 0 -a "$(count peers-s1.bad)" -eq 0
check "s2 left (exit $left_rc) and s1 took its address over" test "$took_over" != timeout -a "$left_rc" = 0
check "s2 came back and got its address back" test "$gave_back" != timeout
metrics=$(cl_in s1 curl -s --max-time 3 http://127.0.0.1:9477/metrics)
check "s1's metrics show the takeover and give-back (snapshot of the loop's state)" \
    bash -c 'grep -q "^peerlb_takeovers_total [1-9]" <<<"$1" && grep -q "^peerlb_givebacks_total [1-9]" <<<"$1"' _ "$metrics"
waited=$(cl_wait_until 3000 routable_in_s1 True)
check "s2's health check switched off: s1 sees it routable ($waited ms)" test "$waited" != timeout

# Stopped by PID, each; a clean exit (ThreadSanitizer exits 66 after a report).
for n in 1 2; do
    stop_agent "$n"
    check "s$n: the agent ran to the end and left cleanly (exit $stopped_rc)" test "$stopped_rc" = 0
done

reports=$(find "$logs" -type f -name 'tsan-agent*' | sort)
for f in $reports; do
    echo "--- $f"
    cat "$f"
done
check "no ThreadSanitizer report from the agents${reports:+: $(wc -w <<<"$reports") file(s)}" test -z "$reports"
check_summary "$name"
