#!/usr/bin/env python3
"""Hit rate of memcached-protocol servers under the same deterministic traces, for comparing eviction policies.

Usage: hitrate.py [--memcached [PATH] | --no-memcached] [--moat LABEL=BINARY ...] [--cmd LABEL=TEMPLATE ...]
                  [--workload zipf,scan] [--alpha 0.9,1.0] [--seed 1] [-m 64] [--requests 2000000] [--json] ...

Every run starts a fresh server on a free 127.0.0.1 port (-m M, one worker thread), plays one trace through it
over one text-protocol connection, reads `stats`, and stops the server; every process it starts is stopped and
every wait is bounded. Servers: Debian's memcached (`memcached -m M -p PORT -l 127.0.0.1 -t 1 -U 0 [-u nobody]`),
Moat binaries (`moat serve --no-config -p PORT -l 127.0.0.1 -m M -t 1 -o security_log=off`; as root it drops
to nobody), or any command template with {port} and {m}.

Workloads (each trace is a function of the flags and --seed only, so every server gets the same one):
  zipf  look-aside cache: KEYS keys (key i has a fixed value size, log-uniform in [--min-size, --max-size]);
        KEYS is chosen so that their values total --ws-factor x M MiB. Requests draw keys by Zipf(--alpha)
        popularity; each is `get key`, and a miss is followed by `set key` with its value.
  scan  the same Zipf requests, plus after every --scan-every of them a burst of --scan-len one-time keys
        (get, miss, set), values from the same size distribution (default: bursts of about M/2 MiB).
Hit rate = hits / gets over the Zipf (background) requests after the first --warmup fraction of them.

Pipelining: the trace is played in batches of --batch gets (`get k` lines); the misses of a batch are set
(first occurrence of each key, in trace order, with replies) in the same write as the next batch's gets. So a
key requested twice within one batch after falling out misses twice: the same for every server (the trace and
the batching are fixed), but absolute hit rates depend slightly on --batch.
"""
import argparse
import bisect
import itertools
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time

