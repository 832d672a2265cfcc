"""Closes the loop of load moves for shared_test.sh (DESIGN.md 5b): each
server's load is what its buckets' clients cost, so that moving buckets
moves load, as in production.

  load_follower.py RUN_CMD OUT_DIR NODES PERIOD_MS
      RUN_CMD: a shell command printing `peerlb buckets --json` of a live
      node; NODES: ids ("s1,s2,s3"). Every PERIOD_MS it reads the table and
      writes each node's load (0..100) to OUT_DIR/load-<id>: 100 x the sum of
      its buckets' costs / 1000, every bucket costing 1. On SIGUSR1 the
      buckets owned by the first node at that moment become hot (cost 3): its
      load jumps, the coordinator moves buckets away. On SIGTERM it prints
      JSON: ms from the jump until every load is within 10 points (and the
      table's version then), the largest spread after that (oscillation),
      and buckets moved in all; the same goes to OUT_DIR/follower.json
      (whole, by rename) at every period.
"""
import json
import os
import signal
import subprocess
import sys
import time

cmd, out_dir, nodes, period_ms = sys.argv[1], sys.argv[2], sys.argv[3].split(","), int(sys.argv[4])
hot = None
jump_at = None
converged_ms = None
converged_version = None
spread_after = 0.0
moved = 0
last_table = None
stop = False


def on_usr1(*_):
    global hot, jump_at
    hot = "pending"
    jump_at = time.monotonic()


def on_term(*_):
    global stop
    stop = True


def status():
    return {"converged_ms": converged_ms, "converged_version": converged_version,
            "spread_after": spread_after, "moved": moved, "jumped": jump_at is not None}


def write_status():
    tmp = os.path.join(out_dir, ".follower.json")
    with open(tmp, "w") as f:
        json.dump(status(), f)
    os.replace(tmp, os.path.join(out_dir, "follower.json"))


signal.signal(signal.SIGUSR1, on_usr1)
signal.signal(signal.SIGTERM, on_term)

while not stop:
    try:
        t = json.loads(subprocess.run(cmd, shell=True, capture_output=True, text=True,
                                      timeout=2).stdout)
    except (ValueError, subprocess.TimeoutExpired):
        time.sleep(period_ms / 1000)
        continue
    table = t["table"]
    if hot == "pending":
        hot = {b for b, owner in enumerate(table) if owner == nodes[0]}
    if last_table is not None and jump_at is not None:
        moved += sum(1 for a, b in zip(last_table, table) if a != b)
    last_table = table
    cost = {n: 0 for n in nodes}
    for b, owner in enumerate(table):
        if owner in cost:
            cost[owner] += 3 if hot and hot != "pending" and b in hot else 1
    loads = {n: min(100, round(100 * c / 1000)) for n, c in cost.items() if n in t["owned"]}
    for n, load in loads.items():
        tmp = os.path.join(out_dir, f".load-{n}")
        with open(tmp, "w") as f:
            f.write(f"{load}\n")
        os.replace(tmp, os.path.join(out_dir, f"load-{n}"))
    if jump_at is not None and hot != "pending" and loads:
        spread = max(loads.values()) - min(loads.values())
        if converged_ms is None and spread <= 10:
            converged_ms = round((time.monotonic() - jump_at) * 1000)
            converged_version = t["version"]
        elif converged_ms is not None:
            spread_after = max(spread_after, spread)
    write_status()
    time.sleep(period_ms / 1000)

write_status()
print(json.dumps(status()))
