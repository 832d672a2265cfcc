#!/usr/bin/env bash
# The CLI contract of attach/detach/status/flows/stats (DESIGN section 6):
# bad input gives one line on stderr and a non-zero exit and leaves nothing
# behind; good input attaches, shows and removes everything.
# Bad input everywhere: every subcommand with wrong arguments (exit 2),
# missing privileges (user nobody), no bpffs, no interface, no agent; `set`
# refused by a running agent; `peerlb agent` with invalid configurations
# (and a data plane it cannot attach) changes nothing on the system.
# Usage: cli_test.sh BUILD_DIR. Runs inside a namespace it creates.
set -uo pipefail

build=${1:?usage: cli_test.sh BUILD_DIR}
peerlb=$build/peerlb
pass_obj=$build/bpf/xdp_pass.bpf.o

source "$(dirname "$0")/lib/check.sh"
require_root cli_test

ns="plbcli$$"
tmp=$(mktemp -d /tmp/peerlb-cli.XXXXXX)
bpffs=$tmp/bpffs
root=$bpffs/peerlb

agent_pid=
cleanup() {
    if [[ -n $agent_pid ]]; then kill "$agent_pid" 2>/dev/null; wait "$agent_pid" 2>/dev/null; fi
    ip netns del "$ns" 2>/dev/null
    umount "$bpffs" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

run() { # run ARGS...: runs peerlb in the namespace; sets rc, out, err
    out=$(ip netns exec "$ns" "$peerlb" "$@" 2>"$tmp/err")
    rc=$?
    err=$(cat "$tmp/err")
}

one_line_error() { # exit non-zero, one stderr line matching $1, nothing on stdout
    [[ $rc -ne 0 && -z $out && $(printf '%s\n' "$err" | wc -l) -eq 1 && $err == *"$1"* ]] ||
        { echo "    rc=$rc out='$out' err='$err'"; return 1; }
}

xdp_on() { ip -n "$ns" -d link show dev "$1" | grep -q 'prog/xdp'; }
tc_on() { ip netns exec "$ns" tc filter show dev "$1" egress | grep -q tc_mss_clamp; }

mkdir -p "$bpffs"
mount -t bpf bpf "$bpffs" || { echo "cli_test: cannot mount bpffs"; exit 1; }
ip netns add "$ns"
ip -n "$ns" link add va type veth peer name vb
ip -n "$ns" link add vc type veth peer name vd
for i in va vb vc vd lo; do ip -n "$ns" link set "$i" up; done

echo "cli_test: bad input"
run attach --iface nosuch0 --pin-root "$root"
check "missing interface: one-line error" one_line_error "interface 'nosuch0' does not exist"
check "missing interface: pin root untouched" test ! -e "$root"

run attach --iface va --pin-root "$tmp/not-bpffs"
check "pin root off bpffs: one-line error" one_line_error "is not on a bpf filesystem"
check "pin root off bpffs: nothing created" test ! -e "$tmp/not-bpffs"

run attach --iface va --pin-root "$root" --forward bogus
check "bad --forward value: usage error, exit 2" bash -c "[[ $rc -eq 2 ]]"
check "bad --forward value: one line" one_line_error "--forward"

run attach --pin-root "$root"
check "attach without --iface" one_line_error "needs --iface"

run detach --iface va --pin-root "$root"
check "detach when not attached" one_line_error "not attached to va"

run status --pin-root "$root"
check "status with nothing attached" one_line_error "no peerlb data plane"

# lo has no native XDP: the link fails after the maps were pinned, so this
# checks the rollback.
run attach --iface lo --pin-root "$root" --xdp-mode native
check "native XDP unsupported: one-line error" one_line_error "attach XDP to lo in native mode"
check "native XDP unsupported: rolled back" test ! -e "$root"

ip -n "$ns" link set dev vc xdp obj "$pass_obj" sec xdp
run attach --iface vc --pin-root "$root"
check "foreign XDP program: one-line error" one_line_error "another XDP program"
check "foreign XDP program: left in place" xdp_on vc
check "foreign XDP program: nothing pinned" test ! -e "$root/vc"

echo "cli_test: attach, inspect, detach"
run attach --iface va --pin-root "$root" --forward ipip
check "attach succeeds" bash -c "[[ $rc -eq 0 && -z '$err' ]]"
check "XDP attached" xdp_on va
check "TC egress attached" tc_on va
check "link and maps pinned" test -e "$root/va/xdp_link" -a -e "$root/va/lb_flows" -a -e "$root/va/lb_config"
prog_before=$(ip -n "$ns" -d link show dev va | grep -o 'prog/xdp id [0-9]*')

run attach --iface va --pin-root "$root"
check "attach twice: one-line error" one_line_error "already attached to va"
check "attach twice: same program still attached" \
    bash -c "[[ '$(ip -n "$ns" -d link show dev va | grep -o 'prog/xdp id [0-9]*')' == '$prog_before' ]]"

run status --pin-root "$root" --json
check "status --json is JSON only" bash -c "python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"attached\"] and d[\"config\"][\"forward\"]==\"ipip\" and d[\"tc_egress\"]' <<<'$out'"
# Each attached program with what the verifier reported: within the budget.
check "status --json: verified_insns of the four programs, each within 200000" \
    bash -c "python3 -c 'import json,sys; p=json.load(sys.stdin)[\"programs\"]; assert sorted(x[\"hook\"] for x in p)==[\"sock_state\",\"tc_egress\",\"tc_ingress\",\"xdp\"], p; assert all(0 < x[\"verified_insns\"] <= 200000 for x in p), p' <<<'$out'"
sock_state_id=$(python3 -c 'import json,sys; print([x["id"] for x in json.load(sys.stdin)["programs"] if x["hook"]=="sock_state"][0])' <<<"$out")
run flows --pin-root "$root" --json
check "flows --json is an empty JSON array" bash -c "python3 -c 'import json,sys; assert json.load(sys.stdin)==[]' <<<'$out'"
run stats --pin-root "$root" --json
check "stats --json names every counter" bash -c "python3 -c 'import json,sys; c=json.load(sys.stdin)[\"counters\"]; assert \"syn_forward_weighted\" in c and \"pass_orphan\" in c' <<<'$out'"
check "stats --json gives each counter its kind" bash -c "python3 -c 'import json,sys; c=json.load(sys.stdin)[\"counters\"]; assert c[\"syn_forward_weighted\"][\"kind\"]==\"forwarded\" and c[\"http_local\"][\"kind\"]==\"kept\" and c[\"pass_orphan\"][\"kind\"]==\"passed\" and c[\"drop_forward_error\"][\"kind\"]==\"dropped\"' <<<'$out'"
check "bpftool shows named fields" bash -c "bpftool map dump pinned '$root/va/lb_config' | grep -q accept_below_bp"

run attach --iface vb --pin-root "$root"
run status --pin-root "$root"
check "two interfaces: status asks for --iface" one_line_error "pass --iface"
run detach --iface vb --pin-root "$root"

run detach --iface va --pin-root "$root"
check "detach succeeds" bash -c "[[ $rc -eq 0 ]]"
check "detach removed XDP" bash -c "! ip -n '$ns' -d link show dev va | grep -q prog/xdp"
check "detach removed TC filter" bash -c "! ip netns exec '$ns' tc filter show dev va egress | grep -q tc_mss_clamp"
check "detach removed pins" test ! -e "$root/va"
# The kernel frees a tracing program after an RCU grace period: give it 5 s.
check "detach ended the socket state tracepoint" bash -c "for i in \$(seq 50); do bpftool prog show id '$sock_state_id' >/dev/null 2>&1 || exit 0; sleep 0.1; done; exit 1"

echo "cli_test: wrong arguments (usage errors)"
usage_error() { # exit 2, one stderr line matching $1, nothing on stdout
    [[ $rc -eq 2 ]] || { echo "    rc=$rc (want 2) err='$err'"; return 1; }
    one_line_error "$1"
}
# what | expected in the message | arguments (split on blanks)
while IFS='|' read -r what expect args; do
    [[ -n $what ]] || continue
    # shellcheck disable=SC2086 # the arguments are meant to be split
    run $args
    check "$what" usage_error "$expect"
done <<USAGE
no subcommand|subcommand|
unknown subcommand|subcommand|frobnicate
attach: unknown option|--bogus|attach --iface va --bogus
detach: unknown option|--bogus|detach --iface va --bogus
status: unknown option|--bogus|status --bogus
flows: unknown option|--bogus|flows --json --bogus
stats: unknown option|--bogus|stats --bogus
peers: unknown option|--bogus|peers --bogus
set: unknown option|--bogus|set --bogus balance.accept_below 40
top: unknown option|--bogus|top --bogus
agent: unknown option|--bogus|agent -c $tmp/none.toml --bogus
status: stray argument|extra|status extra
attach: --iface without its value|--iface|attach --iface
detach: --iface without its value|--iface|detach --iface
status: --pin-root without its value|--pin-root|status --pin-root
flows: --iface without its value|--iface|flows --iface
stats: --run-dir without its value|--run-dir|stats --run-dir
peers: --run-dir without its value|--run-dir|peers --run-dir
agent: -c without its value|--config|agent -c
agent: --state-dir without its value|--state-dir|agent -c $tmp/none.toml --state-dir
agent: no -c at all|--config|agent
attach: --forward without its value|--forward|attach --iface va --forward
attach: bad --xdp-mode value|--xdp-mode|attach --iface va --xdp-mode turbo
attach: --xdp-mode without its value|--xdp-mode|attach --iface va --xdp-mode
set: no key and no value|key|set
set: key without a value|value|set balance.accept_below
set: a third argument|not expected|set balance.accept_below 40 41
top: --interval-ms 0|--interval-ms|top --interval-ms 0
top: --interval-ms under 100|--interval-ms|top --interval-ms 99
top: --interval-ms not a number|--interval-ms|top --interval-ms soon
top: --interval-ms without its value|--interval-ms|top --interval-ms
top: --frames negative|--frames|top --frames -1
USAGE
check "usage errors attached nothing" bash -c "! ip -n '$ns' -d link show dev va | grep -q prog/xdp"

echo "cli_test: no bpffs, no interface, no agent"
for cmd in status flows stats; do
    run "$cmd" --pin-root "$tmp/not-bpffs"
    check "$cmd: pin root off bpffs: one-line error" one_line_error "is not on a bpf filesystem"
done
run detach --iface va --pin-root "$tmp/not-bpffs"
check "detach: pin root off bpffs: one-line error" one_line_error "is not on a bpf filesystem"
check "pin root off bpffs: still nothing created" test ! -e "$tmp/not-bpffs"
mkdir -p "$root"
for cmd in status flows stats; do
    run "$cmd" --iface nosuch0 --pin-root "$root"
    check "$cmd --iface nosuch0: one-line error" one_line_error "no peerlb data plane for nosuch0"
done
run detach --iface nosuch0 --pin-root "$root"
check "detach --iface nosuch0: one-line error" one_line_error "not attached to nosuch0"
run peers --run-dir "$tmp/no-agent"
check "peers, no agent: one-line error" one_line_error "the agent is not running"
run peers --json --run-dir "$tmp/no-agent"
check "peers --json, no agent: one-line error, no JSON" one_line_error "the agent is not running"
run set balance.accept_below 40 --run-dir "$tmp/no-agent"
check "set, no agent: one-line error" one_line_error "the agent is not running"
run top --frames 1 --run-dir "$tmp/no-agent"
check "top, no agent: one-line error" one_line_error "the agent is not running"
check "no agent: the run directory was not created" test ! -e "$tmp/no-agent"

echo "cli_test: peerlb agent with an invalid configuration changes nothing"
(umask 077 && head -c 32 /dev/urandom >"$tmp/cluster.key")
echo 10 >"$tmp/load"
ip -n "$ns" addr add 10.99.0.1/24 dev va
# agent_config FILE IFACE [EXTRA-TOML]: a valid configuration (plus EXTRA).
agent_config() {
    printf '%s\n' '[node]' 'id = "c1"' "interface = \"$2\"" 'address = "10.99.0.1"' \
        'services = ["10.99.0.10"]' '' '[cluster]' 'group = "239.7.7.7:7946"' \
        "key_file = \"$tmp/cluster.key\"" 'interval_ms = 100' '' '[load]' 'source = "file"' \
        "file = \"$tmp/load\"" '' '[health]' 'enabled = false' '' '[[service]]' 'port = 80' \
        "${3:-}" >"$1"
    chmod 644 "$1" # the agent refuses a configuration others can change
}
# Everything an agent would change: XDP programs and TC filters, addresses,
# ARP sysctls, pin roots on the bpffs, the run directory and its control socket.
host_state() {
    local i
    ip -n "$ns" -d link show | grep -oE '^[0-9]+: [^:]+|prog/xdp id [0-9]+'
    ip -n "$ns" -o addr show | awk '{print $2, $3, $4}'
    for i in all default lo va vb vc vd; do
        echo "$i" $(ip netns exec "$ns" sysctl -n "net.ipv4.conf.$i.arp_ignore" "net.ipv4.conf.$i.arp_announce")
    done
    for i in va vb; do ip netns exec "$ns" tc filter show dev "$i" egress; done
    ls -A "$bpffs"
    # The run directory itself: an agent that fails to start leaves none.
    find "$tmp/agent-run" 2>/dev/null
}
agent_root=$bpffs/agent
# run_agent_with CONFIG [PIN_ROOT] [STATE_DIR]: a foreground agent that must fail at once
run_agent_with() {
    out=$(timeout 10 ip netns exec "$ns" "$peerlb" agent -c "$1" --pin-root "${2:-$agent_root}" \
        --run-dir "$tmp/agent-run" --state-dir "${3:-$tmp/agent-state}" 2>"$tmp/err")
    rc=$?
    err=$(cat "$tmp/err")
}
unchanged() {
    [[ $(host_state) == "$before" ]] || { diff <(echo "$before") <(host_state) | sed 's/^/      /'; false; }
}
before=$(host_state)

agent_config "$tmp/syntax.toml" va
sed -i 's/^\[cluster\]$/[cluster/' "$tmp/syntax.toml"
agent_config "$tmp/unknown.toml" va $'[balance]\ncolour = "blue"'
agent_config "$tmp/range.toml" va
sed -i 's/^interval_ms = 100$/interval_ms = 5/' "$tmp/range.toml"
agent_config "$tmp/nokey.toml" va
sed -i "s|^key_file = .*|key_file = \"$tmp/nosuch.key\"|" "$tmp/nokey.toml"
head -c 32 /dev/urandom >"$tmp/open.key" && chmod 644 "$tmp/open.key"
agent_config "$tmp/openkey.toml" va
sed -i "s|^key_file = .*|key_file = \"$tmp/open.key\"|" "$tmp/openkey.toml"
agent_config "$tmp/noiface.toml" nosuch0
agent_config "$tmp/good.toml" va
agent_config "$tmp/foreign.toml" vc # vc has another XDP program (above)
mkdir -p "$tmp/corrupt-state" && echo "twelve" >"$tmp/corrupt-state/incarnation"
echo "not a directory" >"$tmp/file-state"
# what | config | expected in the message | pin root under $tmp (default: on bpffs)
#   | state directory under $tmp (default: agent-state)
while IFS='|' read -r what cfg expect pin state; do
    run_agent_with "$tmp/$cfg" "${pin:+$tmp/$pin}" "${state:+$tmp/$state}"
    echo "    $what: $err"
    check "agent, $what: one-line error" one_line_error "$expect"
    check "agent, $what: exit 1, no crash" test "$rc" -eq 1
    check "agent, $what: nothing changed (XDP, TC, addresses, sysctls, pins, socket)" unchanged
done <<AGENT
syntax error|syntax.toml|syntax.toml:
unknown key|unknown.toml|unknown.toml:
out of range|range.toml|range.toml:
missing key file|nokey.toml|nokey.toml:
key file readable by others|openkey.toml|lets other users read or change it
missing interface|noiface.toml|interface 'nosuch0' does not exist|
pin root off bpffs|good.toml|is not on a bpf filesystem|not-bpffs/p
another XDP program on the interface|foreign.toml|another XDP program|
corrupt incarnation file|good.toml|incarnation file $tmp/corrupt-state/incarnation: "twelve" is not a decimal number||corrupt-state
state directory that is a file|good.toml|state directory $tmp/file-state||file-state
AGENT
check "the corrupt incarnation file is left as it was" test "$(cat "$tmp/corrupt-state/incarnation")" == twelve
# The refusals of the file name it, the line and the key (README).
while IFS='|' read -r what cfg key; do
    run_agent_with "$tmp/$cfg"
    check "agent, $what: the message names the file, a line and the key" \
        bash -c '[[ $1 =~ $2:[0-9]+: && $1 == *"$3"* ]]' _ "$err" "$cfg" "$key"
done <<NAMES
unknown key|unknown.toml|colour
out of range|range.toml|interval_ms
missing key file|nokey.toml|key_file
key file readable by others|openkey.toml|key_file
NAMES
check "no pin root was created by the failed agents" test ! -e "$agent_root"

echo "cli_test: a running agent refuses bad settings"
ip netns exec "$ns" "$peerlb" agent -c "$tmp/good.toml" --pin-root "$agent_root" \
    --run-dir "$tmp/agent-run" --state-dir "$tmp/agent-state" >"$tmp/agent.log" 2>&1 &
agent_pid=$!
for i in $(seq 100); do
    ip netns exec "$ns" "$peerlb" peers --run-dir "$tmp/agent-run" >/dev/null 2>&1 && break
    sleep 0.05
done
run peers --json --run-dir "$tmp/agent-run"
check "the agent runs and answers" python3 -c 'import json, sys; assert json.loads(sys.argv[1])[0]["id"] == "c1"' "$out"
check "the agent's incarnation is the counter it persisted under --state-dir" python3 -c '
import json, sys
me = json.loads(sys.argv[1])[0]
assert me["incarnation"] == int(sys.argv[2]) >= 1, (me["incarnation"], sys.argv[2])
' "$out" "$(cat "$tmp/agent-state/incarnation" 2>/dev/null)"
accept_below() { # the running agent's setting, from status --json
    ip netns exec "$ns" "$peerlb" status --json --pin-root "$agent_root" --run-dir "$tmp/agent-run" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["agent"]["accept_below"])'
}
# what | expected in the message | key | value
while IFS='|' read -r what expect key value; do
    run set "$key" "$value" --run-dir "$tmp/agent-run"
    check "set, $what: one-line error" one_line_error "$expect"
