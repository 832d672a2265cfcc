#!/usr/bin/env python3
"""Turns a benchmark run's raw results into summary.md and PNG plots.

Usage: report.py OUT_DIR   (the directory tools/bench/run.sh filled)

Reads xdp/xdp_cost.csv, balance/*.json + *.stats, overhead/*.txt and
failover/failover.csv (a part that did not run is reported as such), writes
OUT_DIR/summary.md and OUT_DIR/*.png (gnuplot; its scripts and data files stay
in OUT_DIR/plots/ so a plot can be redrawn or changed). Every verdict in the
summary ("met", "behind") is computed from the figures of this run.
"""
import csv
import json
import math
import re
import statistics
import subprocess
import sys
from pathlib import Path

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else None
if OUT is None or not OUT.is_dir():
    sys.exit("usage: report.py OUT_DIR")
PLOTS = OUT / "plots"
PLOTS.mkdir(exist_ok=True)

lines = []       # the summary, in order
targets = []     # (target, measured, met: bool | None)
behind = []      # sentences: where peerlb is behind a baseline


def emit(text=""):
    lines.append(text)


def table(header, rows):
    emit("| " + " | ".join(header) + " |")
    emit("|" + "|".join(" --- " for _ in header) + "|")
    for r in rows:
        emit("| " + " | ".join(str(c) for c in r) + " |")
    emit()


def kv_file(path):
    values = {}
    if path.exists():
        for line in path.read_text().split("\n"):
            for item in line.split():
                if "=" in item:
                    k, v = item.split("=", 1)
                    values[k] = v
    return values