START_LIMIT = 30.0  # seconds for a server to answer `version`
STOP_LIMIT = 10.0  # seconds for SIGTERM, then again for SIGKILL
SOCK_TIMEOUT = 60.0  # any single recv


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--memcached", nargs="?", const="/usr/bin/memcached", default="/usr/bin/memcached",
                   help="memcached binary (default /usr/bin/memcached; label 'memcached')")
    p.add_argument("--no-memcached", action="store_true", help="do not run memcached")
    p.add_argument("--moat", action="append", default=[], metavar="LABEL=BINARY", help="a Moat binary (repeatable)")
    p.add_argument("--cmd", action="append", default=[], metavar="LABEL=TEMPLATE",
                   help="any server command, with {port} and {m} (repeatable)")
    p.add_argument("--workload", default="zipf,scan", help="comma-separated: zipf, scan (default both)")
    p.add_argument("--alpha", default="0.9,1.0", help="comma-separated Zipf exponents (default 0.9,1.0)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("-m", "--memory", type=int, default=64, help="server memory limit in MiB (default 64)")
    p.add_argument("--ws-factor", type=float, default=4.0,
                   help="key space's value bytes / server memory (default 4)")
    p.add_argument("--min-size", type=int, default=64, help="smallest value in bytes (default 64)")
    p.add_argument("--max-size", type=int, default=8192, help="largest value in bytes (default 8192)")
    p.add_argument("--requests", type=int, default=2_000_000, help="Zipf requests per run (default 2,000,000)")
    p.add_argument("--warmup", type=float, default=0.2, help="fraction of Zipf requests not counted (default 0.2)")
    p.add_argument("--scan-every", type=int, default=100_000,
                   help="scan workload: Zipf requests between scans (default 100,000)")
    p.add_argument("--scan-len", type=int, default=None,
                   help="scan workload: one-time keys per scan (default: about M/2 MiB of values)")
    p.add_argument("--batch", type=int, default=100, help="gets per pipelined batch (default 100)")
    p.add_argument("--repeat", type=int, default=1, help="play each (server, trace) this many times (default 1)")
    p.add_argument("--run-timeout", type=float, default=900.0, help="abort a run after this many seconds")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    p.add_argument("--json-out", metavar="FILE", help="also write the JSON document to FILE")
    a = p.parse_args()
    a.workloads = [w.strip() for w in a.workload.split(",") if w.strip()]
    for w in a.workloads:
        if w not in ("zipf", "scan"):
            p.error("unknown workload %r" % w)
    a.alphas = [float(x) for x in a.alpha.split(",") if x.strip()]
    if not 0 <= a.warmup < 1 or a.batch < 1 or a.requests < 1 or not 0 < a.min_size <= a.max_size:
        p.error("bad --warmup, --batch, --requests or sizes")
    servers = []
    if not a.no_memcached:
        servers.append(("memcached", "memcached", a.memcached))
    for spec in a.moat:
        label, sep, path = spec.partition("=")
        if not sep:
            label, path = os.path.basename(spec), spec
        servers.append((label, "moat", os.path.abspath(path)))
    for spec in a.cmd:
        label, sep, tmpl = spec.partition("=")
        if not sep:
            p.error("--cmd wants LABEL=TEMPLATE")
        servers.append((label, "cmd", tmpl))
    if not servers:
        p.error("no servers")
    a.servers = servers
    return a


# ---------------------------------------------------------------------------------------------------------------
# traces


class KeySpace:
    """Key ids 0..n-1 are the Zipf keys (id = popularity rank after a seeded shuffle); ids n.. are one-time scan
    keys. Each id has a fixed value size."""

    def __init__(self, args):
        rng = random.Random("keyspace:%d" % args.seed)
        lo, hi = math.log(args.min_size), math.log(args.max_size + 1)
        target = args.ws_factor * args.memory * 1048576
        sizes, total = [], 0
        while total < target:
            s = min(args.max_size, int(math.exp(rng.uniform(lo, hi))))
            sizes.append(s)
            total += s
        self.n = len(sizes)
        self.total_bytes = total
        self.mean_size = total / self.n
        self.rank_to_id = list(range(self.n))
        rng.shuffle(self.rank_to_id)
        self.sizes = sizes
        self.scan_keys = 0
        self.size_rng = random.Random("scankeys:%d" % args.seed)
        self.lo, self.hi, self.max_size = lo, hi, args.max_size
        self.get_line, self.hit_len = [], []
        self._extend(0, self.n)

    def key(self, i):
        return b"hr:%07d" % i if i < self.n else b"sc:%08d" % (i - self.n)

    def _extend(self, start, end):
        for i in range(start, end):
            k, s = self.key(i), self.sizes[i]
            self.get_line.append(b"get %s\r\n" % k)
            self.hit_len.append(len(b"VALUE %s 0 %d\r\n" % (k, s)) + s + 2)

    def add_scan_keys(self, count):
        """Scan key ids (deterministic: the same calls in the same order give the same keys and sizes)."""
        first = self.n + self.scan_keys
        for _ in range(first + count - len(self.sizes)):
            self.sizes.append(min(self.max_size, int(math.exp(self.size_rng.uniform(self.lo, self.hi)))))
        self._extend(len(self.get_line), len(self.sizes))
        self.scan_keys += count
        return range(first, first + count)


def zipf_requests(ks, alpha, count, seed):
    """count key ids, Zipf(alpha) by rank over the key space."""
    rng = random.Random("zipf:%s:%d" % (alpha, seed))
    cum = list(itertools.accumulate(1.0 / (r + 1) ** alpha for r in range(ks.n)))
    total, last = cum[-1], ks.n - 1
    r2i, rnd = ks.rank_to_id, rng.random
    return [r2i[min(bisect.bisect(cum, rnd() * total), last)] for _ in range(count)]


def build_trace(ks, workload, alpha, args, scan_len):
    """(trace of key ids, index of the first counted request, number of counted Zipf requests)."""
    bg = zipf_requests(ks, alpha, args.requests, args.seed)
    warm = int(args.requests * args.warmup)
    if workload == "zipf":
        return bg, warm, args.requests - warm
    trace, first_counted = [], None
    ks.scan_keys = 0  # every scan trace reuses the same one-time keys: each is used once per trace
    for start in range(0, len(bg), args.scan_every):
        if first_counted is None and start + args.scan_every > warm:
            first_counted = len(trace) + (warm - start)
        trace.extend(bg[start:start + args.scan_every])
        if start + args.scan_every < len(bg):
            trace.extend(ks.add_scan_keys(scan_len))
    return trace, first_counted, args.requests - warm


# ---------------------------------------------------------------------------------------------------------------
# servers


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(kind, path, port, mem):
    if kind == "memcached":
        cmd = [path, "-m", str(mem), "-p", str(port), "-l", "127.0.0.1", "-t", "1", "-U", "0"]
        return cmd + (["-u", "nobody"] if os.geteuid() == 0 else [])
    if kind == "moat":
        return [path, "serve", "--no-config", "-p", str(port), "-l", "127.0.0.1", "-m", str(mem), "-t", "1",
                "-o", "security_log=off"]
    return path.format(port=port, m=mem).split()


class Server:
    def __init__(self, kind, path, mem):
        self.port = free_port()
        self.cmd = server_command(kind, path, self.port, mem)
        self.log = tempfile.TemporaryFile(prefix="hitrate-")
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        LIVE.append(self)
        deadline = time.monotonic() + START_LIMIT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited (rc=%s): %s\n%s" % (self.proc.returncode, " ".join(self.cmd),
                                                                     self.log_tail()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"version\r\n")
                    if s.recv(100).startswith(b"VERSION"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server not ready in %.0f s: %s\n%s" % (START_LIMIT, " ".join(self.cmd),
                                                                         self.log_tail()))
            time.sleep(0.05)

    def log_tail(self):
        self.log.seek(0)
        return self.log.read()[-3000:].decode(errors="replace")

    def stop(self):
        if self in LIVE:
            LIVE.remove(self)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
                try:
                    self.proc.wait(STOP_LIMIT)
                except subprocess.TimeoutExpired:
                    pass
        self.log.close()
        if self.proc.poll() is None:
            raise RuntimeError("pid %d survived SIGKILL" % self.proc.pid)


