#!/usr/bin/env python3
"""Adversarial load against a Moat (or memcached) binary on loopback; prints a report for
docs/reliability.md. Every phase is bounded in time and count and stops the server it started.

Usage: bench/adversarial.py [--server CMD] [--phases idle,slowloris,unread,flood,churn]
  CMD: the server command with {port}, default '.build/release/moat serve -p {port} -t 2 -c 20000'.

Phases:
  idle       10,000 connections held open (each sent `version` once); server RSS per connection
  slowloris  1,000 senders trickling one byte of an unfinished request each second, while a normal
             client measures get latency; p99 compared with the same client on an idle server
  unread     50 clients pipelining gets of a 512 KB value and never reading; server RSS growth and
             whether the server closes them (-o output_timeout=5 for this phase)
  flood      writes 4 x -m of values of mixed sizes (10 B .. 200 KB); RSS against -m 64
  churn      100,000 connect/close cycles; open descriptors and RSS before and after
"""
import argparse
import math
import os
import random
import resource
import shlex
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, template, extra=()):
        self.port = free_port()
        cmd = shlex.split(template.format(port=self.port)) + list(extra)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start: %s" % cmd)

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])

    def fds(self):
        return len(os.listdir("/proc/%d/fd" % self.proc.pid))

    def stop(self):
        self.proc.kill()
        self.proc.wait(10)


