#!/usr/bin/env bash
# Failover time (benchmark part 4): how long a dead node's service address
# stays unreachable, peerlb against keepalived (VRRP), in the namespace
# topology of tools/testbed/cluster.sh and in one run:
#   peerlb100  peerlb, heartbeat 100 ms, dead_after 3
#   peerlb500  peerlb, heartbeat 500 ms (the default), dead_after 3
#   ka1000     keepalived VRRP, advert_int 1 s (the default)
#   ka100      keepalived VRRP, advert_int 0.1 s (VRRPv3)
# Each trial: tools/bench/failover_probe.py in the client namespace opens a
# new connection to s1's address every 10 ms while it also drives traffic to
# s2 and s3; at T0 s1's agent / keepalived gets SIGKILL (no goodbye) and its
# eth0 goes down. Failover time = the first reply to s1's address that
# a survivor sent, minus T0. Then s1 returns and the cluster settles.
#
# Usage: failover.sh BUILD_DIR OUT_DIR [TRIALS]     (default 5 trials)
# Env: FAILOVER_CONFIGS (default "peerlb100 peerlb500 ka1000 ka100").
# Writes OUT_DIR/failover.csv (config,trial,failover_ms,survivor_requests,
# survivor_failed), OUT_DIR/failover.txt (the table printed at the end),
# OUT_DIR/failover-details.jsonl (the probe's summary of every trial) and the
# agents' / keepalived's logs under OUT_DIR/failover-logs/.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$root/tools/testbed/cluster.sh"
source "$here/lib.sh"

usage="usage: failover.sh BUILD_DIR OUT_DIR [TRIALS]"
CL_BUILD=$(cd "${1:?$usage}" && pwd) || exit 2
out=${2:?$usage}
trials=${3:-5}
configs=(${FAILOVER_CONFIGS:-peerlb100 peerlb500 ka1000 ka100})
keepalived=/usr/sbin/keepalived

if [[ $EUID -ne 0 ]]; then
    echo "failover: needs root (namespaces, BPF)" >&2
    exit 77
fi
[[ -x $keepalived ]] || { echo "failover: $keepalived is missing" >&2; exit 1; }
mkdir -p "$out/failover-logs" || exit 1
out=$(cd "$out" && pwd)

CL_PREFIX="plb$$f"
CL_TMP=$(mktemp -d /tmp/peerlb-failover.XXXXXX)
CL_AGENT_MANAGED=1
# Only how soon s1 gets its address back between trials (give-back after
# 1 s instead of the default); the takeover itself does not wait for it.
CL_CLUSTER_EXTRA=$'hold_down_ms = 1000'
KA_PIDS=()   # keepalived parents, by server
KA_CHILD=()  # their VRRP children (a separate process, even with -n)
PROBE_PID=

log() { bench_log "failover: $*"; }

# ours PID: PID is alive and one of this run's processes (its command line
# names our scratch dir), so a recycled PID is never signalled.
ours() { [[ -r /proc/$1/cmdline ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF "$CL_TMP"; }

probe_stop() {
    [[ -n $PROBE_PID ]] || return 0
    kill "$PROBE_PID" 2>/dev/null && wait "$PROBE_PID" 2>/dev/null
    PROBE_PID=
}

# --- keepalived -----------------------------------------------------------

# ka_config N ADVERT_INT VERSION: server N's keepalived.conf. One instance
# per service address; the owner has priority 150, the next server 100, the
# last 50 (s2 takes s1's address, as peerlb's rule picks). Preemption is
# keepalived's default (no nopreempt): the owner takes its address back.
ka_config() {
    local n=$1 advert=$2 version=$3 m prio state
    mkdir -p "$CL_TMP/ka-s$n"
    {
        cat <<EOF
global_defs {
    router_id s$n
    vrrp_version $version
}
EOF
        for m in 1 2 3; do
            case $(((n - m + 3) % 3)) in
            0) prio=150 state=MASTER ;;
            1) prio=100 state=BACKUP ;;
            2) prio=50 state=BACKUP ;;
            esac
            cat <<EOF
vrrp_instance VI_$m {
    state $state
    interface eth0
    virtual_router_id $((110 + m))
    priority $prio
    advert_int $advert
    virtual_ipaddress {
        ${CL_SVC_ADDR[$m]}/32 dev eth0
    }
}
EOF
        done
    } >"$CL_TMP/ka-s$n/keepalived.conf"
}

