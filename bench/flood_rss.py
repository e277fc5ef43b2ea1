#!/usr/bin/env python3
"""Write flood of mixed sizes into a memcached-protocol server; report its RSS against -m.

Usage: flood_rss.py HOST PORT SERVER_PID LIMIT_MB [FACTOR=4] [SEED=1]
Writes FACTOR x LIMIT_MB of values whose sizes are log-uniform between 10 bytes and 200 KB (keys
`flood:%09d`), pipelined, then prints the server's RSS, the limit, and RSS minus the limit.
Bounded: stops after FACTOR x LIMIT_MB bytes or 2,000,000 items, whichever comes first.
"""
import math
import random
import socket
import sys
import time

host, port, pid, limit_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
factor = float(sys.argv[5]) if len(sys.argv) > 5 else 4.0
rng = random.Random(int(sys.argv[6]) if len(sys.argv) > 6 else 1)


def rss_kb():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])


s = socket.create_connection((host, port), timeout=30)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
rss0 = rss_kb()
target = factor * limit_mb * 1024 * 1024
written = 0
items = 0
lo, hi = math.log(10), math.log(200_000)
t0 = time.time()
while written < target and items < 2_000_000:
    batch = []
    for _ in range(100):
        size = int(math.exp(rng.uniform(lo, hi)))
        batch.append(b"set flood:%09d 0 0 %d noreply\r\n%s\r\n" % (items, size, b"v" * size))
        written += size
        items += 1
    s.sendall(b"".join(batch))
s.sendall(b"version\r\n")
buf = b""
while b"VERSION" not in buf:
    chunk = s.recv(65536)
    if not chunk:
        raise SystemExit("connection closed")
    buf += chunk
time.sleep(1)
rss1 = rss_kb()
s.sendall(b"stats\r\n")
buf = b""
while not buf.endswith(b"END\r\n"):
    buf += s.recv(65536)
stats = dict(l.split(" ", 2)[1:] for l in buf.decode().split("\r\n") if l.startswith("STAT "))
limit_kb = limit_mb * 1024
print(
    f"items_written={items} bytes_written_MiB={written / 1048576:.0f} secs={time.time() - t0:.1f} "
    f"curr_items={stats.get('curr_items')} evictions={stats.get('evictions')} "
    f"rss_before_MiB={rss0 / 1024:.1f} rss_after_MiB={rss1 / 1024:.1f} limit_MiB={limit_mb} "
    f"rss_minus_limit_MiB={(rss1 - limit_kb) / 1024:.1f}"
)
