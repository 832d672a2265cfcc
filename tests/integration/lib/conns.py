"""Real HTTP clients for the capacity test (capacity_test.sh), run in the
client namespace of the test bed. Each request is "GET /" on HTTP/1.1 with
keep-alive; the test bed's nginx answers its own name (X-Server).

  conns.py hold ADDR COUNT OUT [GAP_MS]
      Opens COUNT connections to ADDR:80 one after the other (GAP_MS apart,
      each answered before the next opens) and keeps them open. Writes the
      server of each, space-separated, to OUT (whole, by rename) once all
      are open, or "failed" for one that was not answered. Then, on a
      signal:
        SIGUSR1  asks again on every connection: the servers to OUT.again
        SIGUSR2  sends a request on each and does not read the answer, so
                 that a kill -9 afterwards ends them with RST (unread data):
                 writes OUT.unread once the answers are in
        SIGTERM  closes them (FIN) and exits
  conns.py burst ADDR COUNT
      COUNT short connections one after the other, each closed by the
      client (FIN) after its answer; prints how many each server answered
      as JSON ({"s2": 10, "failed": 0, ...}).
"""
import json
import os
import signal
import socket
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: peerlb\r\n\r\n"


def read_answer(sock):
    """The X-Server of one HTTP answer read whole from sock."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the headers")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    server, length = "unknown", 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"x-server":
            server = value.strip().decode()
        elif name == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed in the body")
        body += chunk
    return server


def ask(sock):
    try:
        sock.sendall(REQUEST)
        return read_answer(sock)
    except OSError:
        return "failed"


def connect(addr):
    sock = socket.create_connection((addr, 80), timeout=3)
    sock.settimeout(3)
    return sock


def write(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text + "\n")
    os.rename(path + ".tmp", path)


def hold(addr, count, out, gap_ms):
    socks, servers = [], []
    for i in range(count):
        if i and gap_ms:
            time.sleep(gap_ms / 1000)
        try:
            sock = connect(addr)
        except OSError:
            servers.append("failed")
            continue
        socks.append(sock)
        servers.append(ask(sock))
    pending = []
    signal.signal(signal.SIGUSR1, lambda *_: pending.append("again"))
    signal.signal(signal.SIGUSR2, lambda *_: pending.append("unread"))
    signal.signal(signal.SIGTERM, lambda *_: pending.append("close"))
    write(out, " ".join(servers))
    while True:
        while not pending:
            signal.pause()
        what = pending.pop(0)
        if what == "again":
            write(out + ".again", " ".join(ask(s) for s in socks))
        elif what == "unread":
            for s in socks:
                s.sendall(REQUEST)
            time.sleep(0.3)
            write(out + ".unread", "sent")
        else:
            for s in socks:
                s.close()
            return 0


def burst(addr, count):
    tally = {"failed": 0}
    for _ in range(count):
        try:
            sock = connect(addr)
        except OSError:
            tally["failed"] += 1
            continue
        server = ask(sock)
        sock.close()
        tally[server] = tally.get(server, 0) + 1
    print(json.dumps(tally))
    return 0


def main():
    if sys.argv[1] == "hold":
        gap = int(sys.argv[5]) if len(sys.argv) > 5 else 0
        return hold(sys.argv[2], int(sys.argv[3]), sys.argv[4], gap)
    if sys.argv[1] == "burst":
        return burst(sys.argv[2], int(sys.argv[3]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
