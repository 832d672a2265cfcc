#!/usr/bin/env python3
"""Client side of the failover benchmark (tools/bench/failover.sh), one trial.

Runs in the client namespace, python3 stdlib only:
  - every --period-ms a new TCP connection + GET / to --target (the address
    of the node that will die); attempts overlap, each with its own timeout;
  - the survivors' traffic: every --survivor-period-ms a new connection to
    each --survivor address, plus --keepalive connections spread over them
    with a request every --keepalive-period-ms.

It touches --ready once the target (served by --dead) and every survivor
have answered, then waits for --t0-file to hold the death time T0 (epoch ms,
the same clock as time.time()). Failover time = completion of the first
successful request to the target after T0 that a node other than --dead
served (a reply from the dead node itself can only be a race with the link
going down), minus T0. It stops --after-s seconds after that success (or
--give-up-s after T0 without one) and writes a JSON summary to --out:
failover_ms (null if none), survivor requests / failures started in
[T0 - 1 s, end], and a few details for the log.
"""
import argparse
import asyncio
import json
import os
import resource
import sys
import time


def now_ms():
    return time.time() * 1000.0


class Request:
    __slots__ = ("kind", "addr", "start", "end", "ok", "server", "error")

    def __init__(self, kind, addr):
        self.kind, self.addr = kind, addr
        self.start, self.end = now_ms(), None
        self.ok, self.server, self.error = False, None, None


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return status, body.decode("latin-1").strip()


