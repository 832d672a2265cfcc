# A peerlb cluster in network namespaces, for the integration tests, the
# demo and the benchmarks (source this file; it defines functions and sets
# nothing up by itself).
#
#   switch namespace  ${CL_PREFIX}sw : bridge br0, one veth port per host
#   servers           ${CL_PREFIX}s1..s3 : eth0 = 10.77.0.1N/24, owns 10.77.0.11N
#                     (and fd77::1N / fd77::11N); every service address on lo
#                     (CL_SERVER_COUNT servers, default 3: set it before
#                     sourcing, or call cl_server_count N). From 10 to 64
#                     servers every one is eth0 = 10.77.1.N/16, owns 10.77.2.N
#                     (fd77::1:N / fd77::2:N), and the client's eth0 is /16 too.
#   client            ${CL_PREFIX}c : eth0 = 10.77.0.100/24 / fd77::100
#
# Each server runs nginx (answers its own name in X-Server and the body,
# stores PUT uploads) and peerlb attached to eth0, pinned under its own
# directory of one private bpffs. Loads are written with peerlb-mapctl (the
# agent does it in production). Nothing outside these namespaces is touched.
#
# Needs: CL_BUILD (build dir), CL_PREFIX (unique, short), CL_TMP (scratch dir).
# CL_AGENT_MANAGED=1: the service addresses are left to the agents (as in
# production); otherwise the topology puts them in place itself.

# The servers' names and addresses, [1]..[CL_SERVER_COUNT] (cl_server_count
# keeps them in step with the count).
CL_SERVERS=(s1 s2 s3)
CL_NODE_ADDR=([1]=10.77.0.11 [2]=10.77.0.12 [3]=10.77.0.13)
CL_SVC_ADDR=([1]=10.77.0.111 [2]=10.77.0.112 [3]=10.77.0.113)
CL_NODE_ADDR6=([1]=fd77::11 [2]=fd77::12 [3]=fd77::13)
CL_SVC_ADDR6=([1]=fd77::111 [2]=fd77::112 [3]=fd77::113)
CL_UP_MAX=0       # the most servers cl_topology_up has created (cl_down removes them all)
CL_NET_LEN=24     # the IPv4 prefix of every host's eth0 (16 above 9 servers)
CL_CLIENT_ADDR=10.77.0.100
CL_CLIENT_ADDR6=fd77::100
CL_NGINX_PIDS=()
CL_AGENT_PIDS=()
CL_EXTRA_HOSTS=() # hosts added with cl_extra_host_up
CL_GROUP=239.7.7.7:7946

# cl_server_count N: N servers (1..64, the data plane's LB_MAX_NODES) from
# now on; their names and addresses follow the patterns above: up to 9,
# server N: 10.77.0.1N, service 10.77.0.11N (the tests and the demo name
# them); above 9, server N: 10.77.1.N, service 10.77.2.N, in 10.77.0.0/16.
cl_server_count() {
    [[ $1 =~ ^[1-9][0-9]?$ ]] && (($1 <= 64)) ||
        { echo "cl_server_count: 1 to 64 servers, not '$1'" >&2; return 1; }
    CL_SERVER_COUNT=$1
    local n
    CL_SERVERS=()
    CL_NODE_ADDR=() CL_SVC_ADDR=() CL_NODE_ADDR6=() CL_SVC_ADDR6=()
    CL_NET_LEN=$((CL_SERVER_COUNT <= 9 ? 24 : 16))
    for ((n = 1; n <= CL_SERVER_COUNT; n++)); do
        CL_SERVERS+=("s$n")
        if ((CL_SERVER_COUNT <= 9)); then
            CL_NODE_ADDR[n]=10.77.0.1$n
            CL_SVC_ADDR[n]=10.77.0.11$n
            CL_NODE_ADDR6[n]=fd77::1$n
            CL_SVC_ADDR6[n]=fd77::11$n
        else
            CL_NODE_ADDR[n]=10.77.1.$n
            CL_SVC_ADDR[n]=10.77.2.$n
            CL_NODE_ADDR6[n]=fd77::1:$n
            CL_SVC_ADDR6[n]=fd77::2:$n
        fi
    done
}
# cl_ids: the server numbers, "1 2 3" by default.
cl_ids() {
    local n out=()
    for ((n = 1; n <= ${CL_SERVER_COUNT:-3}; n++)); do out+=("$n"); done
    echo "${out[*]}"
}
# _cl_ids_ever: every server number a topology of this run may have had.
_cl_ids_ever() {
    local n out=() max=${CL_SERVER_COUNT:-3}
    ((CL_UP_MAX > max)) && max=$CL_UP_MAX
    for ((n = 1; n <= max; n++)); do out+=("$n"); done
    echo "${out[*]}"
}
[[ ${CL_SERVER_COUNT:-3} == 3 ]] || cl_server_count "$CL_SERVER_COUNT"

