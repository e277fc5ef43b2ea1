#!/usr/bin/env python3
"""Round-trip latency of single gets at a fixed offered rate, against a memcached-protocol server.

Usage: latency.py HOST PORT [REQUESTS=5000] [RATE=2000]
Sets one 32-byte key, then sends REQUESTS gets, one at a time, paced at RATE per second, and prints
p50/p90/p99/max of the round trip in microseconds. Bounded by REQUESTS; loopback only.
"""
import socket
import sys
import time

host, port = sys.argv[1], int(sys.argv[2])
n = int(sys.argv[3]) if len(sys.argv) > 3 else 5000
rate = float(sys.argv[4]) if len(sys.argv) > 4 else 2000.0
s = socket.create_connection((host, port), timeout=5)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.sendall(b"set latency:key 0 0 32\r\n" + b"x" * 32 + b"\r\n")
assert s.recv(100) == b"STORED\r\n"
request = b"get latency:key\r\n"
expected = len(b"VALUE latency:key 0 32\r\n") + 34 + len(b"END\r\n")
samples = []
interval = 1.0 / rate
next_send = time.perf_counter()
for _ in range(n):
    while time.perf_counter() < next_send:
        pass
    next_send += interval
    t0 = time.perf_counter_ns()
    s.sendall(request)
    got = 0
    while got < expected:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("connection closed")
        got += len(chunk)
    samples.append((time.perf_counter_ns() - t0) / 1000)
samples.sort()
pick = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]
print(f"requests={n} rate={rate:.0f}/s p50_us={pick(0.5):.1f} p90_us={pick(0.9):.1f} p99_us={pick(0.99):.1f} max_us={samples[-1]:.1f}")