def gnuplot(name, script, size="1000,600"):
    """Runs a gnuplot script that writes OUT/name.png; keeps the script."""
    path = PLOTS / f"{name}.gp"
    path.write_text(f'set terminal pngcairo noenhanced size {size} font "sans,10"\n'
                    f'set output "{OUT / (name + ".png")}"\n' + script)
    result = subprocess.run(["gnuplot", str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        print(f"report: gnuplot {name}: {result.stderr.strip()}", file=sys.stderr)
        return False
    return True


def fmt_ratio(x):
    return "–" if x is None or math.isnan(x) else f"{x:.2f}x"


def pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


# --- header ------------------------------------------------------------------

machine = kv_file(OUT / "machine")
durations = kv_file(OUT / "durations")
emit("# peerlb benchmarks")
emit()
emit(f"Run of {machine.get('date', '?')} at commit `{machine.get('commit', '?')}`, kernel "
     f"{machine.get('kernel', '?')}, {machine.get('cpus', '?')} CPUs ({machine.get('cpu', '?')}). "
     "Every figure below is a comparison measured in this same run on this machine; "
     "absolute numbers on another machine will differ. Produced by `tools/bench/run.sh` "
     f"in {durations.get('total', '?')} s "
     f"({', '.join(f'{k} {v} s' for k, v in durations.items() if k != 'total')}).")
emit()
SUMMARY_AT = len(lines)  # the targets table goes here, once known

# --- 1. per-packet cost ------------------------------------------------------

emit("## 1. Per-packet cost of the XDP program")
emit()
xdp_csv = OUT / "xdp" / "xdp_cost.csv"
if not xdp_csv.exists():
    emit("Not run in this pass.")
    emit()
else:
    rows = list(csv.DictReader(xdp_csv.open()))
    emit("`BPF_PROG_TEST_RUN`, one packet per call (repeat = 1: a rewritten packet is never "
         "fed again), the kernel-measured run time of each call; all paths interleaved in "
         "rounds so that frequency drift hits them alike. Floors are programs of the suite "
         "(`tools/bench/progs/floor.bpf.c`): `XDP_PASS` alone; parse Ethernet/VLAN/IP/TCP; "
         "parse + one hash lookup + one array lookup (the reference of the targets).")
    emit()
    out_rows = []
    for r in rows:
        target = float(r["target_x"]) if r.get("target_x") not in (None, "", "nan") else None
        x = float(r["x_parse_lookup"])
        met = None if target is None else x <= target
        out_rows.append([r["group"], r["path"], r["family"], r["min_ns"], r["median_ns"],
                         r["p99_ns"], r["max_ns"], fmt_ratio(x), fmt_ratio(float(r["x_pass"])),
                         "–" if target is None else f"≤ {target:g}x",
                         "–" if met is None else ("yes" if met else "**no**")])
    table(["group", "path", "family", "min ns", "median ns", "p99 ns", "max ns",
           "x parse+lookup", "x XDP_PASS", "target", "met"], out_rows)
    for group in ("pass", "forward", "syn", "http"):
        members = [r for r in rows if r["group"] == group
                   and r.get("target_x") not in (None, "", "nan", "-")]
        if not members:
            continue
        worst = max(members, key=lambda r: float(r["x_parse_lookup"]) / float(r["target_x"]))
        x, limit = float(worst["x_parse_lookup"]), float(worst["target_x"])
        targets.append((f"{group} paths within their target of the parse+lookup floor (median)",
                        f"worst {x:.2f}x for ≤ {limit:g}x ({worst['path']}, {worst['family']})",
                        x <= limit))
        missed = sorted({r["path"] for r in members
                         if float(r["x_parse_lookup"]) > float(r["target_x"])})
        if missed:
            behind.append(f"Per-packet cost ({group}): {', '.join(missed)} over target; the "
                          f"worst, \"{worst['path']}\" ({worst['family']}), at {x:.2f}x the "
                          f"parse+lookup floor for ≤ {limit:g}x.")
    data = PLOTS / "xdp_cost.dat"
    with data.open("w") as f:
        for i, r in enumerate(rows):
            label = f"{r['path']} ({r['family']})".replace('"', "'")
            f.write(f'{i} "{label}" {r["median_ns"]} {r["p99_ns"]}\n')
    gnuplot("xdp_cost", f"""
set title "xdp_peerlb per-packet cost (median, BPF_PROG_TEST_RUN)"
set xlabel "ns per packet"
set style fill solid 0.6
set grid xtics
set size ratio 0
set ytics nomirror
set yrange [-1:{len(rows)}]
set xrange [0:*]
set key bottom right
plot "{data}" using ($3/2):1:($3/2):(0.35):yticlabels(2) with boxxyerrorbars title "median", \\
     "{data}" using 4:1 with points pt 7 title "p99"
""")
    emit("![per-packet cost](xdp_cost.png)")
    emit()

# --- 2. balancing quality ----------------------------------------------------

emit("## 2. Balancing quality")
emit()
bal = OUT / "balance"
CONFIG_NAMES = {"none": "no balancing", "haproxy": "HAProxy leastconn (central)",
                "least": "peerlb, pick = least",
                "weighted": "peerlb, pick = weighted",
                "least-published": "peerlb, least, load published by the app",
                "weighted-published": "peerlb, weighted, load published by the app"}
PEERLB_CONFIGS = [c for c in CONFIG_NAMES if c not in ("none", "haproxy")]


def stats_series(path):
    """[(unix_ms, inflight)] of one application's stats file."""
    series = []
    if path.exists():
        for line in path.read_text().split("\n"):
            f = line.split()
            if len(f) >= 2:
                series.append((int(f[0]), int(f[1])))
    return series


if not (bal / "params").exists():
    emit("Not run in this pass.")
    emit()
else:
    p = kv_file(bal / "params")
    emit(f"Three servers, each `peerlb-bench-app` with {p['workers']} workers and "
         f"{p['service_ms']} ms of service time per request (capacity "
         f"{p['capacity_per_server']} requests/s each). An open-loop client "
         f"(`peerlb-bench-loadgen`) sends {p['rate']} requests/s with Poisson arrivals for "
         f"{p['seconds']} s after a 3 s warm-up, one new connection per request, spread "
         "80/10/10 over the three service addresses (as cached DNS would; HAProxy gets them "
         "all on its one address). Latency is measured from each request's scheduled arrival, "
         "so a queue counts. Load = requests in flight at each server, sampled every 100 ms; "
         "\"max/mean\" is the busiest server's average over the three servers' average. "
         f"peerlb: agents with heartbeat {p['interval_ms']} ms and thresholds at their defaults "
         "(50 / 20), `conn_cost` one worker's share; the load either from "
         f"`load.source = \"connections\"` with capacity {p['workers']} (100 % = every worker "
         "busy; this source is read every 100 ms, as its sock_diag walk of the TCP hash costs "
         "~3 ms), or published by the application itself every 5 ms (`load.source = \"file\"`, "
         "read every 10 ms: `load.update_ms`).")
    emit()
    results = {}
    for config in CONFIG_NAMES:
        js = bal / f"{config}.json"
        if not js.exists():
            continue
        summary = json.loads(js.read_text())
        series = {n: stats_series(bal / f"{config}-s{n}.stats") for n in (1, 2, 3)}
        # Time 0 is the client's start; measured: after its warm-up, for
        # its duration.
        start = bal / f"{config}.start"
        t0 = int(start.read_text()) if start.exists() else \
            min((s[0][0] for s in series.values() if s), default=0)
        warmup = float(p.get("warmup", 3)) * 1000
        lo, hi = t0 + warmup, t0 + warmup + float(p["seconds"]) * 1000
        means, inst = [], []
        by_time = {}
        for n, s in series.items():
            vals = [v for t, v in s if lo <= t <= hi]
            means.append(statistics.mean(vals) if vals else float("nan"))
            for t, v in s:
                if lo <= t <= hi:
                    by_time.setdefault(round((t - t0) / 100), {})[n] = v
        for sample in by_time.values():
            if len(sample) == 3 and sum(sample.values()) > 0:
                inst.append(max(sample.values()) / statistics.mean(sample.values()))
        ratio = max(means) / statistics.mean(means) if all(not math.isnan(m) for m in means) \
            and statistics.mean(means) > 0 else float("nan")
        results[config] = dict(summary=summary, means=means, ratio=ratio,
                               inst=statistics.mean(inst) if inst else float("nan"),
                               series=series, t0=t0)
    rows = []
    for config, r in results.items():
        s = r["summary"]
        lat = s["latency_ms"]
        failed = s["failed"]
        reasons = ", ".join(f"{k} {v}" for k, v in s.get("failures", {}).items() if v)
        if reasons:
            failed = f"{failed} ({reasons})"
        servers = s.get("per_server", {})
        total = sum(servers.values()) or 1
        share = "/".join(f"{100 * servers.get(f's{n}', 0) / total:.0f}" for n in (1, 2, 3))
        rows.append([CONFIG_NAMES[config], f"{s['window_completed_rate']:.0f}", failed,
                     f"{lat['p50']:.1f}", f"{lat['p99']:.1f}", f"{lat['p999']:.1f}", share,
                     " / ".join(f"{m:.1f}" for m in r["means"]), fmt_ratio(r["ratio"]),
                     fmt_ratio(r["inst"])])
    emit("Completed/s counts the responses that arrived within the measured window "
         "(a server past its capacity serves at its capacity, whatever is offered).")
    emit()
    table(["configuration", "completed/s", "failed", "p50 ms", "p99 ms", "p99.9 ms",
           "served % s1/s2/s3", "mean in flight s1 / s2 / s3", "max/mean",
           "max/mean per 100 ms (avg)"], rows)
    if "haproxy" in results:
        hp99 = results["haproxy"]["summary"]["latency_ms"]["p99"]
        for config in PEERLB_CONFIGS:
            if config not in results:
                continue
            p99 = results[config]["summary"]["latency_ms"]["p99"]
            x = p99 / hp99 if hp99 > 0 else float("nan")
            targets.append((f"{CONFIG_NAMES[config]}: p99 ≤ 1.1x HAProxy's",
                            f"{p99:.1f} ms vs {hp99:.1f} ms = {x:.2f}x", x <= 1.1))
            if x > 1.1:
                behind.append(f"Balancing: {CONFIG_NAMES[config]} has a p99 of {p99:.1f} ms, "
                              f"{x:.2f}x HAProxy's {hp99:.1f} ms at the same offered load.")
    for config in PEERLB_CONFIGS:
        if config in results:
            ratio = results[config]["ratio"]
            targets.append((f"{CONFIG_NAMES[config]}: load max/mean ≤ 1.15",
                            fmt_ratio(ratio), ratio <= 1.15))
            if not ratio <= 1.15:
                hr = results.get("haproxy", {}).get("ratio", float("nan"))
                behind.append(f"Balancing: {CONFIG_NAMES[config]} leaves the busiest server at "
                              f"{ratio:.2f}x the mean load (HAProxy: {fmt_ratio(hr)}).")
    # One panel per configuration: in-flight requests per server over time.
    panels = []
    for config, r in results.items():
        data = PLOTS / f"balance_{config}.dat"
        with data.open("w") as f:
            for n in (1, 2, 3):
                for t, v in r["series"][n]:
                    if t < r["t0"]:
                        continue
                    f.write(f"{(t - r['t0']) / 1000:.2f} {v}\n")
                f.write("\n\n")
        panels.append((config, data))
    script = f"set multiplot layout {math.ceil(len(panels) / 2)},2\n" \
             "set xlabel 's'\nset ylabel 'requests in flight'\nset grid\nset key top left\n"
    # A server far past its capacity would flatten every other curve: the
    # scale stops at 4x the workers and the title gives the true maximum.
    ymax = 4 * float(p["workers"])
    script += f"set yrange [0:{ymax * 1.05:.0f}]\n"
    script += f"set xrange [0:{(float(p.get('warmup', 3)) + float(p['seconds'])) + 3:.0f}]\n"
    for config, data in panels:
        top = max((v for s in results[config]["series"].values() for _, v in s), default=0)
        clipped = f" (peak {top} off the scale)" if top > ymax else ""
        script += (f'set title "{CONFIG_NAMES[config]}{clipped}"\n'
                   f'plot "{data}" index 0 with lines title "s1", '
                   f'"" index 1 with lines title "s2", "" index 2 with lines title "s3"\n')
    script += "unset multiplot\n"
    gnuplot("balance_load", script, size=f"1000,{300 * math.ceil(len(panels) / 2) + 50}")
    emit("![in-flight requests per server over time](balance_load.png)")
    emit()
    data = PLOTS / "balance_latency.dat"
    with data.open("w") as f:
        for i, (config, r) in enumerate(results.items()):
            lat = r["summary"]["latency_ms"]
            f.write(f'{i} "{CONFIG_NAMES[config]}" {lat["p50"]} {lat["p99"]} {lat["p999"]}\n')
    gnuplot("balance_latency", f"""
set title "Latency at the same offered load (log scale)"
set ylabel "ms"
set logscale y
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.7
set grid ytics
set key top right
set xtics rotate by -15 font ",8"
plot "{data}" using 3:xticlabels(2) title "p50", "" using 4 title "p99", "" using 5 title "p99.9"
""")
    emit("![latency percentiles](balance_latency.png)")
    emit()

# --- 3. end-to-end overhead --------------------------------------------------

emit("## 3. End-to-end overhead (wrk against nginx)")
emit()
ovh = OUT / "overhead"
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk_run(path):
    """One wrk run's figures (None when its output has none)."""
    text = path.read_text()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not rps:
        return None
    lat = {q: float(v) * UNITS[u] for q, v, u in
           re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)}
    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return dict(rps=float(rps.group(1)), lat=lat,
                errors=errors + (int(non2xx.group(1)) if non2xx else 0))


def parse_wrk_cell(row, kind):
    """The median of a cell's runs (ROW-KIND-1.txt, -2.txt, ...), with the
    spread of their requests/s; None when it did not run."""
    runs = [r for r in (parse_wrk_run(f) for f in sorted(ovh.glob(f"{row}-{kind}-*.txt"))) if r]
    if not runs:
        return None
    runs.sort(key=lambda r: r["rps"])
    median = dict(runs[len(runs) // 2])
    median["spread"] = (runs[0]["rps"], runs[-1]["rps"], len(runs))
    return median


OVH_NAMES = [("direct", "direct, no XDP program"), ("xdp-pass", "an XDP program that only passes"),
             ("kept", "peerlb, kept locally"), ("forward-l2", "peerlb, forwarded (l2)"),
             ("forward-ipip", "peerlb, forwarded (ipip)"), ("haproxy", "HAProxy (TCP, leastconn)")]
PEERLB_ROWS = ("kept", "forward-l2", "forward-ipip")
KINDS = ("keepalive", "close")
if not (ovh / "params").exists():
    emit("Not run in this pass.")
    emit()
else:
    p = kv_file(ovh / "params")
    emit(f"`wrk -t{p.get('wrk_threads', 2)} -c{p['wrk_conns']} -d{p['wrk_seconds']}s`, "
         f"{p.get('wrk_repeat', 1)} runs per cell (the median shown, the range in brackets), from the "
         "client namespace to s1's service address (HAProxy: its own address), nginx on the "
         "three servers; loads written with `peerlb-mapctl` so that nothing changes during a "
         "measurement; each row first checks that new connections take the path it names "
         "(served by s1, or by s2/s3 when forwarded). Keep-alive exercises the established "
         "flow; `Connection: close` pays a SYN, a handshake and a teardown per request. Client, "
         "servers and softirqs share the machine's CPUs, so requests/s measures the total "
         "work per request.")
    emit()
    # Every cell read once; "direct-again" is the first row measured again.
    wrk = {key: {kind: parse_wrk_cell(key, kind) for kind in KINDS}
           for key in [k for k, _ in OVH_NAMES] + ["direct-again"]}
    base = wrk["direct"]

    def vs_direct(r, kind):
        return r["rps"] / base[kind]["rps"] if r and base[kind] else None

    rows, plotrows = [], []
    for key, name in OVH_NAMES:
        if not any(wrk[key].values()):
            continue
        cells = [name]
        for kind in KINDS:
            r = wrk[key][kind]
            if r is None:
                cells += ["–"] * 4
                continue
            lo, hi, n = r["spread"]
            cells += [f"{r['rps']:.0f} ({lo:.0f}-{hi:.0f})" if n > 1 else f"{r['rps']:.0f}",
                      fmt_ratio(vs_direct(r, kind)),
                      f"{r['lat'].get('50', float('nan')):.2f} / {r['lat'].get('99', float('nan')):.2f}",
                      r["errors"]]
        rows.append(cells)
        plotrows.append((name, [vs_direct(wrk[key][kind], kind) or 0 for kind in KINDS]))
    table(["path", "keep-alive req/s", "vs direct", "p50 / p99 ms", "errors",
           "close req/s", "vs direct", "p50 / p99 ms", "errors"], rows)
    data = PLOTS / "overhead.dat"
    with data.open("w") as f:
        for i, (name, (ka, cl)) in enumerate(plotrows):
            f.write(f'{i} "{name}" {ka:.3f} {cl:.3f}\n')
    gnuplot("overhead", f"""
set title "Requests/s relative to direct (no XDP program)"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.7
set yrange [0:1.2]
set grid ytics
set xtics rotate by -20
plot "{data}" using 3:xticlabels(2) title "keep-alive", "" using 4 title "one connection per request"
""")
    emit("![requests/s relative to direct](overhead.png)")
    emit()
    # The run's own noise: how far the direct row measured again is off.
    noise = {k: abs(vs_direct(wrk["direct-again"][k], k) - 1)
             for k in KINDS if vs_direct(wrk["direct-again"][k], k) is not None}
    if noise:
        emit("The direct row, measured again after all the others, differed from the first "
             "by " + " and ".join(f"{100 * v:.0f} % ({k})" for k, v in noise.items()) +
             "; the runs of one cell spread as the ranges in brackets show. Differences "
             "within that spread are noise.")
        emit()
    hp = wrk["haproxy"]
    for key, name in OVH_NAMES:
        if key not in PEERLB_ROWS:
            continue
        for kind in KINDS:
            r = wrk[key][kind]
            if not r:
                continue
            if base[kind]:
                lo, hi, _ = base[kind]["spread"]
                margin = max(0.1, noise.get(kind, 0), (hi - lo) / base[kind]["rps"])
                if r["rps"] < (1 - margin) * base[kind]["rps"]:
                    behind.append(f"Overhead: {name} ({kind}) serves {r['rps']:.0f} req/s, "
                                  f"{vs_direct(r, kind):.2f}x the direct path.")
            if hp[kind] and r["rps"] < hp[kind]["rps"]:
                behind.append(f"Overhead: {name} ({kind}) serves {r['rps']:.0f} req/s, "
                              f"below HAProxy's {hp[kind]['rps']:.0f}.")

# --- 4. failover ---------------------------------------------------------------

emit("## 4. Failover time")
emit()
fo_csv = OUT / "failover" / "failover.csv"
if not fo_csv.exists():
    emit("Not run in this pass.")
    emit()
else:
    rows = list(csv.DictReader(fo_csv.open()))
    configs = list(dict.fromkeys(r["config"] for r in rows))
    emit("Three servers with nginx; the client opens a new connection to s1's service "
         "address every 10 ms while it keeps traffic on s2 and s3 (a new connection to each "
         "every 20 ms, 10 keep-alive connections with a request every 100 ms). At T0 s1's "
         "agent (or keepalived) is killed with SIGKILL, so no goodbye is sent, and its link "
         "goes down. Failover time = the first reply to s1's address from a survivor, "
         "minus T0. Trials start at a random point of the heartbeat / advert cycle. "
         "peerlb: `dead_after = 3`, takeover with gratuitous ARP. keepalived 2.2.7, VRRP "
         "only, one instance per service address (owner priority 150, backups 100 and 50, "
         "preemption on): advert 1 s (VRRPv2, the default) and 0.1 s (VRRPv3: v2 takes "
         "whole seconds only). The loads are equal, so no survivor hands connections to s1: "
         "\"lost\" counts the survivors' own connections.")
    emit()
    out_rows, medians = [], {}
    data = PLOTS / "failover.dat"
    with data.open("w") as f:
        for i, config in enumerate(configs):
            trials = [r for r in rows if r["config"] == config]
            times = [float(r["failover_ms"]) for r in trials if r["failover_ms"] not in ("", None)]
            missing = len(trials) - len(times)
            med = statistics.median(times) if times else float("nan")
            medians[config] = med
            req = sum(int(r["survivor_requests"] or 0) for r in trials)
            lost = sum(int(r["survivor_failed"] or 0) for r in trials)
            out_rows.append([config, len(trials), f"{med:.0f}",
                             f"{min(times):.0f}" if times else "–",
                             f"{max(times):.0f}" if times else "–", missing, req, lost])
            for t in times:
                f.write(f'{i} "{config}" {t}\n')
    table(["configuration", "trials", "median ms", "min ms", "max ms", "no recovery",
           "survivor requests", "survivor requests lost"], out_rows)
    gnuplot("failover", f"""
set title "Node death to first successful new connection to its address"
set ylabel "ms"
set grid ytics
set xrange [-0.5:{len(configs) - 0.5}]
set yrange [0:*]
set xtics ({", ".join(f'"{c}" {i}' for i, c in enumerate(configs))})
plot "{data}" using 1:3 with points pt 7 ps 1.2 title "trials"
""")
    emit("![failover time per trial](failover.png)")
    emit()
    # Like against like: the same period (100 ms), and each one's default.
    lost = {r[0]: r[7] for r in out_rows}
    pairs = [(p_, k_) for p_ in medians for k_ in medians
             if p_.startswith("peerlb") and k_.startswith("keepalived")
             and (("100 ms" in p_ and "100 ms" in k_) or ("default" in p_ and "default" in k_))]
    for pc, kc in pairs:
        pm, km = medians[pc], medians[kc]
        targets.append((f"failover: {pc} vs {kc} (median)", f"{pm:.0f} ms vs {km:.0f} ms",
                        None if math.isnan(pm) or math.isnan(km) else pm <= km))
        if pm > km:
            behind.append(f"Failover: {pc} takes {pm:.0f} ms (median), slower than "
                          f"{kc} at {km:.0f} ms.")
        if lost.get(pc, 0) > lost.get(kc, 0):
            behind.append(f"Failover: {pc} lost {lost[pc]} survivor requests, {kc} {lost[kc]}.")

# --- targets and the honest part, at the top ---------------------------------

head = ["## Targets and where peerlb is behind", ""]
if targets:
    head += ["| target | measured | met |", "| --- | --- | --- |"]
    head += [f"| {t} | {m} | {'–' if ok is None else 'yes' if ok else '**no**'} |"
             for t, m, ok in targets]
    head.append("")
head.append("Where peerlb is behind a baseline or a target in this run:" if behind
            else "In this run peerlb was behind no baseline and missed no target.")
head.append("")
head += [f"- {b}" for b in behind]
head.append("")
lines[SUMMARY_AT:SUMMARY_AT] = head
(OUT / "summary.md").write_text("\n".join(lines) + "\n")
print(f"report: {OUT / 'summary.md'}", file=sys.stderr)
