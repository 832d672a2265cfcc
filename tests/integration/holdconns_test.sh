#!/usr/bin/env bash
# peerlb-holdconns (tools/bench/holdconns.cpp) against nginx, a namespace
# pair joined by a veth (client hc<PID>a: 10.250.0.1 plus source addresses
# 10.250.0.11.., server hc<PID>b: 10.250.0.2):
#   1. N keep-alive connections, spread over the source addresses, all open
#      and answering for HOLD_S seconds: none lost, all first answered by s1,
#      short connections answered; SIGUSR1 writes a snapshot;
#   2. a server whose X-Server changes from one answer to the next on the
#      same connection (port 81): every connection counted in server_changed;
#      SIGTERM ends the tool with exit code 0 and the final JSON on stdout;
#   3. nginx SIGKILLed: every connection counted lost (reset or eof), new
#      connections counted failed.
# Usage: holdconns_test.sh BUILD_DIR
# The defaults keep it short (200 connections); a bigger run:
#   HOLDCONNS_N=10000 HOLDCONNS_HOLD_S=30 HOLDCONNS_EVERY_MS=1000 holdconns_test.sh build
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/check.sh"

build=$(cd "${1:?usage: holdconns_test.sh BUILD_DIR}" && pwd)
hold=$build/peerlb-holdconns
name=holdconns_test
require_root "$name"
command -v nginx >/dev/null || { echo "$name: SKIP: no nginx"; exit 77; }
[[ -x $hold ]] || { echo "$name: $hold is not built (target peerlb-holdconns)"; exit 1; }

N=${HOLDCONNS_N:-200}
HOLD_S=${HOLDCONNS_HOLD_S:-4}
EVERY_MS=${HOLDCONNS_EVERY_MS:-200}
SOURCES=${HOLDCONNS_SOURCES:-8}
OPEN_RATE=${HOLDCONNS_OPEN_RATE:-2000}
NEW_RATE=20

ns_c="hc$$a"
ns_s="hc$$b"
tmp=$(mktemp -d /tmp/peerlb-holdconns.XXXXXX)
hold_pids=()
cleanup() {
    local pid ns
    for pid in "${hold_pids[@]}"; do kill -9 "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
    # Whatever still runs in our namespaces (nginx's master and workers).
    for ns in "$ns_c" "$ns_s"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    done
    wait 2>/dev/null
    ip netns del "$ns_c" 2>/dev/null
    ip netns del "$ns_s" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# js FILE EXPR: EXPR over the JSON object s of FILE (booleans as 1/0).
js() {
    python3 -c 'import json, sys
s = json.load(open(sys.argv[1]))
r = eval(sys.argv[2])
print(int(r) if isinstance(r, bool) else r)' "$1" "$2"
}
is() { [[ $(js "$1" "$2" 2>/dev/null) == 1 ]]; }
# wait_until SECONDS FILE EXPR
wait_until() {
    local end=$((SECONDS + $1))
    while ((SECONDS < end)); do
        is "$2" "$3" && return 0
        sleep 0.2
    done
    is "$2" "$3"
}
# expect FILE EXPR: like is, printing the status when it does not hold.
expect() {
    is "$1" "$2" && return 0
    echo "    not $2 in: $(cat "$1" 2>/dev/null)"
    return 1
}

echo "$name: namespaces $ns_c $ns_s, $N connections, $HOLD_S s"
ip netns add "$ns_c"
ip netns add "$ns_s"
ip -n "$ns_c" link add vc type veth peer name vs netns "$ns_s"
ip -n "$ns_c" addr add 10.250.0.1/24 dev vc
sources=()
for i in $(seq 1 "$SOURCES"); do
    ip -n "$ns_c" addr add "10.250.$((i / 240)).$((10 + i % 240))/32" dev vc
    sources+=("10.250.$((i / 240)).$((10 + i % 240))")
done
ip -n "$ns_s" addr add 10.250.0.2/24 dev vs
for ns in "$ns_c" "$ns_s"; do ip -n "$ns" link set lo up; done
ip -n "$ns_c" link set vc up
ip -n "$ns_s" link set vs up
# Source addresses beyond 10.250.0.0/24 come back through a route.
ip -n "$ns_s" route add 10.250.0.0/16 dev vs
source_list=$(IFS=,; echo "${sources[*]}")

mkdir -p "$tmp/nginx"
cat >"$tmp/nginx/nginx.conf" <<EOF
user root;
worker_processes 2;
worker_rlimit_nofile 40000;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path $tmp/nginx;
    proxy_temp_path $tmp/nginx;
    fastcgi_temp_path $tmp/nginx;
    uwsgi_temp_path $tmp/nginx;
    scgi_temp_path $tmp/nginx;
    keepalive_requests 100000;
    keepalive_timeout 300s;
    default_type text/plain;
    server {
        listen 80 reuseport backlog=4096;
        location = / { add_header X-Server s1 always; return 200 "s1\n"; }
    }
    # A "server" that changes with every answer of a connection.
    server {
        listen 81 reuseport;
        location = / {
            add_header X-Server s\$connection_requests always;
            return 200 "s\$connection_requests\n";
        }
    }
}
EOF
# `ip netns exec` execs nginx: its master is in the server namespace, which
# the cleanup empties.
ip netns exec "$ns_s" nginx -e "$tmp/nginx/error.log" -c "$tmp/nginx/nginx.conf" -g 'daemon off;' &
disown $! # killed by SIGKILL on purpose: no "Killed" line from bash
for _ in $(seq 50); do
    ip netns exec "$ns_c" bash -c 'exec 3<>/dev/tcp/10.250.0.2/80' 2>/dev/null && break
    sleep 0.1
