# Pieces the namespace benchmarks share (source after
# tools/testbed/cluster.sh): the central HAProxy baseline in its own
# namespace, wrk output parsing. Nothing outside the run's namespaces is
# touched.

BENCH_LB_ADDR=10.77.0.50 # HAProxy's frontend, in namespace ${CL_PREFIX}lb
BENCH_HAPROXY_PID=

# bench_lb_up: the load balancer's namespace on the same bridge.
bench_lb_up() {
    cl_host_up lb 02:77:00:00:00:32 || return 1
    ip -n "$(cl_ns lb)" addr add "$BENCH_LB_ADDR/24" dev eth0
}

# bench_haproxy_start [BALANCE [WEIGHT...]]: HAProxy (Debian's) in TCP mode
# over the servers' node addresses, port 80: the central balancer a user
# would otherwise deploy. TCP mode, like peerlb, balances connections, not
# requests. BALANCE: HAProxy's `balance` algorithm (default leastconn, e.g.
# "random(2)"); WEIGHTs: one per server, s1 first (HAProxy's default, 1, when
# none is given).
bench_haproxy_start() {
    local dir=$CL_TMP/haproxy n balance=${1:-leastconn} weights=("${@:2}")
    mkdir -p "$dir"
    {
        cat <<EOC
global
    # Fits the file limit of a default shell (2 fds per connection).
    maxconn 8000
    nbthread 2
    pidfile $dir/haproxy.pid
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend web
    bind $BENCH_LB_ADDR:80
    default_backend servers
backend servers
    balance $balance
EOC
        for n in $(cl_ids); do
            echo "    server s$n ${CL_NODE_ADDR[$n]}:80${weights[n - 1]:+ weight ${weights[n - 1]}}"
        done
    } >"$dir/haproxy.cfg"
    # -db: foreground, so $! is HAProxy's own PID (ip netns exec execs).
    ip netns exec "$(cl_ns lb)" haproxy -db -f "$dir/haproxy.cfg" >>"$dir/haproxy.log" 2>&1 &
    BENCH_HAPROXY_PID=$!
    local try
    for try in $(seq 50); do
        cl_in c curl -s -o /dev/null --max-time 1 "http://$BENCH_LB_ADDR/health" && return 0
        sleep 0.1
    done
    echo "haproxy does not answer; its log:" >&2
    cat "$dir/haproxy.log" >&2
    return 1
}

bench_haproxy_stop() {
    [[ -n $BENCH_HAPROXY_PID ]] || return 0
    kill "$BENCH_HAPROXY_PID" 2>/dev/null && wait "$BENCH_HAPROXY_PID" 2>/dev/null
    BENCH_HAPROXY_PID=
}

# bench_client_tuning: the usual settings of a load-generating client, in
# the client namespace. One client opening ~10 000 connections a second
# fills its ephemeral ports with TIME_WAIT sockets (when it closes first),
# and connect() then spends its time searching for a free port: throughput
# collapses after ~100 000 connections, with or without any XDP program.
bench_client_tuning() {
    cl_in c sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1
}

# bench_log MESSAGE: progress on stderr, stamped.
bench_log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