class Probe:
    def __init__(self, args):
        self.args = args
        self.timeout = args.timeout_s
        self.records = []      # every finished Request
        self.pending = {"target": set(), "survivor": set()}  # one-shot attempts in flight
        self.spawning = True
        self.keepers_run = True

    def finish(self, req, ok, server=None, error=None):
        req.end, req.ok, req.server, req.error = now_ms(), ok, server, error
        self.records.append(req)

    async def one_shot(self, kind, addr):
        req = Request(kind, addr)
        writer = None
        try:
            async def exchange():
                nonlocal writer
                reader, writer = await asyncio.open_connection(addr, 80)
                writer.write(b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % addr.encode())
                return await read_response(reader)
            status, body = await asyncio.wait_for(exchange(), self.timeout)
            self.finish(req, status == 200, body, None if status == 200 else f"status {status}")
        except Exception as e:  # timeouts, refusals, resets: all count as failures
            self.finish(req, False, error=type(e).__name__)
        finally:
            if writer is not None:
                writer.close()

    def spawn(self, kind, addr):
        task = asyncio.ensure_future(self.one_shot(kind, addr))
        self.pending[kind].add(task)
        task.add_done_callback(self.pending[kind].discard)

    async def ticker(self, period_s, kind, addrs):
        # Absolute schedule: a late tick does not shift the following ones.
        loop = asyncio.get_running_loop()
        due = loop.time()
        while self.spawning:
            for addr in addrs:
                self.spawn(kind, addr)
            due += period_s
            await asyncio.sleep(max(0.0, due - loop.time()))

    async def keeper(self, addr, offset_s):
        loop = asyncio.get_running_loop()
        await asyncio.sleep(offset_s)  # spread the keep-alive requests over the period
        period = self.args.keepalive_period_ms / 1000.0
        due = loop.time()
        reader = writer = None
        while self.keepers_run:
            req = Request("keepalive", addr)
            try:
                async def exchange():
                    nonlocal reader, writer
                    if writer is None:
                        reader, writer = await asyncio.open_connection(addr, 80)
                    writer.write(b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % addr.encode())
                    return await read_response(reader)
                status, body = await asyncio.wait_for(exchange(), self.timeout)
                self.finish(req, status == 200, body, None if status == 200 else f"status {status}")
            except Exception as e:
                # A lost connection is counted once, then replaced.
                self.finish(req, False, error=type(e).__name__)
                if writer is not None:
                    writer.close()
                reader = writer = None
            due += period
            await asyncio.sleep(max(0.0, due - loop.time()))
        if writer is not None:
            writer.close()

    def first_failover(self, t0):
        done = [r for r in self.records if r.kind == "target" and r.ok and r.end >= t0
                and r.server != self.args.dead]
        return min(done, key=lambda r: r.end) if done else None

    def ready(self):
        served = {(r.addr, r.server) for r in self.records if r.ok}
        return (self.args.target, self.args.dead) in served and all(
            any(a == s for a, _ in served) for s in self.args.survivor)

    async def run(self):
        a = self.args
        tickers = [asyncio.ensure_future(self.ticker(a.period_ms / 1000.0, "target", [a.target])),
                   asyncio.ensure_future(self.ticker(a.survivor_period_ms / 1000.0, "survivor", a.survivor))]
        keepers = [asyncio.ensure_future(self.keeper(a.survivor[i % len(a.survivor)],
                                                     i * a.keepalive_period_ms / 1000.0 / a.keepalive))
                   for i in range(a.keepalive)]

        started = time.monotonic()
        while not self.ready():
            if time.monotonic() - started > 15:
                print("probe: the cluster does not answer", file=sys.stderr)
                return 1
            await asyncio.sleep(0.02)
        open(a.ready, "w").close()

        while True:  # the script writes T0 right after the node's death
            try:
                with open(a.t0_file) as f:
                    t0 = float(f.read().strip())
                break
            except (OSError, ValueError):
                await asyncio.sleep(0.005)

        while True:
            first = self.first_failover(t0)
            if first is not None and now_ms() >= first.end + a.after_s * 1000:
                end = first.end + a.after_s * 1000
                break
            if first is None and now_ms() >= t0 + a.give_up_s * 1000:
                end = t0 + a.give_up_s * 1000
                break
            await asyncio.sleep(0.01)

        # Stop; target attempts still pending are no longer needed, survivor
        # requests started in the window are awaited (each has its timeout).
        self.spawning = False
        self.keepers_run = False
        for t in tickers:
            t.cancel()
        for t in list(self.pending["target"]):
            t.cancel()
        await asyncio.gather(*tickers, *keepers, *self.pending["target"], *self.pending["survivor"],
                             return_exceptions=True)

        window = [r for r in self.records
                  if r.kind != "target" and t0 - 1000 <= r.start <= end]
        failed = [r for r in window if not r.ok]
        targets = [r for r in self.records if r.kind == "target"]
        after = [r for r in targets if r.start >= t0]
        summary = {
            "t0": int(t0),
            "failover_ms": None if first is None else round(first.end - t0),
            "served_by": None if first is None else first.server,
            "first_attempt_started_ms": None if first is None else round(first.start - t0),
            "survivor_requests": len(window),
            "survivor_failed": len(failed),
            "survivor_errors": sorted({f"{r.kind} {r.addr}: {r.error}" for r in failed}),
            "target_attempts": len(targets),
            "target_attempts_after_t0": len(after),
            # Replies from the dead node after T0: only the link-down race.
            "dead_node_replies_after_t0": sum(1 for r in targets if r.ok and r.end >= t0
                                              and r.server == a.dead),
            "attempt_rate_per_s": round(len(targets) / max(0.001, (end - targets[0].start) / 1000), 1)
            if targets else 0,
        }
        with open(a.out + ".tmp", "w") as f:
            json.dump(summary, f)
        os.replace(a.out + ".tmp", a.out)
        return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", required=True, help="address of the node that dies")
    p.add_argument("--dead", required=True, help="name that node answers with (its body)")
    p.add_argument("--survivor", action="append", required=True, help="a survivor's address")
    p.add_argument("--ready", required=True, help="file touched once everything answers")
    p.add_argument("--t0-file", required=True, help="file the script writes T0 (epoch ms) to")
    p.add_argument("--out", required=True, help="JSON summary")
    p.add_argument("--period-ms", type=float, default=10)
    p.add_argument("--survivor-period-ms", type=float, default=20)
    p.add_argument("--keepalive", type=int, default=10)
    p.add_argument("--keepalive-period-ms", type=float, default=100)
    p.add_argument("--timeout-s", type=float, default=3)
    p.add_argument("--after-s", type=float, default=2)
    p.add_argument("--give-up-s", type=float, default=10)
    args = p.parse_args()
    # Up to 3 s x 100 attempts/s may be pending at once, plus the survivors'.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    sys.exit(asyncio.run(Probe(args).run()))


if __name__ == "__main__":
    main()
