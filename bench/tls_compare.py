#!/usr/bin/env python3
"""Side-by-side TLS benchmark: memcached -Z against moat -Z on the same certificates.

memcaslap and memtier cannot speak TLS here, so the load is a small pipelined Python client (text
protocol, 90% get / 10% set of 32-byte values over 10,000 keys, 16 requests per round trip) in
several processes. It cannot saturate a server; compare the server CPU per operation
(`cpu_us/op`, from /proc/PID/stat) as much as ops/s. Servers and load are pinned to different cores
(taskset) and runs are interleaved A B A B.

    python3 bench/tls_compare.py [--runs 3] [--seconds 8] [--procs 2] [--conns 4]
        [--memcached 'memcached'] [--moat .build/release/moat]
"""

import argparse
import multiprocessing
import os
import random
import shutil
import socket
import ssl
import statistics
import subprocess
import tempfile
import time

VALUE = b"x" * 32
KEYS = 10_000
DEPTH = 16


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_certs(d):
    def run(*a):
        subprocess.run(["openssl", *a], cwd=d, check=True, capture_output=True)
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key",
        "-out", "ca.pem", "-days", "2", "-subj", "/CN=bench-ca")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "server.key",
        "-out", "server.csr", "-subj", "/CN=localhost")
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem",
        "-days", "2", "-extfile", "ext")
    for name in os.listdir(d):
        os.chmod(os.path.join(d, name), 0o644)


def connect(port, cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def read_replies(sock, buf, count):
    """Consume `count` replies (END-terminated gets or single-line set replies)."""
    done = 0
    while done < count:
        while True:
            if buf.startswith(b"VALUE "):
                end = buf.find(b"\r\nEND\r\n")
                if end >= 0:
                    buf = buf[end + 7:]
                    break
            elif buf.startswith(b"END\r\n"):
                buf = buf[5:]
                break
            elif buf.startswith(b"STORED\r\n"):
                buf = buf[8:]
                break
            elif buf and b"\r\n" in buf and not buf.startswith(b"VALUE"):
                raise RuntimeError("unexpected reply %r" % buf[:80])
            data = sock.recv(65536)
            if not data:
                raise RuntimeError("server closed")
            buf += data
        done += 1
    return buf


def worker(port, cafile, conns, seconds, queue):
    rnd = random.Random(os.getpid())
    socks = [connect(port, cafile) for _ in range(conns)]
    bufs = [b""] * conns
    ops = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for i, s in enumerate(socks):
            batch = []
            for _ in range(DEPTH):
                key = b"key:%05d" % rnd.randrange(KEYS)
                if rnd.random() < 0.1:
                    batch.append(b"set %s 0 0 %d\r\n%s\r\n" % (key, len(VALUE), VALUE))
                else:
                    batch.append(b"get %s\r\n" % key)
            s.sendall(b"".join(batch))
            bufs[i] = read_replies(s, bufs[i], DEPTH)
            ops += DEPTH
    for s in socks:
        s.close()
    queue.put(ops)


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def measure(port, pid, cafile, args):
    queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=worker, args=(port, cafile, args.conns, args.seconds, queue)) for _ in range(args.procs)]
    before = cpu_ticks(pid)
    start = time.monotonic()
    for p in procs:
        p.start()
        if args.client_cpus:
            os.sched_setaffinity(p.pid, {int(c) for c in args.client_cpus.split(",")})
    total = sum(queue.get(timeout=args.seconds + 60) for _ in procs)
    for p in procs:
        p.join()
    elapsed = time.monotonic() - start
    ticks = cpu_ticks(pid) - before
    return total / elapsed, ticks * (1_000_000 / os.sysconf("SC_CLK_TCK")) / max(total, 1)


def preload(port, cafile):
    s = connect(port, cafile)
    buf = b""
    for start in range(0, KEYS, DEPTH):
        keys = range(start, min(start + DEPTH, KEYS))
        s.sendall(b"".join(b"set key:%05d 0 0 %d\r\n%s\r\n" % (k, len(VALUE), VALUE) for k in keys))
        buf = read_replies(s, buf, len(keys))
    s.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--conns", type=int, default=4)
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--client-cpus", default="1")
    parser.add_argument("--memcached", default="memcached")
    parser.add_argument("--moat", default=".build/release/moat")
    args = parser.parse_args()
    d = tempfile.mkdtemp(prefix="tls-bench-")
    os.chmod(d, 0o755)
    servers = []
    try:
        make_certs(d)
        cert, key, ca = (os.path.join(d, n) for n in ("server.pem", "server.key", "ca.pem"))
        ssl_opts = "ssl_chain_cert=%s,ssl_key=%s" % (cert, key)
        commands = {
            "A memcached": [args.memcached, "-Z", "-o", ssl_opts, "-U", "0", "-t", "1", "-m", "1024", "-c", "4096", "-u", "nobody", "-l", "127.0.0.1"],
            "B moat": [args.moat, "serve", "-Z", "-o", ssl_opts + ",security_log=off", "-t", "1", "-m", "1024", "-c", "4096", "-l", "127.0.0.1"],
        }
        running = {}
        for name, cmd in commands.items():
            port = free_port()
            full = ["taskset", "-c", args.server_cpus] + cmd + ["-p", str(port)]
            proc = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            servers.append(proc)
            for _ in range(100):
                try:
                    connect(port, ca).close()
                    break
                except OSError:
                    time.sleep(0.1)
            preload(port, ca)
            running[name] = (port, proc.pid)
            print("# %s: %s" % (name, " ".join(full)))
        results = {name: [] for name in running}
        for r in range(args.runs):
            for name, (port, pid) in running.items():
                ops, cpu = measure(port, pid, ca, args)
                results[name].append((ops, cpu))
                print("run %d %-12s ops/s=%-9.0f server_cpu_us/op=%.2f" % (r + 1, name, ops, cpu), flush=True)
        medians = {name: (statistics.median(o for o, _ in rs), statistics.median(c for _, c in rs)) for name, rs in results.items()}
        (a_ops, a_cpu), (b_ops, b_cpu) = medians["A memcached"], medians["B moat"]
        print("# median: memcached ops/s=%.0f cpu_us/op=%.2f  moat ops/s=%.0f cpu_us/op=%.2f  ops B/A=%.3f  efficiency A_cpu/B_cpu=%.3f"
              % (a_ops, a_cpu, b_ops, b_cpu, b_ops / a_ops, a_cpu / b_cpu))
    finally:
        for proc in servers:
            proc.kill()
            proc.wait()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