done <<SET
unknown key|not a setting|balance.nosuch|3
not changeable at run time|not a setting|node.id|c2
out of range|out of range|balance.accept_below|150
below the range|out of range|cluster.interval_ms|5
not a number|balance.accept_below|balance.accept_below|forty
not a choice|balance.pick|balance.pick|fastest
empty value|balance.accept_below|balance.accept_below|
SET
check "refused settings changed nothing (accept_below still 50)" test "$(accept_below)" == 50
run top --interval-ms 0 --run-dir "$tmp/agent-run"
check "top --interval-ms 0 with an agent running: usage error" usage_error "--interval-ms"

echo "cli_test: missing privileges (user nobody)"
chmod 755 "$tmp" # only the missing privileges stand in the way
nobody() { # nobody ARGS...: peerlb as user nobody in the namespace; sets rc, out, err
    out=$(ip netns exec "$ns" setpriv --reuid=nobody --regid=nogroup --clear-groups "$peerlb" "$@" 2>"$tmp/err")
    rc=$?
    err=$(cat "$tmp/err")
}
while read -r args; do
    # shellcheck disable=SC2086 # the arguments are meant to be split
    nobody $args
    echo "    nobody: ${args%% *}: $err"
    check "nobody: ${args%% *}: one-line error" one_line_error "peerlb: "
    check "nobody: ${args%% *}: exit 1, says permission denied" \
        bash -c '[[ $1 -eq 1 && $2 == *"ermission denied"* ]]' _ "$rc" "$err"