# ka_start N: keepalived in server N's namespace. -n: the parent stays in the
# foreground, so $! is its PID (ip netns exec execs); it still forks the VRRP
# child, whose PID comes from its pid file. -P: VRRP only. -R: the parent
# never respawns a child (a killed child stays dead). Own pid files: the
# defaults under /run would collide between servers. -G: no syslog.
ka_start() {
    local n=$1 d=$CL_TMP/ka-s$1 try
    rm -f "$d"/*.pid
    ip netns exec "$(cl_ns "s$n")" "$keepalived" -n -P -R -l -D -G -f "$d/keepalived.conf" \
        -p "$d/keepalived.pid" -r "$d/vrrp.pid" -c "$d/checkers.pid" -b "$d/bfd.pid" \
        >>"$CL_TMP/ka-s$n.log" 2>&1 &
    KA_PIDS[$n]=$!
    KA_CHILD[$n]=
    for try in $(seq 100); do
        [[ -s $d/vrrp.pid ]] && KA_CHILD[$n]=$(<"$d/vrrp.pid") && ours "${KA_CHILD[$n]}" && return 0
        sleep 0.05
    done
    echo "failover: keepalived on s$n did not start its VRRP child; its log:" >&2
    tail -n 20 "$CL_TMP/ka-s$n.log" >&2
    return 1
}

# ka_wait_gone PID: up to 2 s for a keepalived process to be gone.
ka_wait_gone() {
    local try
    for try in $(seq 100); do
        ours "$1" || return 0
        sleep 0.02
    done
    return 1
}

# ka_kill N: a node death (and the end of a configuration). The child first:
# killing the parent first would make the kernel send the child a
# parent-death signal, on which it says goodbye (priority 0) and removes its
# addresses, which a dead node cannot do.
ka_kill() {
    local n=$1 parent=${KA_PIDS[$1]:-} child=${KA_CHILD[$1]:-}
    [[ -n $child ]] && ours "$child" && kill -KILL "$child"
    [[ -n $parent ]] && kill -KILL "$parent" 2>/dev/null && wait "$parent" 2>/dev/null
    [[ -n $child ]] && ! ka_wait_gone "$child" && echo "failover: keepalived child $child survives" >&2
    KA_PIDS[$n]= KA_CHILD[$n]=
}

# --- cluster states ---------------------------------------------------------

each_holds_its_own() { # IPv4 only with keepalived; IPv6 too with peerlb
    local n
    for n in 1 2 3; do
        cl_held_by "${CL_SVC_ADDR[$n]}" "s$n" || return 1
        [[ $kind == ka ]] || cl_held_by "${CL_SVC_ADDR6[$n]}" "s$n" || return 1
    done
}
settled() {
    each_holds_its_own || return 1
    [[ $kind == ka ]] || cl_all_see_all
}

# --- one configuration ------------------------------------------------------

# config_up: topology, nginx, then the agents or keepalived, until each node
# holds its own addresses. A fresh topology per configuration: nothing one
# leaves behind (XDP programs, addresses on lo, sysctls) can help another.
config_up() {
    local n waited
    cl_topology_up || return 1
    for n in 1 2 3; do cl_nginx_start "$n"; done
    cl_wait_ready || return 1
    for n in 1 2 3; do
        if [[ $kind == ka ]]; then
            ka_config "$n" "$advert" "$vrrp_version"
            ka_start "$n" || return 1
        else
            cl_agent_config "$n"
            cl_agent_start "$n" || return 1
        fi
    done
    # Three fresh attaches verify the programs at once on this machine's cores.
    waited=$(cl_wait_until 60000 settled)
    [[ $waited != timeout ]] || { log "$name: the cluster did not settle"; return 1; }
    log "$name: up, settled in $waited ms"
}

config_down() {
    local n f
    probe_stop
    for n in 1 2 3; do ka_kill "$n"; done # no goodbyes needed: all goes away
    cl_down
    # Keep the logs, one set per configuration.
    for f in "$CL_TMP"/agent-s?.log "$CL_TMP"/ka-s?.log; do
        [[ -f $f ]] && mv "$f" "$out/failover-logs/$slug-$(basename "$f")"
    done
    return 0
}

# kill_node1: the daemon first, then the link, so that it never sees the
# link go down (keepalived would enter FAULT and try a goodbye).
kill_node1() {
    if [[ $kind == ka ]]; then ka_kill 1; else cl_agent_stop 1 KILL; fi
    ip -n "$(cl_ns s1)" link set eth0 down
}

# restore_node1: s1 comes back like a rebooted node: no service address on
# its NIC (a dead agent or keepalived left it there), link up, its IPv6 node
# address again (the kernel drops IPv6 addresses with the link), then the
# agent / keepalived; until it holds its address alone and all is settled
# (RESTORED_MS: how long that took). Not in a subshell: it records PIDs.
restore_node1() {
    local ns a
    ns=$(cl_ns s1)
    for a in "${CL_SVC_ADDR[1]}/32" "${CL_SVC_ADDR6[1]}/128"; do
        ip -n "$ns" addr del "$a" dev eth0 2>/dev/null
    done
    ip -n "$ns" link set eth0 up
    ip -n "$ns" addr replace "${CL_NODE_ADDR6[1]}/64" dev eth0 nodad
    if [[ $kind == ka ]]; then ka_start 1 || return 1; else cl_agent_start 1 || return 1; fi
    RESTORED_MS=$(cl_wait_until 30000 settled)
    [[ $RESTORED_MS != timeout ]] || { log "$name: s1 did not get its address back"; return 1; }
}

# trial T: one death and return of s1; appends a row to the CSV.
trial() {
    local t=$1 t0 try fo req failed summary
    rm -f "$CL_TMP/t0" "$CL_TMP/ready" "$CL_TMP/probe.json"
    ip netns exec "$(cl_ns c)" python3 "$here/failover_probe.py" --target "${CL_SVC_ADDR[1]}" \
        --dead s1 --survivor "${CL_SVC_ADDR[2]}" --survivor "${CL_SVC_ADDR[3]}" \
        --ready "$CL_TMP/ready" --t0-file "$CL_TMP/t0" --out "$CL_TMP/probe.json" \
        --period-ms 10 --survivor-period-ms 20 --keepalive 10 --keepalive-period-ms 100 \
        --timeout-s 3 --after-s 2 --give-up-s 10 >>"$CL_TMP/probe.log" 2>&1 &
    PROBE_PID=$!
    for try in $(seq 200); do
        [[ -e $CL_TMP/ready ]] && break
        kill -0 "$PROBE_PID" 2>/dev/null || break # our child: not reaped, not recycled
        sleep 0.05
    done
    if [[ ! -e $CL_TMP/ready ]]; then
        log "$name: trial $t: the probe did not get going; its log:"
        tail -n 5 "$CL_TMP/probe.log" >&2
        probe_stop
        echo "$name,$t,,," >>"$out/failover.csv"
        return 1
    fi
    # The survivor window starts 1 s before T0. The random part spreads T0
    # over the heartbeat / advert phase: trials of equal length would
    # otherwise all kill s1 at about the same point of it.
    local pause=$((1200 + RANDOM % 1000))
    sleep "$((pause / 1000)).$(printf %03d $((pause % 1000)))"

    t0=$(cl_now_ms)
    kill_node1
    echo "$t0" >"$CL_TMP/t0"
    log "$name: trial $t/$trials: s1 dead at $t0"

    # The probe ends by itself by T0 + 10 s + 3 s (its give-up and timeout).
    for try in $(seq 400); do kill -0 "$PROBE_PID" 2>/dev/null || break; sleep 0.05; done
    probe_stop
    if [[ -s $CL_TMP/probe.json ]]; then
        summary=$(<"$CL_TMP/probe.json")
        # Commas, not blanks: an empty failover time must stay a field.
        IFS=, read -r fo req failed < <(python3 -c '
import json, sys
s = json.loads(sys.argv[1])
print("" if s["failover_ms"] is None else s["failover_ms"], s["survivor_requests"], s["survivor_failed"], sep=",")
' "$summary")
        python3 -c 'import json, sys; d = json.loads(sys.argv[3]); d.update(config=sys.argv[1], trial=int(sys.argv[2])); print(json.dumps(d))' \
            "$name" "$t" "$summary" >>"$out/failover-details.jsonl"
    else
        log "$name: trial $t: the probe wrote no summary; its log:"
        tail -n 5 "$CL_TMP/probe.log" >&2
        fo="" req="" failed=""
    fi
    echo "$name,$t,$fo,$req,$failed" >>"$out/failover.csv"
    if [[ -z $fo ]]; then
        log "$name: trial $t: NO successful request to ${CL_SVC_ADDR[1]} within 10 s"
    else
        log "$name: trial $t: failover $fo ms; survivors $req requests, $failed failed"
    fi

    restore_node1 || return 1
    log "$name: trial $t: s1 back and settled after $RESTORED_MS ms"
    sleep 0.3 # the returning owner's gratuitous ARPs reach the client
}

run_config() {
    slug=$1
    case $slug in
    peerlb100) name="peerlb 100 ms" kind=peerlb CL_INTERVAL_MS=100 ;;
    peerlb500) name="peerlb 500 ms (default)" kind=peerlb CL_INTERVAL_MS=500 ;;
    ka1000) name="keepalived 1 s (default)" kind=ka advert=1 vrrp_version=2 ;;
    # keepalived 2.2.7 refuses a fractional advert_int with VRRPv2 ("must be
    # an integer"); VRRPv3 takes 0.01 to 255 s.
    ka100) name="keepalived 100 ms (aggressive)" kind=ka advert=0.1 vrrp_version=3 ;;
    *) log "unknown configuration $slug"; return 2 ;;
    esac
    log "$name: starting"
    if ! config_up; then
        [[ $kind == ka ]] || cl_agent_logs >&2
        config_down
        return 1
    fi
    local t
    for t in $(seq "$trials"); do
        trial "$t" || { log "$name: giving up after trial $t"; break; }
    done
    config_down
}

cleanup() {
    local n pid left=()
    probe_stop
    for n in 1 2 3; do ka_kill "$n"; done
    cl_down
    # Nothing of this run may outlive it: a process whose command line names
    # the scratch dir is one of ours.
    for pid in $(grep -lF "$CL_TMP" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do
        [[ $pid == "$$" ]] && continue
        ours "$pid" && left+=("$pid")
    done
    if ((${#left[@]})); then
        echo "failover: left over, killing: ${left[*]}" >&2
        kill -KILL "${left[@]}" 2>/dev/null
    fi
    rm -rf "$CL_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- main -------------------------------------------------------------------

start=$(cl_now_ms)
echo "config,trial,failover_ms,survivor_requests,survivor_failed" >"$out/failover.csv"
: >"$out/failover-details.jsonl"
log "namespaces $CL_PREFIX*, $trials trials of: ${configs[*]}"
for c in "${configs[@]}"; do
    run_config "$c" || log "$c: failed, going on with the next configuration"
done

python3 - "$out/failover.csv" "$trials" <<'EOF' | tee "$out/failover.txt"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
order = list(dict.fromkeys(r["config"] for r in rows))
print(f"failover time (ms) of s1's address after s1 dies; {sys.argv[2]} trials per configuration")
print(f"{'config':32} {'trials':>6} {'median':>7} {'min':>6} {'max':>6} {'survivor req':>13} {'failed':>7}")
for name in order:
    rs = [r for r in rows if r["config"] == name]
    fo = [int(r["failover_ms"]) for r in rs if r["failover_ms"]]
    broken = sum(1 for r in rs if not r["survivor_requests"])  # the probe itself failed
    none = len(rs) - len(fo) - broken
    req = sum(int(r["survivor_requests"] or 0) for r in rs)
    failed = sum(int(r["survivor_failed"] or 0) for r in rs)
    cells = (f"{statistics.median(fo):>7.0f} {min(fo):>6} {max(fo):>6}" if fo else f"{'-':>7} {'-':>6} {'-':>6}")
    print(f"{name:32} {len(rs):>6} {cells} {req:>13} {failed:>7}"
          + (f"   ({none} trial(s) without a reply within 10 s)" if none else "")
          + (f"   ({broken} trial(s) not measured: see the log)" if broken else ""))
print("Survivor traffic: a new connection to s2's and to s3's address every 20 ms and 10 keep-alive")
print("connections (a request each every 100 ms), counted from T0 - 1 s to T0 + failover + 2 s.")
print("peerlb: dead_after 3, hold_down_ms 1000 (only speeds up the give-back between trials).")
print("keepalived 2.2.7: VRRP only, priorities 150/100/50, preempt (default), advert_int 1 (VRRPv2)")
print("or 0.1 (VRRPv3); garp settings left at their defaults.")
EOF
log "done in $((($(cl_now_ms) - start) / 1000)) s; $out/failover.csv"
