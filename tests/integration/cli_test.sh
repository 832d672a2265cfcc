#!/usr/bin/env bash
# The CLI contract of attach/detach/status/flows/stats (DESIGN section 6):
# bad input gives one line on stderr and a non-zero exit and leaves nothing
# behind; good input attaches, shows and removes everything.
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

cleanup() {
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
run flows --pin-root "$root" --json
check "flows --json is an empty JSON array" bash -c "python3 -c 'import json,sys; assert json.load(sys.stdin)==[]' <<<'$out'"
run stats --pin-root "$root" --json
check "stats --json names every counter" bash -c "python3 -c 'import json,sys; c=json.load(sys.stdin)[\"counters\"]; assert \"syn_forward_weighted\" in c and \"pass_orphan\" in c' <<<'$out'"
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

check_summary cli_test