LIVE = []


def stop_all(*_):
    while LIVE:
        try:
            LIVE[-1].stop()
        except Exception as e:  # keep stopping the others
            print("warning: %s" % e, file=sys.stderr)


def on_signal(signum, _frame):
    stop_all()
    raise SystemExit(128 + signum)


# ---------------------------------------------------------------------------------------------------------------
# the client


def recv_until_ends(sock, ends_needed, deadline):
    """Reply bytes holding the set replies and then `ends_needed` get replies (each ends with END\\r\\n:
    values here are all 'x', so END\\r\\n appears only as terminators)."""
    buf = bytearray()
    ends = 0
    while ends < ends_needed:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise RuntimeError("connection closed by server")
        start = max(0, len(buf) - 4)
        buf += chunk
        ends += buf.count(b"END\r\n", start)
        if time.monotonic() > deadline:
            raise RuntimeError("run timeout")
    return bytes(buf)


def stats(sock):
    sock.sendall(b"stats\r\n")
    buf = b""
    while not buf.endswith(b"END\r\n"):
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed during stats")
        buf += chunk
    out = {}
    for line in buf.decode().split("\r\n"):
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0] == "STAT":
            out[parts[1]] = parts[2]
    return out


def play(port, ks, trace, first_counted, batch, timeout):
    """Play the trace; return counters."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=SOCK_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    deadline = time.monotonic() + timeout
    n, get_line, hit_len, sizes, key = ks.n, ks.get_line, ks.hit_len, ks.sizes, ks.key
    value = b"x" * ks.max_size
    hits = gets = scan_hits = scan_gets = all_hits = bad = 0
    set_errors = {}
    pending, pending_n = [], 0
    try:
        for base in range(0, len(trace), batch):
            chunk = trace[base:base + batch]
            pending.append(b"".join([get_line[i] for i in chunk]))
            sock.sendall(b"".join(pending))
            reply = recv_until_ends(sock, len(chunk), deadline)
            pos = 0
            for _ in range(pending_n):
                e = reply.index(b"\r\n", pos)
                if e - pos != 6 or reply[pos:e] != b"STORED":
                    line = reply[pos:e].decode(errors="replace")[:60]
                    set_errors[line] = set_errors.get(line, 0) + 1
                pos = e + 2
            pieces = reply[pos:].split(b"END\r\n")
            if len(pieces) != len(chunk) + 1 or pieces[-1]:
                raise RuntimeError("unexpected reply: %r" % reply[pos:pos + 200])
            pending, pending_n, missed = [], 0, set()
            counted_from = first_counted - base
            for j, i in enumerate(chunk):
                piece = pieces[j]
                hit = bool(piece)
                if hit:
                    all_hits += 1
                    if len(piece) != hit_len[i]:
                        bad += 1
                elif i not in missed:
                    missed.add(i)
                    s = sizes[i]
                    pending.append(b"set %s 0 0 %d\r\n%s\r\n" % (key(i), s, value[:s]))
                    pending_n += 1
                if j < counted_from:
                    continue
                if i < n:
                    gets += 1
                    hits += hit
                else:
                    scan_gets += 1
                    scan_hits += hit
        st = stats(sock)
    finally:
        sock.close()
    return dict(hits=hits, gets=gets, scan_gets=scan_gets, scan_hits=scan_hits, all_hits=all_hits,
                bad_values=bad, set_errors=set_errors, stats=st)


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    t0 = time.monotonic()
    ks = KeySpace(args)
    scan_len = args.scan_len if args.scan_len is not None else max(1, int(args.memory * 1048576 / 2 / ks.mean_size))
    info = dict(seed=args.seed, memory_mb=args.memory, keys=ks.n, key_space_mib=round(ks.total_bytes / 1048576, 1),
                mean_value=round(ks.mean_size, 1), sizes=[args.min_size, args.max_size], requests=args.requests,
                warmup=args.warmup, batch=args.batch, scan_every=args.scan_every, scan_len=scan_len)
    if "scan" in args.workloads and args.requests <= args.scan_every:
        print("warning: --requests <= --scan-every: the scan trace has no scans", file=sys.stderr)
    if not args.json:
        print("# " + " ".join("%s=%s" % kv for kv in info.items()), flush=True)
    results = []
    try:
        for workload in args.workloads:
            for alpha in args.alphas:
                tt = time.monotonic()
                trace, first_counted, counted = build_trace(ks, workload, alpha, args, scan_len)
                trace_s = time.monotonic() - tt
                for label, kind, path in [s for _ in range(args.repeat) for s in args.servers]:
                    tr = time.monotonic()
                    srv = Server(kind, path, args.memory)
                    try:
                        r = play(srv.port, ks, trace, first_counted, args.batch, args.run_timeout)
                    finally:
                        srv.stop()
                    secs = time.monotonic() - tr
                    assert r["gets"] == counted, (r["gets"], counted)
                    st = r.pop("stats")
                    row = dict(server=label, workload=workload, alpha=alpha, hit_rate=r["hits"] / max(1, r["gets"]),
                               evictions=int(st.get("evictions", -1)), curr_items=int(st.get("curr_items", -1)),
                               bytes=int(st.get("bytes", -1)), limit_maxbytes=int(st.get("limit_maxbytes", -1)),
                               server_get_hits=int(st.get("get_hits", -1)),
                               server_get_misses=int(st.get("get_misses", -1)),
                               requests=len(trace), seconds=round(secs, 1), trace_seconds=round(trace_s, 1),
                               command=" ".join(srv.cmd), **r)
                    results.append(row)
                    if not args.json:
                        extra = ""
                        if workload == "scan":
                            extra += " scan_gets=%d scan_hits=%d" % (r["scan_gets"], r["scan_hits"])
                        if r["bad_values"] or r["set_errors"]:
                            extra += " BAD_VALUES=%d SET_ERRORS=%s" % (r["bad_values"], r["set_errors"])
                        if row["server_get_hits"] != r["all_hits"]:
                            extra += " server_get_hits=%d(client %d)" % (row["server_get_hits"], r["all_hits"])
                        print("%-12s %-4s alpha=%-4s hit_rate=%.4f evictions=%d curr_items=%d bytes=%d "
                              "limit_maxbytes=%d requests=%d secs=%.1f%s"
                              % (label, workload, alpha, row["hit_rate"], row["evictions"], row["curr_items"],
                                 row["bytes"], row["limit_maxbytes"], len(trace), secs, extra), flush=True)
    finally:
        stop_all()
    doc = dict(info, results=results, seconds=round(time.monotonic() - t0, 1))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(doc, f, indent=1)
    if args.json:
        json.dump(doc, sys.stdout, indent=1)
        print()
    if any(r["bad_values"] for r in results):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
