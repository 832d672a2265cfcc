# Shared service addresses (DESIGN.md section 5b) in namespaces, on top of
# cluster.sh (source that first; this file defines functions only).
#
# ECMP delivery:
#   router  ${CL_PREFIX}r : eth0 on the bridge = 10.77.0.1, eth1 = 10.78.0.1
#           towards the client; BIRD 2 with a BGP session to every server,
#           their routes merged into one ECMP route (merge paths) and
#           fib_multipath_hash_policy = 1 (flows hashed on L4 too)
#   client  ${CL_PREFIX}e : eth0 = 10.78.0.100 (more client addresses with
#           sh_client_addresses), default route via the router
#   servers cluster.sh's, each with BIRD 2: protocol "peerlb" (disabled at
#           start; the agent enables it) holds the shared address, exported
#           to the router with the server as next hop
# Flood delivery: the client on the bridge (cluster.sh's c) reaches the
# shared address through a multicast MAC (static neighbour entry), which
# the bridge floods to every server.
#
# Needs what cluster.sh needs. Nothing outside these namespaces is touched;
# every BIRD started here is ended by its PID (sh_down).

SH_ADDR=10.79.0.100       # the shared address (ECMP: routed by the router)
SH_FLOOD_ADDR=10.77.0.200 # the shared address of the flood variant (on the segment)
SH_FLOOD_MAC=01:00:5e:4d:00:c8
SH_ROUTER_ADDR=10.77.0.1
SH_CLIENT_ADDR=10.78.0.100
SH_AS_ROUTER=65000
SH_AS_NODES=65001
declare -A SH_BIRD_PIDS=()

sh_bird_ctl() { echo "$CL_TMP/bird-$1.ctl"; } # sh_bird_ctl r|sN

# sh_topology_up: cluster.sh's servers (agent-managed addresses), the
# router and the client beyond it.
sh_topology_up() {
    CL_AGENT_MANAGED=1 cl_topology_up || return 1
    local r e n
    cl_extra_host_up r 02:77:00:00:00:fe "$SH_ROUTER_ADDR/24" || return 1
    r=$(cl_ns r)
    e=$(cl_ns e)
    CL_EXTRA_HOSTS+=(e)
    ip netns add "$e" || return 1
    ip -n "$r" link add eth1 type veth peer name eth0 netns "$e" || return 1
    ip -n "$r" addr add 10.78.0.1/16 dev eth1 # the client's extra addresses too
    ip -n "$r" link set eth1 up
    ip -n "$e" link set lo up
    ip -n "$e" link set eth0 up
    ip -n "$e" addr add "$SH_CLIENT_ADDR/24" dev eth0
    ip -n "$e" route add default via 10.78.0.1
    ip netns exec "$r" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1 \
        net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 || return 1
    for n in $(cl_ids); do
        ip -n "$(cl_ns "s$n")" route add 10.78.0.0/16 via "$SH_ROUTER_ADDR" || return 1
    done
}

# sh_client_addresses COUNT: 10.78.1.1 .. 10.78.1.COUNT on the client too
# (connections spread over many buckets); prints them comma-separated.
sh_client_addresses() {
    local i out=()
    for ((i = 1; i <= $1; i++)); do
        ip -n "$(cl_ns e)" addr add "10.78.1.$i/16" dev eth0 noprefixroute 2>/dev/null
        out+=("10.78.1.$i")
    done
    local IFS=,
    echo "${out[*]}"
}

# sh_bird_node_config N: server N's BIRD configuration, as the README shows.
sh_bird_node_config() {
    local n=$1
    cat >"$CL_TMP/bird-s$n.conf" <<EOF
router id ${CL_NODE_ADDR[$n]};
protocol device {}
# The shared addresses: announced while the agent enables this protocol.
protocol static peerlb {
    disabled yes;
    ipv4;
    route $SH_ADDR/32 blackhole;
}
protocol bgp uplink {
    local ${CL_NODE_ADDR[$n]} as $SH_AS_NODES;
    neighbor $SH_ROUTER_ADDR as $SH_AS_ROUTER;
    hold time 3; keepalive time 1; connect retry time 1;
    ipv4 { import none; export where proto = "peerlb"; next hop self; };
}
EOF
}

