"""Helpers for Moat's integration tests (server process control, raw protocol).

The tests start the real server binary as a subprocess on a free loopback port.

Environment:
  MOAT_BIN         path of the moat binary (default: <repo>/.build/debug/moat).
  MOAT_SERVER_CMD  optional command template used *instead of* moat, with
                   {port} (and optionally {listen}) placeholders, e.g.
                   'memcached -U 0 -u nobody -l 127.0.0.1 -p {port}'.
                   Extra per-test flags are appended to it.  In this mode
                   tests marked `moat_only` (Moat's refusal behaviours and
                   other deliberate differences) are skipped.
  MOAT_RUN_ALL=1   run `moat_only` tests even with MOAT_SERVER_CMD (useful
                   to check that they do fail against another server).
  MOAT_EXTRA_ARGS  flags appended to every moat command line, e.g. '-t 1'.
"""

import contextlib
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SERVER_CMD = os.environ.get("MOAT_SERVER_CMD", "").strip()
IS_MOAT = not SERVER_CMD
RUN_ALL = os.environ.get("MOAT_RUN_ALL") == "1"
EXTRA_ARGS = shlex.split(os.environ.get("MOAT_EXTRA_ARGS", ""))
START_TIMEOUT = 10.0
SOCK_TIMEOUT = 5.0


def moat_bin():
    return os.path.abspath(
        os.environ.get("MOAT_BIN") or os.path.join(REPO_ROOT, ".build", "debug", "moat")
    )


# --------------------------------------------------------------------------
# helpers


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    """A port that is currently free on host (binding port 0)."""
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_port_both():
    """A port free on both 127.0.0.1 and (if present) ::1 (moat's default listens on both)."""
    for _ in range(50):
        port = free_port()
        if not has_ipv6_loopback():
            return port
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
                s.bind(("::1", port))
            return port
        except OSError:
            continue
    return free_port()


_ipv6 = None


def has_ipv6_loopback():
    global _ipv6
    if _ipv6 is None:
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
                s.bind(("::1", 0))
            _ipv6 = True
        except OSError:
            _ipv6 = False
    return _ipv6


def make_tmpdir():
    """A short /tmp directory writable by an unprivileged server user (unix socket paths are short)."""
    d = tempfile.mkdtemp(prefix="moat-it-", dir="/tmp")
    os.chmod(d, 0o1777)
    return d


def serving_account(path):
    """The server drops root to nobody: files and directories it writes or reads again are nobody's."""
    if os.geteuid() == 0:
        import pwd
        nobody = pwd.getpwnam("nobody")
        os.chown(path, nobody.pw_uid, nobody.pw_gid)


def add_user(credentials, name, password):
    """`moat user add NAME` into a credentials file (few iterations: tests log in often), readable by the
    serving account."""
    r = subprocess.run([moat_bin(), "user", "add", name, "--credentials", credentials, "--iterations", "4096"],
                       input=(password + "\n").encode(), capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    serving_account(credentials)


def state_dir(server_factory):
    """A directory for warm-restart snapshots that only the serving account may use (as systemd's
    StateDirectory=, mode 0700)."""
    d = os.path.join(server_factory.tmpdir(), "state")
    os.mkdir(d, 0o700)
    serving_account(d)
    return d


class Server:
    def __init__(self, cmd, port, host, unix_path, stderr_path, tmpdir):
        self.cmd = cmd
        self.port = port
        self.host = host
        self.unix_path = unix_path
        self.stderr_path = stderr_path
        self.tmpdir = tmpdir
        self._stderr_f = open(stderr_path, "wb")
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._stderr_f,
            stderr=self._stderr_f,
            start_new_session=True,
        )

    @property
    def pid(self):
        return self.proc.pid

    @property
    def addr(self):
        return (self.host, self.port)

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def alive(self):
        return self.proc.poll() is None

    def connect(self, timeout=SOCK_TIMEOUT):
        if self.unix_path:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            s.connect(self.unix_path)
            return s
        return socket.create_connection(self.addr, timeout=timeout)

    def wait_ready(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    "server exited early with rc=%s\ncmd: %s\nstderr:\n%s"
                    % (self.proc.returncode, " ".join(self.cmd), self.stderr_text())
                )
            try:
                s = self.connect(timeout=0.5)
                s.close()
                return
            except OSError as e:
                last = e
            time.sleep(0.05)
        raise RuntimeError(
            "server did not accept connections within %.0fs (%r)\ncmd: %s\nstderr:\n%s"
            % (timeout, last, " ".join(self.cmd), self.stderr_text())
        )

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        """Kill (SIGKILL: fast, the tests do not rely on graceful exit) and reap."""
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        if self.wait_exit(10) is None:
            raise RuntimeError("server pid %d did not die after SIGKILL" % self.proc.pid)
        self._stderr_f.close()


