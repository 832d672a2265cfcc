"""Slow handshakes: real clients whose handshake ACK comes late.

Run in a client namespace of the test bed. Opens TCP handshakes to
SERVICE:80 from SOURCE with hand-made segments (raw IP socket out, AF_PACKET
in), one every GAP seconds until the file RELEASE exists; each waits after
its SYN-ACK, half-open, until then. Then each sends its handshake ACK and
an HTTP request, and must get an HTTP 200 answer. Writes a JSON summary to
OUT: how many were opened, how many the servers answered (SYN-ACK: "held"),
by which node (the SYN-ACK's source MAC), and the outcome of each held one:
ok, reset (a RST after the request), reset_before_request (a RST while
held), bad (not a 200) or no_answer.

A load balancer keeps such a connection's half-open state from the SYN to
the ACK: everything that happens meanwhile (a SYN flood) must leave it.
The kernel of this namespace knows nothing of these connections and would
answer the SYN-ACKs with RSTs: the caller drops RSTs from SOURCE that do not
carry MARK (nft), and this script marks its own.

Usage: slow_handshakes.py SERVICE SOURCE IFACE GAP RELEASE OUT MARK MAC=NAME...
"""
import json
import os
import random
import socket
import struct
import sys
import time

SYN, RST, PSH, ACK, FIN = 0x02, 0x04, 0x08, 0x10, 0x01


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def packet(src, dst, sport, seq, ack, flags, payload=b"", mss=False):
    options = struct.pack("!BBH", 2, 4, 1460) if mss else b""
    offset = (20 + len(options)) // 4 << 4
    tcp = struct.pack("!HHIIBBHHH", sport, 80, seq, ack, offset, flags, 64240, 0, 0) + options + payload
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    # Total length and checksum are the kernel's (IP_HDRINCL fills them).
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, src, dst)
    return ip + tcp


def main():
    service, source, iface, gap, release, out, mark = sys.argv[1:8]
    names = dict(arg.split("=", 1) for arg in sys.argv[8:])
    gap, mark = float(gap), int(mark, 0)
    svc, src = socket.inet_aton(service), socket.inet_aton(source)
    rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    rx.bind((iface, 0))
    rx.settimeout(0.01)
    tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
    rng = random.Random(os.getpid())
    ports = rng.sample(range(20000, 60000), 5000)
    conns = {}  # sport -> state

    def send(c, flags, payload=b"", seq=None):
        seq = c["isn"] + 1 if seq is None else seq
        ack = (c["server_isn"] + 1) & 0xFFFFFFFF if c.get("server_isn") is not None else 0
        tx.sendto(packet(src, svc, c["sport"], seq, ack, flags, payload, mss=flags == SYN), (service, 0))

    def receive():
        try:
            frame = rx.recv(2048)
        except socket.timeout:
            return
        if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
            return
        ihl = (frame[14] & 0x0F) * 4
        if frame[26:30] != svc or frame[30:34] != src:
            return
        tcp = 14 + ihl
        sport, dport, seq = struct.unpack("!HHI", frame[tcp:tcp + 8])
        flags = frame[tcp + 13]
        c = conns.get(dport)
        if sport != 80 or c is None or c["outcome"]:
            return
        total = struct.unpack("!H", frame[16:18])[0]
        payload = frame[tcp + (frame[tcp + 12] >> 4) * 4:14 + total]
        if flags & RST:
            c["outcome"] = "reset" if c["state"] == "requested" else "reset_before_request"
        elif flags & SYN and flags & ACK and c["state"] == "syn_sent":
            c["server_isn"], c["state"] = seq, "held"
            c["by"] = names.get(":".join(f"{b:02x}" for b in frame[6:12]), "?")
        elif payload and c["state"] == "requested":
            c["outcome"] = "ok" if payload.startswith(b"HTTP/1.1 200") else "bad"

    request = f"GET / HTTP/1.1\r\nHost: {service}\r\nConnection: close\r\n\r\n".encode()
    next_open = time.time()
    while not os.path.exists(release):
        now = time.time()
        if now >= next_open and len(conns) < len(ports):
            c = {"sport": ports[len(conns)], "isn": rng.getrandbits(32), "state": "syn_sent",
                 "outcome": "", "by": "", "opened": now, "sent": now, "tries": 1}
            conns[c["sport"]] = c
            send(c, SYN, seq=c["isn"])
            next_open = now + gap
        for c in conns.values():  # SYN retransmissions, as a TCP would
            if c["state"] == "syn_sent" and not c["outcome"] and now - c["sent"] > c["tries"] and c["tries"] < 4:
                c["tries"] += 1
                send(c, SYN, seq=c["isn"])
        receive()
    released = time.time()
    # Every handshake the servers answered; those not reset meanwhile now
    # send their ACK and request.
    held = [c for c in conns.values() if c.get("server_isn") is not None]
    for c in held:
        if not c["outcome"]:
            send(c, ACK)
            send(c, PSH | ACK, request)
            c["state"], c["sent"], c["tries"] = "requested", time.time(), 1
    while time.time() - released < 6 and any(not c["outcome"] for c in held):
        now = time.time()
        for c in held:  # the request again after 1 s and 3 s without an answer
            if not c["outcome"] and now - c["sent"] > (1, 3, 99)[c["tries"] - 1]:
                c["tries"] += 1
                send(c, PSH | ACK, request)
        receive()
    for c in held:  # nothing left open on the servers
        send(c, RST | ACK, seq=c["isn"] + 1 + (len(request) if c["state"] == "requested" else 0))
    outcomes, by, outcomes_by = {}, {}, {}
    for c in held:
        key = c["outcome"] or "no_answer"
        outcomes[key] = outcomes.get(key, 0) + 1
        by[c["by"]] = by.get(c["by"], 0) + 1
        node = outcomes_by.setdefault(c["by"], {})
        node[key] = node.get(key, 0) + 1
    held_s = [released - c["opened"] for c in held]
    json.dump({"opened": len(conns), "held": len(held), "by": by, "outcomes": outcomes,
               "outcomes_by": outcomes_by,
               "held_s_max": max(held_s, default=0), "held_s_min": min(held_s, default=0),
               "failed": [f'{c["sport"]} via {c["by"]}: {c["outcome"] or "no answer"}'
                          for c in held if c["outcome"] != "ok"][:10]},
              open(out, "w"))

if __name__ == "__main__":
    main()