def request(sock, data, until=b"\r\n"):
    sock.sendall(data)
    buf = b""
    while not buf.endswith(until):
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def latency_sample(port, count=2000):
    """Sequential gets of a small value on one connection; returns sorted latencies in ms."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    request(s, b"set lat 0 0 10\r\n0123456789\r\n")
    out = []
    for _ in range(count):
        t = time.perf_counter()
        request(s, b"get lat\r\n", b"END\r\n")
        out.append((time.perf_counter() - t) * 1000)
    s.close()
    return sorted(out)


def pct(values, p):
    return values[min(len(values) - 1, int(math.ceil(p / 100 * len(values))) - 1)]


def phase_idle(args):
    srv = Server(args.server)
    try:
        before = srv.rss_kb()
        socks = []
        start = time.monotonic()
        for i in range(10_000):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            socks.append(s)
        for s in socks:  # every one is really served
            request(s, b"version\r\n")
        held = time.monotonic() - start
        time.sleep(2.5)  # idle connections give their buffers back after 1 s
        after = srv.rss_kb()
        lat = latency_sample(srv.port, 500)
        alive = srv.proc.poll() is None
        for s in socks:
            s.close()
        per = (after - before) * 1024 / len(socks)
        print("idle: %d connections held (opened and answered in %.1f s); RSS %d -> %d KiB: %.0f bytes per connection; "
              "a normal client's p99 meanwhile %.3f ms; server alive: %s" % (len(socks), held, before, after, per, pct(lat, 99), alive))
    finally:
        srv.stop()


def phase_slowloris(args):
    srv = Server(args.server)
    try:
        idle = latency_sample(srv.port, 5000)
        senders = []
        for i in range(1000):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            s.setblocking(False)
            senders.append(s)
        payload = b"set slow 0 0 5\r\nhel"  # never finished
        position = 0
        loaded = []
        deadline = time.monotonic() + 8  # inside the 10 s command deadline: they stay connected
        next_drip = 0
        while time.monotonic() < deadline:
            if time.monotonic() >= next_drip and position < len(payload):
                for s in senders:
                    try:
                        s.send(payload[position:position + 1])
                    except OSError:
                        pass
                position += 1
                next_drip = time.monotonic() + 1
            loaded += latency_sample(srv.port, 500)
        loaded.sort()
        time.sleep(3.5)  # past the 10 s command deadline from the first byte
        closed = 0
        for s in senders:
            try:
                if s.recv(1) == b"":
                    closed += 1
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
            s.close()
        ratio = pct(loaded, 99) / pct(idle, 99)
        print("slowloris: 1000 senders; normal client p50/p99 idle %.3f/%.3f ms, under slowloris %.3f/%.3f ms (p99 ratio %.2f, "
              "bound 2.00); senders closed by the command deadline afterwards: %d of 1000" % (
                  pct(idle, 50), pct(idle, 99), pct(loaded, 50), pct(loaded, 99), ratio, closed))
    finally:
        srv.stop()


def phase_unread(args):
    srv = Server(args.server, ["-o", "output_timeout=5"])
    try:
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        request(s, b"set big 0 0 524288\r\n" + b"x" * 524288 + b"\r\n")
        s.close()
        before = srv.rss_kb()
        hogs = []
        for i in range(50):
            h = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            h.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            h.setblocking(False)
            sent = 0
            try:
                while sent < 4 * 1024 * 1024:  # 4 MB of requests: 2 TB of replies if all were answered
                    sent += h.send(b"get big\r\n" * 1000)
            except BlockingIOError:
                pass
            hogs.append(h)
        time.sleep(2)
        peak = srv.rss_kb()
        lat = latency_sample(srv.port, 500)
        time.sleep(5)
        closed = 0
        for h in hogs:
            try:
                while True:
                    if h.recv(1 << 20) == b"":
                        closed += 1
                        break
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
            h.close()
        print("unread: 50 clients asking for 512 KB replies and never reading; RSS %d -> %d KiB (+%.1f MiB, %.0f KiB per client); "
              "a normal client's p99 meanwhile %.3f ms; closed by output_timeout=5: %d of 50" % (
                  before, peak, (peak - before) / 1024, (peak - before) / 50, pct(lat, 99), closed))
    finally:
        srv.stop()


def phase_flood(args):
    srv = Server(args.server, ["-m", "64"])
    try:
        rng = random.Random(1)
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        before = srv.rss_kb()
        written, items, target = 0, 0, 4 * 64 * 1024 * 1024
        batch = []
        while written < target and items < 2_000_000:
            size = int(math.exp(rng.uniform(math.log(10), math.log(200_000))))
            batch.append(b"set flood:%09d 0 0 %d noreply\r\n%s\r\n" % (items, size, b"f" * size))
            written += size
            items += 1
            if len(batch) == 64:
                s.sendall(b"".join(batch))
                batch = []
        s.sendall(b"".join(batch))
        request(s, b"version\r\n")
        after = srv.rss_kb()
        stats = request(s, b"stats\r\n", b"END\r\n").decode()
        s.close()
        st = dict(line.split(" ", 2)[1:] for line in stats.splitlines() if line.startswith("STAT "))
        print("flood: %d items, %.0f MiB of values into -m 64; RSS %d -> %d KiB: %.1f MiB above -m (bytes %s, evictions %s)" % (
            items, written / 1048576, before, after, after / 1024 - 64, st.get("bytes"), st.get("evictions")))
    finally:
        srv.stop()


def phase_churn(args):
    srv = Server(args.server)
    try:
        for _ in range(1000):  # warm up allocator pools first
            socket.create_connection(("127.0.0.1", srv.port), timeout=10).close()
        time.sleep(1)
        fds0, rss0 = srv.fds(), srv.rss_kb()
        start = time.monotonic()
        n = 0
        marks = []
        # Two halves: a leak grows in both; a pool that settles grows in the first only.
        for half in range(2):
            while n < 50_000 * (half + 1) and time.monotonic() - start < 120:
                c = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST: no TIME_WAIT pile-up
                c.close()
                n += 1
            time.sleep(1)
            marks.append(srv.rss_kb())
        took = time.monotonic() - start
        fds1 = srv.fds()
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        ok = request(s, b"version\r\n").startswith(b"VERSION")
        s.close()
        print("churn: %d connect/close in %.1f s; server descriptors %d -> %d; RSS %d KiB, after 50k %d (%+d), after 100k %d (%+d); "
              "still serving: %s" % (n, took, fds0, fds1, rss0, marks[0], marks[0] - rss0, marks[1], marks[1] - marks[0], ok))
    finally:
        srv.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", default=".build/release/moat serve -p {port} -t 2 -c 20000")
    parser.add_argument("--phases", default="idle,slowloris,unread,flood,churn")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 30_000
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
    except (ValueError, OSError):
        print("cannot raise the descriptor limit to %d (have %d); the idle phase may fail" % (want, soft), file=sys.stderr)
    phases = {"idle": phase_idle, "slowloris": phase_slowloris, "unread": phase_unread, "flood": phase_flood, "churn": phase_churn}
    print("server: %s" % args.server)
    for name in args.phases.split(","):
        phases[name](args)


if __name__ == "__main__":
    main()