def build_cmd(port, args=(), listen="127.0.0.1"):
    """Server command line. listen=None: no -l added (the test passes its own)."""
    if SERVER_CMD:
        cmd = shlex.split(SERVER_CMD.format(port=port, listen=listen or "127.0.0.1"))
        return cmd + list(args)
    cmd = [moat_bin(), "serve", "-p", str(port)]
    if listen:
        cmd += ["-l", listen]
    return cmd + list(args) + EXTRA_ARGS


class ServerFactory:
    def __init__(self, request):
        self.request = request
        self.servers = []
        self.tmpdirs = []
        if not SERVER_CMD and not os.access(moat_bin(), os.X_OK):
            pytest.fail("moat binary not found at %s (build it or set MOAT_BIN)" % moat_bin())

    def tmpdir(self):
        d = make_tmpdir()
        self.tmpdirs.append(d)
        return d

    def _new(self, args, listen, port, host, unix_path, cmd=None):
        if port is None:
            port = free_port_both() if IS_MOAT else free_port()
        d = self.tmpdir()
        if cmd is None:
            cmd = build_cmd(port, args, listen)
        else:  # a full command line; "{port}" is replaced
            cmd = [a.replace("{port}", str(port)) for a in cmd]
        srv = Server(cmd, port, host, unix_path, os.path.join(d, "stderr.log"), d)
        self.servers.append(srv)
        self.request.node._moat_servers = self.servers
        return srv

    def start(self, args=(), listen="127.0.0.1", port=None, host="127.0.0.1", unix_path=None,
              wait=True, cmd=None):
        """Start a server and wait until it accepts connections."""
        srv = self._new(args, listen, port, host, unix_path, cmd)
        if wait:
            try:
                srv.wait_ready()
            except RuntimeError as e:
                pytest.fail(str(e))
        return srv

    def start_expect_exit(self, args=(), listen="127.0.0.1", port=None, timeout=START_TIMEOUT):
        """Start a server that should refuse to start; returns (rc, stderr).
        rc is None if it was still running after `timeout` (then it is killed)."""
        srv = self._new(args, listen, port, "127.0.0.1", None)
        rc = srv.wait_exit(timeout)
        return rc, srv.stderr_text()

    def close(self):
        for srv in self.servers:
            srv.stop()
        for d in self.tmpdirs:
            shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------
# raw protocol helpers