cl_ns() { echo "${CL_PREFIX}$1"; }                 # cl_ns s1 -> namespace name
cl_mac() { printf '02:77:00:00:00:%02x' "$1"; }     # server N's eth0 MAC
cl_in() { local ns; ns=$(cl_ns "$1"); shift; ip netns exec "$ns" "$@"; }
cl_pin_root() { echo "$CL_TMP/bpffs/s$1"; }

cl_mapctl() { # cl_mapctl N ARGS...: writes server N's maps
    local n=$1
    shift
    "$CL_BUILD/peerlb-mapctl" --pin-root "$(cl_pin_root "$n")" --iface eth0 "$@"
}

cl_peerlb() { # cl_peerlb N ARGS...: the CLI on server N
    local n=$1
    shift
    cl_in "s$n" "$CL_BUILD/peerlb" "$@" --pin-root "$(cl_pin_root "$n")"
}

# Creates the namespaces, links and addresses (no peerlb, no nginx).
cl_topology_up() {
    local sw n ns
    # The arrays follow CL_SERVER_COUNT even when it was set after sourcing.
    [[ ${#CL_SERVERS[@]} == "${CL_SERVER_COUNT:-3}" ]] || cl_server_count "${CL_SERVER_COUNT:-3}" ||
        return 1
    ((${CL_SERVER_COUNT:-3} > CL_UP_MAX)) && CL_UP_MAX=${CL_SERVER_COUNT:-3}
    sw=$(cl_ns sw)
    ip netns add "$sw" || return 1
    ip -n "$sw" link add br0 type bridge || return 1
    ip -n "$sw" link set br0 up
    ip -n "$sw" link set lo up

    for n in $(cl_ids); do
        cl_host_up "s$n" "$(cl_mac "$n")" || return 1
        ns=$(cl_ns "s$n")
        ip -n "$ns" addr add "${CL_NODE_ADDR[$n]}/$CL_NET_LEN" dev eth0
        ip -n "$ns" addr add "${CL_NODE_ADDR6[$n]}/64" dev eth0 nodad
        [[ ${CL_AGENT_MANAGED:-0} == 1 ]] && continue
        # The owner answers ARP/ND for its service address on the NIC; the
        # others hold every service address on lo (DESIGN 1) and stay quiet.
        ip -n "$ns" addr add "${CL_SVC_ADDR[$n]}/32" dev eth0
        ip -n "$ns" addr add "${CL_SVC_ADDR6[$n]}/128" dev eth0 nodad
        local m
        for m in $(cl_ids); do
            [[ $m == "$n" ]] && continue
            ip -n "$ns" addr add "${CL_SVC_ADDR[$m]}/32" dev lo
            ip -n "$ns" addr add "${CL_SVC_ADDR6[$m]}/128" dev lo
        done
        cl_in "s$n" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
            net.ipv4.conf.eth0.arp_ignore=1 net.ipv4.conf.eth0.arp_announce=2
    done
    cl_host_up c 02:77:00:00:00:64 || return 1
    ip -n "$(cl_ns c)" addr add "$CL_CLIENT_ADDR/$CL_NET_LEN" dev eth0
    ip -n "$(cl_ns c)" addr add "$CL_CLIENT_ADDR6/64" dev eth0 nodad
}

# cl_host_up NAME MAC: a namespace with eth0 whose peer is a bridge port.
cl_host_up() {
    local name=$1 mac=$2 ns sw
    ns=$(cl_ns "$name")
    sw=$(cl_ns sw)
    ip netns add "$ns" || return 1
    ip -n "$sw" link add "p$name" type veth peer name eth0 netns "$ns" || return 1
    ip -n "$ns" link set eth0 address "$mac"
    ip -n "$sw" link set "p$name" master br0 up
    # XDP_TX on a veth reaches the other end only if that end runs XDP.
    ip -n "$sw" link set "p$name" xdp obj "$CL_BUILD/bpf/xdp_pass.bpf.o" sec xdp || return 1
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    # veth would hand XDP partial checksums that XDP_TX never completes.
    cl_in "$name" ethtool -K eth0 tx off >/dev/null 2>&1
}

# cl_extra_host_up NAME MAC ADDR/LEN: one more host on the bridge (an
# attacker, a central balancer) with ADDR on its eth0; cl_down removes it.
cl_extra_host_up() {
    local name=$1 mac=$2 addr=$3
    CL_EXTRA_HOSTS+=("$name")
    cl_host_up "$name" "$mac" || return 1
    ip -n "$(cl_ns "$name")" addr add "$addr" dev eth0
}

# Writes nginx's config and content for server N under $CL_TMP/www/sN
# (CL_NGINX_CONNECTIONS: connections each server takes, default 1024).
cl_nginx_config() {
    local n=$1 dir=$CL_TMP/www/s$n
    mkdir -p "$dir/root/up" "$dir/tmp"
    echo "s$n" >"$dir/root/name"
    [[ -f $CL_TMP/blob ]] || head -c $((5 * 1024 * 1024)) /dev/urandom >"$CL_TMP/blob"
    ln -sf "$CL_TMP/blob" "$dir/root/blob"
    cat >"$dir/nginx.conf" <<EOF
user root;
worker_processes 1;
worker_rlimit_nofile $((${CL_NGINX_CONNECTIONS:-1024} + 64));
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections ${CL_NGINX_CONNECTIONS:-1024}; }
http {
    access_log off;
    client_body_temp_path $dir/tmp;
    proxy_temp_path $dir/tmp;
    fastcgi_temp_path $dir/tmp;
    uwsgi_temp_path $dir/tmp;
    scgi_temp_path $dir/tmp;
    keepalive_requests 10000;
    server {
        listen 80 reuseport;
        listen [::]:80 reuseport;
        root $dir/root;
        add_header X-Server s$n always;
        location = / { default_type text/plain; return 200 "s$n\n"; }
        location /up/ {
            dav_methods PUT;
            create_full_put_path on;
            client_max_body_size 64m;
        }
    }
}
EOF
}

cl_nginx_start() { # cl_nginx_start N
    local n=$1 dir=$CL_TMP/www/s$1
    cl_nginx_config "$n"
    # A plain command (not a function) in the background, so $! is nginx's
    # own PID: `ip netns exec` execs without forking.
    ip netns exec "$(cl_ns "s$n")" nginx -e "$dir/error.log" -c "$dir/nginx.conf" \
        -g 'daemon off;' &
    CL_NGINX_PIDS[$n]=$!
}

cl_nginx_stop() { # cl_nginx_stop N: ends only the nginx this file started
    local pid=${CL_NGINX_PIDS[$1]:-}
    [[ -n $pid ]] || return 0
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    CL_NGINX_PIDS[$1]=
}

# Waits until every server answers on its node address (HTTP 200).
cl_wait_ready() {
    local n try
    for n in $(cl_ids); do
        for try in $(seq 50); do
            cl_in c curl -s -o /dev/null --max-time 1 "http://${CL_NODE_ADDR[$n]}/" && break
            sleep 0.1
        done
        cl_in c curl -s -o /dev/null --max-time 1 "http://${CL_NODE_ADDR[$n]}/" ||
            { echo "server s$n does not answer" >&2; return 1; }
    done
}

# cl_peerlb_up MODE: attaches peerlb (l2 or ipip) on every server and fills
# its maps: the three nodes, the three services (v4 and v6, port 80, mode
# CL_SERVICE_MODE: l4 by default, or http with cookie keys), loads that stay
# fresh for the whole test (no agent rewrites them).
cl_peerlb_up() {
    local mode=$1 n m
    mkdir -p "$CL_TMP/bpffs"
    mountpoint -q "$CL_TMP/bpffs" || mount -t bpf bpf "$CL_TMP/bpffs" || return 1
    for n in $(cl_ids); do
        # ipip's route lookup for the outer header needs forwarding on lo
        # (bpf/forward.bpf.h, lb_route): the agent sets it, attach does not.
        if [[ $mode == ipip ]]; then
            cl_in "s$n" sysctl -qw net.ipv4.conf.lo.forwarding=1 net.ipv6.conf.lo.forwarding=1 ||
                return 1
        fi
        cl_peerlb "$n" attach --iface eth0 --forward "$mode" >/dev/null || return 1
        for m in $(cl_ids); do
            local self=()
            [[ $m == "$n" ]] && self=(--self)
            cl_mapctl "$n" node $((m - 1)) --addr "${CL_NODE_ADDR[$m]}" --mac "$(cl_mac "$m")" \
                --load 10 "${self[@]}" || return 1
            cl_mapctl "$n" service "${CL_SVC_ADDR[$m]}" 80 --mode "${CL_SERVICE_MODE:-l4}" || return 1
            cl_mapctl "$n" service "${CL_SVC_ADDR6[$m]}" 80 --mode "${CL_SERVICE_MODE:-l4}" || return 1
        done
        # The same cookie keys on every node (the agents derive them from
        # the cluster key); slot 1 signs, 0 and 2 still validate. l4
        # services use them under a SYN flood (CL_SYN_COOKIES: always).
        cl_mapctl "$n" cookie-keys --seed 7 0 1 2 || return 1
        cl_mapctl "$n" config cookie_slot 1 || return 1
        cl_mapctl "$n" config http_wscale 7 || return 1
        cl_mapctl "$n" config syn_cookies "${CL_SYN_COOKIES:-auto}" || return 1
        cl_mapctl "$n" config peer_stale_ms 3600000 || return 1
        cl_mapctl "$n" config self_stale_ms 3600000 || return 1
    done
}

# cl_set_load SLOT_NODE PCT: node N's load, as every server sees it.
cl_set_load() {
    local node=$1 pct=$2 n
    for n in $(cl_ids); do
        cl_mapctl "$n" load $((node - 1)) "$pct" || return 1
    done
}

# cl_agent_config N [EXTRA-TOML]: server N's agent configuration, load read
# from $CL_TMP/load-sN (written with cl_agent_load), heartbeat every
# ${CL_INTERVAL_MS:-100} ms, forwarding ${CL_FORWARD:-l2}, heartbeats to the
# group CL_GROUP, or by unicast to ${CL_PEERS[N]} when set (the TOML array's
# items, e.g. '"10.0.0.2", "10.0.0.3"': across routers). The benchmarks
# change more: CL_PICK (weighted), CL_ACCEPT_BELOW (50), CL_MIN_DIFFERENCE
# (20), CL_BALANCE_EXTRA (more [balance] keys),
# CL_LOAD_TOML (the whole [load] body), CL_HEALTH_PATH (/),
# CL_NODE_EXTRA (more [node] keys: weight, standby).
cl_agent_config() {
    local n=$1 extra=${2:-}
    if [[ ! -f $CL_TMP/cluster.key ]]; then # readable by root only, as the agent requires
        (umask 077 && head -c 32 /dev/urandom >"$CL_TMP/cluster.key")
    fi
    [[ -f $CL_TMP/load-s$n ]] || echo 10 >"$CL_TMP/load-s$n"
    local load_toml=${CL_LOAD_TOML:-}
    [[ -n $load_toml ]] || printf -v load_toml 'source = "file"\nfile = "%s"' "$CL_TMP/load-s$n"
    local members="group = \"$CL_GROUP\""
    [[ -n ${CL_PEERS[$n]:-} ]] && members="peers = [${CL_PEERS[$n]}]"
    cat >"$CL_TMP/s$n.toml" <<EOF
[node]
id = "s$n"
interface = "eth0"
address = "${CL_NODE_ADDR[$n]}"
services = ["${CL_SVC_ADDR[$n]}", "${CL_SVC_ADDR6[$n]}"]
state_dir = "$CL_TMP/state-s$n"
${CL_NODE_EXTRA:-}

[cluster]
$members
key_file = "$CL_TMP/cluster.key"
interval_ms = ${CL_INTERVAL_MS:-100}
dead_after = 3
${CL_CLUSTER_EXTRA:-}

[balance]
accept_below = ${CL_ACCEPT_BELOW:-50}
min_difference = ${CL_MIN_DIFFERENCE:-20}
pick = "${CL_PICK:-weighted}"
forward = "${CL_FORWARD:-l2}"
failsafe_after_ms = 500
${CL_BALANCE_EXTRA:-}

[load]
$load_toml

[health]
http_path = "${CL_HEALTH_PATH:-/}"
interval_ms = 200
timeout_ms = 200

[metrics]
listen = "127.0.0.1:9477"

[[service]]
port = 80
$extra
EOF
    chmod 644 "$CL_TMP/s$n.toml" # the agent refuses a configuration others can change
}

cl_agent_load() { echo "$2" >"$CL_TMP/load-s$1"; } # cl_agent_load N PCT

# cl_holders ADDR: the servers whose eth0 holds ADDR now ("s2 s3"), in order.
cl_holders() {
    local n addrs out=()
    for n in $(cl_ids); do
        # Read whole before matching: `ip | grep -q` under pipefail fails
        # whenever grep stops reading before ip is done writing.
        addrs=$(ip -n "$(cl_ns "s$n")" -o addr show dev eth0 2>/dev/null)
        grep -qE "inet6? ${1//./\\.}/[0-9]+ " <<<"$addrs" && out+=("s$n")
    done
    echo "${out[*]}"
}

# cl_held_by ADDR "s2 s3": exactly these servers hold ADDR on eth0.
cl_held_by() { [[ $(cl_holders "$1") == "$2" ]]; }

# cl_all_see_all: every agent sees its peers (two, by default) alive.
cl_all_see_all() {
    local n
    for n in $(cl_ids); do
        [[ $(cl_agent_cli "$n" peers --json 2>/dev/null | grep -c '"state": "alive"') == \
            $((${CL_SERVER_COUNT:-3} - 1)) ]] || return 1
    done
}

# cl_peer_count N STATE [ID_PREFIX]: how many of server N's peers are in
# STATE (alive, suspect, dead), counting only ids that start with ID_PREFIX.
cl_peer_count() {
    cl_agent_cli "$1" peers --json | python3 -c '
import json, sys
state, prefix = sys.argv[1], sys.argv[2]
print(sum(1 for p in json.load(sys.stdin) if p["state"] == state and p["id"].startswith(prefix)))
' "$2" "${3:-}"
}

# cl_cpu_ticks PID: the CPU a process used so far (utime + stime, every
# thread), in clock ticks (getconf CLK_TCK a second).
cl_cpu_ticks() {
    local stat f
    stat=$(<"/proc/$1/stat") || return 1
    read -ra f <<<"${stat##*) }" # after the command name, which may hold spaces
    echo $((f[11] + f[12]))       # fields 14 and 15 of stat(5)
}

cl_agent_start() { # cl_agent_start N: in the background, log in $CL_TMP/agent-sN.log
    local n=$1
    mkdir -p "$CL_TMP/run-s$n"
    mkdir -p "$CL_TMP/bpffs"
    mountpoint -q "$CL_TMP/bpffs" || mount -t bpf bpf "$CL_TMP/bpffs" || return 1
    mkdir -p "$(cl_pin_root "$n")"
    # A plain command in the background: $! is the agent's own PID.
    # Its incarnation counter in $CL_TMP too (never under /var/lib): kept
    # across restarts of the agent within one run.
    ip netns exec "$(cl_ns "s$n")" "$CL_BUILD/peerlb" agent -c "$CL_TMP/s$n.toml" \
        --pin-root "$(cl_pin_root "$n")" --run-dir "$CL_TMP/run-s$n" --state-dir "$CL_TMP/state-s$n" \
        >>"$CL_TMP/agent-s$n.log" 2>&1 &
    CL_AGENT_PIDS[$n]=$!
}

cl_agent_stop() { # cl_agent_stop N [SIGNAL]: ends only the agent this file started
    local pid=${CL_AGENT_PIDS[$1]:-}
    [[ -n $pid ]] || return 0
    kill "-${2:-TERM}" "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    CL_AGENT_PIDS[$1]=
}

cl_agent_cli() { # cl_agent_cli N ARGS...: the CLI against server N's agent
    local n=$1
    shift
    cl_in "s$n" "$CL_BUILD/peerlb" "$@" --pin-root "$(cl_pin_root "$n")" --run-dir "$CL_TMP/run-s$n"
}

cl_now_ms() { date +%s%3N; }

# cl_wait_until TIMEOUT_MS COMMAND...: polls COMMAND every 20 ms; prints the
# ms waited, or "timeout" (and fails).
cl_wait_until() {
    local limit=$1 start
    shift
    start=$(cl_now_ms)
    while ! "$@" >/dev/null 2>&1; do
        (($(cl_now_ms) - start > limit)) && { echo timeout; return 1; }
        sleep 0.02
    done
    echo $(($(cl_now_ms) - start))
}

# cl_log_ms N PATTERN [AFTER_MS]: epoch ms of the first line of server N's
# agent log that matches PATTERN (Python regex) and is stamped at or after
# AFTER_MS: timings measured by the agents themselves, not by polling.
cl_log_ms() {
    python3 -c '
import datetime, re, sys
path, pattern, after = sys.argv[1], re.compile(sys.argv[2]), int(sys.argv[3])
for line in open(path, errors="replace"):
    m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) ", line)
    if not m or not pattern.search(line):
        continue
    ms = int(datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp() * 1000)
    if ms >= after:
        print(ms)
        break
' "$CL_TMP/agent-s$1.log" "$2" "${3:-0}"
}

cl_agent_logs() { # the end of every agent's log, for a failing test's output
    local n
    for n in $(cl_ids); do
        echo "--- agent s$n log (last 40 lines)"
        tail -n 40 "$CL_TMP/agent-s$n.log" 2>/dev/null
    done
}

cl_peerlb_down() {
    local n
    for n in $(_cl_ids_ever); do
        [[ -e $(cl_pin_root "$n")/eth0/xdp_link ]] && cl_peerlb "$n" detach --iface eth0 >/dev/null
    done
    return 0
}

# Removes everything cl_* created; safe to call more than once, on any path.
cl_down() {
    local n servers=()
    for n in $(_cl_ids_ever); do cl_agent_stop "$n"; done
    for n in $(_cl_ids_ever); do
        cl_nginx_stop "$n"
        servers+=("s$n")
    done
    cl_peerlb_down 2>/dev/null
    for n in "${servers[@]}" c "${CL_EXTRA_HOSTS[@]}" sw; do
        ip netns del "$(cl_ns "$n")" 2>/dev/null
    done
    mountpoint -q "$CL_TMP/bpffs" 2>/dev/null && umount "$CL_TMP/bpffs"
    return 0
}