done

echo "$name: 1. $N connections held"
st=$tmp/status.json
ip netns exec "$ns_c" "$hold" --target 10.250.0.2 --connections "$N" --open-rate "$OPEN_RATE" \
    --request-every-ms "$EVERY_MS" --new-rate "$NEW_RATE" --timeout-ms 5000 --status "$st" \
    --source-addresses "$source_list" >"$tmp/hold.out" 2>"$tmp/hold.err" &
hold_pid=$!
hold_pids+=("$hold_pid")
check "status file written at start" wait_until 5 "$st" 's["target"] == '"$N"
if ! kill -0 "$hold_pid" 2>/dev/null; then
    echo "    peerlb-holdconns ended: $(cat "$tmp/hold.err")"
    check_summary "$name"
    exit 1
fi
check "all $N open" wait_until $((N / OPEN_RATE + 15)) "$st" 's["all_open"] and s["open"] == '"$N"
start_ok=$(js "$st" 's["requests_ok"]')

# Meanwhile: one connection per answer from a different "server".
st81=$tmp/status81.json
ip netns exec "$ns_c" "$hold" --target 10.250.0.2:81 --connections 20 --request-every-ms 50 --new-rate 0 \
    --status "$st81" >"$tmp/hold81.out" 2>"$tmp/hold81.err" &
hold81_pid=$!
hold_pids+=("$hold81_pid")

sleep "$HOLD_S"
js "$st" '"    open %d lost %d, opened in %ss, %s requests/s, tool CPU %s %% RSS %s MiB, new %d answered %d failed" % (s["open"], s["lost"], s["all_open_s"], s["requests_per_s"], s["cpu_percent"], s["max_rss_mib"], s["new_answered"], s["new_failed"])'
check "all still open, none lost" expect "$st" 's["open"] == '"$N"' and s["lost"] == 0 and s["open_failed"] == 0'
check "none changed server" expect "$st" 's["server_changed"] == 0'
check "all first answered by s1" expect "$st" 's["per_server"] == {"s1": '"$N"'}'
# Jittered around EVERY_MS: at least 60 % of the nominal count (loaded CI).
check "requests answered during the hold" \
    expect "$st" 's["requests_ok"] - '"$start_ok"' >= 0.6 * '"$N"' * '"$HOLD_S"' * 1000 / '"$EVERY_MS"
check "short connections answered, none failed" expect "$st" 's["new_answered"] > 0 and s["new_failed"] == 0'
check "short connections answered by s1" expect "$st" 'set(s["new_per_server"]) == {"s1"}'
spread=$(ip netns exec "$ns_c" ss -Htn state established '( dport = :80 )' | awk '{split($3, a, ":"); print a[1]}' | sort -u | wc -l)
check "connections spread over the $SOURCES source addresses ($spread)" test "$spread" -eq "$SOURCES"
kill -USR1 "$hold_pid"
check "SIGUSR1: a snapshot" wait_until 3 "$st" 's["snapshots"] == 1 and not s["final"]'

echo "$name: 2. answers from another server on the same connection"
check "every connection counted in server_changed" wait_until 5 "$st81" 's["server_changed"] == 20 and s["lost"] == 0'
kill -TERM "$hold81_pid"
wait "$hold81_pid"
rc=$?
check "SIGTERM: exit code 0" test "$rc" -eq 0
check "SIGTERM: the final JSON on stdout" expect "$tmp/hold81.out" 's["final"] and s["server_changed"] == 20'
check "SIGTERM: the final status file" expect "$st81" 's["final"]'

echo "$name: 3. nginx SIGKILLed"
for pid in $(ip netns pids "$ns_s"); do kill -9 "$pid"; done
check "all $N lost" wait_until 10 "$st" 's["open"] == 0 and s["lost"] == '"$N"
check "lost by reset or eof" \
    expect "$st" 's["lost_by_reason"]["reset"] + s["lost_by_reason"]["eof"] == '"$N"
check "lost per server: s1" expect "$st" 's["lost_per_server"] == {"s1": '"$N"'}'
check "lost ones not reopened" expect "$st" 's["opening"] == 0 and s["opened"] == '"$N"
check "new connections failed" wait_until 3 "$st" 's["new_failed_by_reason"]["connect"] > 0'
kill -TERM "$hold_pid"
wait "$hold_pid"
rc=$?
check "exit code 0 with connections lost" test "$rc" -eq 0
check "final JSON on stdout" expect "$tmp/hold.out" 's["final"] and s["lost"] == '"$N"
[[ -s $tmp/hold.err ]] && { echo "    stderr:"; sed 's/^/    /' "$tmp/hold.err"; }
hold_pids=()

check_summary "$name"