class Conn:
    """Minimal line/block reader over a socket, every read bounded."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    @classmethod
    def to(cls, server, timeout=SOCK_TIMEOUT):
        return cls(server.connect(timeout=timeout))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        d = self.sock.recv(65536)
        if not d:
            raise EOFError("connection closed by server (buffer=%r)" % self.buf[:200])
        self.buf += d

    def readline(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > 4 * 1024 * 1024:
                raise AssertionError("no line terminator in %d bytes" % len(self.buf))
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def readexact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def cmd(self, line):
        """Send one command line, return the first reply line."""
        self.send(line if line.endswith(b"\r\n") else line + b"\r\n")
        return self.readline()

    def store(self, verb, key, value, flags=0, exptime=0, extra=b""):
        hdr = b"%s %s %d %d %d%s\r\n" % (verb, key, flags, exptime, len(value), extra)
        self.send(hdr + value + b"\r\n")
        return self.readline()

    def read_values(self):
        """Read VALUE blocks up to END -> {key: (flags, value, cas_or_None)}."""
        out = {}
        while True:
            line = self.readline()
            if line == b"END":
                return out
            parts = line.split()
            assert parts[0] == b"VALUE", "unexpected reply line %r" % line
            n = int(parts[3])
            data = self.readexact(n + 2)
            assert data[-2:] == b"\r\n", "data block not terminated: %r" % data[-10:]
            out[parts[1]] = (int(parts[2]), data[:-2], int(parts[4]) if len(parts) > 4 else None)

    def get(self, key):
        self.send(b"get " + key + b"\r\n")
        v = self.read_values()
        return v[key][1] if key in v else None

    def stats(self, sub=b""):
        self.send(b"stats" + (b" " + sub if sub else b"") + b"\r\n")
        lines = []
        while True:
            line = self.readline()
            if line == b"END":
                return lines
            lines.append(line)

    def stats_dict(self, sub=b""):
        d = {}
        for line in self.stats(sub):
            parts = line.split(b" ", 2)
            assert parts[0] == b"STAT", "bad stats line %r" % line
            d[parts[1].decode()] = parts[2].decode() if len(parts) > 2 else ""
        return d

    def sync(self, max_lines=20):
        """Send `version` and read up to its reply; returns the lines seen before it."""
        self.send(b"version\r\n")
        before = []
        for _ in range(max_lines):
            line = self.readline()
            if line.startswith(b"VERSION "):
                return before
            before.append(line)
        raise AssertionError("no VERSION reply; got %r" % before)

    def read_until_closed(self, timeout=5.0, limit=1 << 20):
        """Read everything until the server closes. Returns (data, closed)."""
        deadline = time.monotonic() + timeout
        data, self.buf = self.buf, b""
        while time.monotonic() < deadline and len(data) < limit:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                return data, False
            except ConnectionResetError:
                return data, True
            if not d:
                return data, True
            data += d
        return data, False


def connect_from(srv, source, family=socket.AF_INET, host=None):
    """A Conn to srv from a chosen local address (127.0.0.2, 127.0.0.3, ... stand in for other hosts)."""
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(SOCK_TIMEOUT)
    s.bind((source, 0))
    s.connect((host or srv.host, srv.port))
    return Conn(s)


def wait_until(pred, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()


def all_thread_uids(pid):
    """{tid: (real, effective, saved, fs)} for every thread of pid."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            out[int(tid)] = proc_status_ids(pid, "/proc/%d/task/%s/status" % (pid, tid))
        except (OSError, AssertionError):
            pass  # thread exited meanwhile
    return out


def proc_status_ids(pid, path=None):
    """(real, effective, saved, fs) uids from /proc/PID/status."""
    with open(path or "/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                return tuple(int(x) for x in line.split()[1:5])
    raise AssertionError("no Uid line for pid %d" % pid)


# --------------------------------------------------------------------------
# network namespaces (root only; every one made is deleted)


def run_ok(args, stdin=None, timeout=30, env=None):
    """Runs a command that must succeed (bounded); its CompletedProcess."""
    r = subprocess.run(args, input=stdin, capture_output=True, timeout=timeout, env=env)
    assert r.returncode == 0, "%s: %s" % (" ".join(args), r.stderr.decode(errors="replace"))
    return r


@contextlib.contextmanager
def network_namespaces(*names):
    """Makes the named namespaces (skips the test where that is not permitted) and deletes them afterwards."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (CI runs as root)")
    made = []
    try:
        for ns in names:
            r = subprocess.run(["ip", "netns", "add", ns], capture_output=True, timeout=30)
            if r.returncode != 0 and not made and b"not permitted" in r.stderr:
                pytest.skip("ip netns add is not permitted here (needs CAP_SYS_ADMIN): %s" % r.stderr.decode().strip())
            assert r.returncode == 0, r.stderr.decode()
            made.append(ns)
        yield names
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


@contextlib.contextmanager
def veth_pair(prefix, short, dad=True):
    """Two namespaces joined by a veth pair, both ends and loopback up: (server ns, client ns, server dev, client dev).
    `dad=False` turns duplicate address detection off, so link-local addresses are usable at once."""
    tag = "%d" % (os.getpid() % 100000)
    server, client = "%s-s%s" % (prefix, tag), "%s-c%s" % (prefix, tag)
    veth_s, veth_c = "%ss%s" % (short, tag), "%sc%s" % (short, tag)
    with network_namespaces(server, client):
        run_ok(["ip", "link", "add", veth_s, "netns", server, "type", "veth", "peer", "name", veth_c, "netns", client])
        for ns, dev in ((server, veth_s), (client, veth_c)):
            if not dad:
                run_ok(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.%s.accept_dad=0" % dev])
            run_ok(["ip", "-n", ns, "link", "set", dev, "up"])
            run_ok(["ip", "-n", ns, "link", "set", "lo", "up"])
        yield server, client, veth_s, veth_c