# sh_bird_router_config: BGP with every server that may come up, routes
# merged into one multipath route in the kernel.
sh_bird_router_config() {
    local n
    {
        echo "router id $SH_ROUTER_ADDR;"
        echo "protocol device {}"
        echo "protocol kernel { ipv4 { import none; export all; }; merge paths on; }"
        for n in 1 2 3 4 5 6 7 8 9; do
            cat <<EOF
protocol bgp s$n {
    local $SH_ROUTER_ADDR as $SH_AS_ROUTER;
    neighbor 10.77.0.1$n as $SH_AS_NODES;
    hold time 3; keepalive time 1; connect retry time 1;
    ipv4 { import all; export none; };
}
EOF
        done
    } >"$CL_TMP/bird-r.conf"
}

# sh_bird_start r|sN: BIRD in that namespace, in the foreground of a
# background job so that its PID is known.
sh_bird_start() {
    local name=$1
    ip netns exec "$(cl_ns "$name")" bird -f -c "$CL_TMP/bird-$name.conf" -s "$(sh_bird_ctl "$name")" \
        -P "$CL_TMP/bird-$name.pid" >>"$CL_TMP/bird-$name.log" 2>&1 &
    SH_BIRD_PIDS[$name]=$!
}

sh_bird_stop() { # sh_bird_stop r|sN [SIGNAL]: ends only the BIRD this file started
    local pid=${SH_BIRD_PIDS[$1]:-}
    [[ -n $pid ]] || return 0
    kill "-${2:-TERM}" "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    SH_BIRD_PIDS[$1]=
}

# sh_birds_up: the router's BIRD and every server's.
sh_birds_up() {
    local n
    sh_bird_router_config
    sh_bird_start r || return 1
    for n in $(cl_ids); do
        sh_bird_node_config "$n"
        sh_bird_start "s$n" || return 1
    done
}

# sh_nexthops: the servers the router's route to SH_ADDR goes to now
# ("s1 s2 s3"), sorted; empty when there is no route.
sh_nexthops() {
    ip -n "$(cl_ns r)" route show "$SH_ADDR/32" 2>/dev/null | python3 -c '
import re, sys
hops = sorted(set("s" + m.group(1) for m in re.finditer(r"via 10\.77\.0\.1(\d)", sys.stdin.read())))
print(" ".join(hops))'
}
sh_nexthops_are() { [[ $(sh_nexthops) == "$*" ]]; }

# sh_flood_client_up: the flood variant's client (cluster.sh's c on the
# bridge) sends to SH_FLOOD_ADDR at a multicast MAC; the bridge floods it.
# The bucket table as the agents of SH_ACTIVE (server numbers, set by the
# test: the ones running now) show it.
SH_ACTIVE=()
# sh_table_of N: "VERSION s1=OWNED s2=OWNED ..." as server N's agent shows it.
sh_table_of() {
    cl_agent_cli "$1" buckets --json 2>/dev/null | python3 -c '
import json, sys
t = json.load(sys.stdin)
print(t["version"], " ".join(f"{k}={v}" for k, v in sorted(t["owned"].items())))'
}
# sh_tables_agree: every active server shows the same version and shares.
sh_tables_agree() {
    local first="" n t
    for n in "${SH_ACTIVE[@]}"; do
        t=$(sh_table_of "$n") || return 1
        [[ -n $t && ${t%% *} != 0 ]] || return 1
        [[ -z $first ]] && first=$t
        [[ $t == "$first" ]] || return 1
    done
}
# sh_owned_by N: the buckets server N owns, as the first active server says.
sh_owned_by() { sh_table_of "${SH_ACTIVE[0]}" | tr ' ' '\n' | sed -n "s/^s$1=//p"; }

sh_flood_client_up() {
    ip -n "$(cl_ns sw)" link set br0 type bridge mcast_snooping 0 || return 1
    ip -n "$(cl_ns c)" neigh replace "$SH_FLOOD_ADDR" lladdr "$SH_FLOOD_MAC" dev eth0 nud permanent
}

sh_down() {
    local name
    for name in "${!SH_BIRD_PIDS[@]}"; do sh_bird_stop "$name"; done
    cl_down
}
