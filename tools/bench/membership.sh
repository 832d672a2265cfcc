#!/usr/bin/env bash
# Membership at scale, simulated (benchmark part 6, issue 17): peerlb-sim
# (tools/sim) runs N = 1000 agents with the agent's own membership,
# ownership and heartbeat code, heartbeat every 500 ms, dead_after 3,
# delay 0.5 +- 0.5 ms, 1 % of the nodes starved for 2 s at a time (every
# ~10 s), 5 deaths, and:
#   loss0    no loss; also measures the cost of one received heartbeat (--cpu)
#   loss1    1 % of the datagrams lost (each copy on its own)
#   loss5    5 %
#   rack     1 % loss, N / 10 nodes dying at the same instant (more silent peers
#            than one heartbeat names: each names them in turn)
# Two simulations at a time (one core each), ~4 minutes. No root, no network.
#
# Usage: membership.sh BUILD_DIR OUT_DIR
# Env: SIM_NODES (1000), SIM_SECONDS (measured simulated seconds of loss1,
# 30; loss0 and loss5 a third of it, rack a sixth), SIM_SEED (17).
# Writes OUT_DIR/SCENARIO.json (peerlb-sim --json) and OUT_DIR/SCENARIO.txt
# (its printout).
set -uo pipefail

usage="usage: membership.sh BUILD_DIR OUT_DIR"
build=${1:?$usage}
out=${2:?$usage}
sim=$build/peerlb-sim
nodes=${SIM_NODES:-1000}
seconds=${SIM_SECONDS:-30}
seed=${SIM_SEED:-17}
[[ -x $sim ]] || { echo "membership: $sim is missing (build the peerlb-sim target)" >&2; exit 1; }
mkdir -p "$out" || exit 1

# Two agents compute the owners (the agent's trigger and cost, measured on
# them): all 1000 would take most of the run's time for the same figures.
common=(--nodes "$nodes" --interval-ms 500 --dead-after 3 --delay-ms 0.5 --jitter-ms 0.5
    --starved-fraction 0.01 --starve-ms 2000 --starve-gap-ms 10000 --ownership-nodes 2 --warmup-s 3
    --seed "$seed")

# one NAME ARGS...: one simulation; its figures in NAME.json, its printout
# in NAME.txt (shown on failure).
one() {
    local name=$1
    shift
    rm -f "$out/$name.json"
    if ! "$sim" "${common[@]}" "$@" --json "$out/$name.json" >"$out/$name.txt" 2>&1; then
        echo "membership: $name failed:" >&2
        cat "$out/$name.txt" >&2
        return 1
    fi
}

# 5 % loss costs the most (a tick for each of ~100 suspicions a second per
# agent, each over every peer), then the deaths at once (long lists in
# every heartbeat): two chains of about equal length, one core each. The
# 1 % row carries the targets: the longest.
(
    rc=0
    one loss5 --loss 0.05 --deaths 5 --duration-s $((seconds / 3)) || rc=1
    one loss0 --loss 0 --deaths 5 --duration-s $((seconds / 3)) --cpu || rc=1
    exit $rc
) &
first=$!
(
    rc=0
    one loss1 --loss 0.01 --deaths 5 --duration-s "$seconds" || rc=1
    one rack --loss 0.01 --deaths $((nodes / 10)) --deaths-at-once --duration-s $((seconds / 6)) \
        --detect-within-ms 4000 || rc=1
    exit $rc
) &
second=$!
failed=0
wait $first || failed=1
wait $second || failed=1
cat "$out"/{loss0,loss1,loss5,rack}.txt 2>/dev/null
exit "$failed"
