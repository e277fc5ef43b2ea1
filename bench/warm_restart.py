#!/usr/bin/env python3
"""Warm restarts, measured: fill a server with ITEMS values of SIZE bytes, stop it, start it again,
and report how long the stop and the start took, the peak RSS while stopping (a save must not copy
the cache), and how many items came back.

Usage: warm_restart.py moat BINARY ITEMS SIZE [KEYFILE]   (Moat: -e FILE; SIGTERM; restart)
       warm_restart.py memcached ITEMS SIZE              (memcached 1.6 -e FILE in /dev/shm; SIGUSR1)
Servers run with -m 3072 -t 2 on 127.0.0.1, their files in a scratch directory (in /var/tmp for Moat, /dev/shm
for memcached, or SNAPSHOT_DIR) that is removed at the
end. Every wait is bounded (a stop or a start past 300 s fails the run).
"""
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

mode = sys.argv[1]
if mode == "moat":
    binary, items, size = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    keyfile = sys.argv[5] if len(sys.argv) > 5 else None
else:
    binary, items, size, keyfile = "memcached", int(sys.argv[2]), int(sys.argv[3]), None
PORT = 23411
LIMIT = 300


def free_port_wait(port):
    deadline = time.time() + LIMIT
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


def rss_kb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def command(path):
    if mode == "moat":
        cmd = [binary, "serve", "--no-config", "-p", str(PORT), "-l", "127.0.0.1", "-m", "3072", "-t", "2",
               "-e", path, "-o", "restore_max_age=3600,security_log=off"]
        if keyfile:
            cmd[-1] += ",restore_key=" + keyfile
        return cmd
    return ["memcached", "-u", "nobody", "-U", "0", "-l", "127.0.0.1", "-p", str(PORT), "-m", "3072", "-t", "2",
            "-e", path]


def ready(proc, log):
    """Until the server answers a version (Moat: until its ready line, which follows the restore)."""
    deadline = time.time() + LIMIT
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit("server exited: " + open(log).read()[-2000:])
        if mode == "moat" and "moat ready" not in open(log).read():
            time.sleep(0.01)
            continue
        try:
            s = socket.create_connection(("127.0.0.1", PORT), timeout=1)
            s.sendall(b"version\r\n")
            if s.recv(100).startswith(b"VERSION"):
                s.close()
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise SystemExit("not ready in %d s" % LIMIT)


def stat(name):
    s = socket.create_connection(("127.0.0.1", PORT), timeout=30)
    s.sendall(b"stats\r\n")
    data = b""
    while not data.endswith(b"END\r\n"):
        data += s.recv(65536)
    s.close()
    for line in data.decode().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == name:
            return int(parts[2])


def fill():
    s = socket.create_connection(("127.0.0.1", PORT), timeout=60)
    value = b"v" * size
    batch = []
    for i in range(items):
        batch.append(b"set key:%010d 0 0 %d noreply\r\n%s\r\n" % (i, size, value))
        if len(batch) == 1000:
            s.sendall(b"".join(batch))
            batch = []
    if batch:
        s.sendall(b"".join(batch))
    s.sendall(b"version\r\n")
    data = b""
    while b"VERSION" not in data:
        data += s.recv(65536)
    s.close()


work = tempfile.mkdtemp(prefix="warm-", dir=os.environ.get("SNAPSHOT_DIR") or ("/dev/shm" if mode == "memcached" else "/var/tmp"))
os.chmod(work, 0o700)
if os.geteuid() == 0:
    nobody = pwd.getpwnam("nobody")
    os.chown(work, nobody.pw_uid, nobody.pw_gid)
path = os.path.join(work, "cache")
log = os.path.join(work, "log")
proc = None
try:
    proc = subprocess.Popen(command(path), stdout=open(log, "w"), stderr=subprocess.STDOUT)
    ready(proc, log)
    t = time.time()
    fill()
    fill_s = time.time() - t
    stored = stat("curr_items")
    rss_full = rss_kb(proc.pid)
    peak = [rss_full]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kb(proc.pid))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    t = time.time()
    proc.send_signal(signal.SIGTERM if mode == "moat" else signal.SIGUSR1)
    proc.wait(timeout=LIMIT)
    stop_s = time.time() - t
    stop.set()
    watcher.join()
    size_on_disk = os.path.getsize(path) if os.path.exists(path) else 0
    if mode == "memcached":
        # memcached 1.6.18 refuses its own memory file when restarted in the second it stopped
        # ("restart incompatible due to setting for [stop_time]"): wait, and leave the wait out.
        time.sleep(2)
    t = time.time()
    proc = subprocess.Popen(command(path), stdout=open(log, "a"), stderr=subprocess.STDOUT)
    ready(proc, log)
    start_s = time.time() - t
    restored = stat("curr_items")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    print(f"{mode} {items} x {size} B{' encrypted' if keyfile else ''}: filled {stored} items in {fill_s:.1f} s, "
          f"RSS {rss_full // 1024} MiB; stop {stop_s:.2f} s (peak RSS {peak[0] // 1024} MiB, "
          f"+{(peak[0] - rss_full) // 1024} MiB); file {size_on_disk / 1048576:.0f} MiB; "
          f"start {start_s:.2f} s with {restored} items")
    for line in open(log):
        if "warm restart:" in line:
            print("  " + line.strip()[-200:])
finally:
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)
    shutil.rmtree(work, ignore_errors=True)