done <<NOBODY
attach --iface vb --pin-root $agent_root
detach --iface va --pin-root $agent_root
status --pin-root $agent_root --run-dir $tmp/agent-run
flows --pin-root $agent_root
stats --pin-root $agent_root
peers --run-dir $tmp/agent-run
set balance.accept_below 40 --run-dir $tmp/agent-run
top --frames 1 --run-dir $tmp/agent-run
NOBODY
check "nobody: the agent's program is still attached to va" xdp_on va
check "nobody: nothing attached to vb" bash -c "! ip -n '$ns' -d link show dev vb | grep -q prog/xdp"
check "nobody: the setting is unchanged (accept_below 50)" test "$(accept_below)" == 50

echo "cli_test: the agent stopped"
kill -TERM "$agent_pid"
wait "$agent_pid" 2>/dev/null
agent_pid=
while read -r args; do
    # shellcheck disable=SC2086 # the arguments are meant to be split
    run $args --run-dir "$tmp/agent-run"
    check "${args%% *} after the agent stopped: one-line error" one_line_error "the agent is not running"
done <<STOPPED
peers
set balance.accept_below 40
top --frames 1
STOPPED
check "the stopped agent left no socket" test ! -e "$tmp/agent-run/agent.sock"
run detach --iface va --pin-root "$agent_root"
check "its data plane detaches" bash -c "[[ $rc -eq 0 ]] && ! ip -n '$ns' -d link show dev va | grep -q prog/xdp"

check_summary cli_test
