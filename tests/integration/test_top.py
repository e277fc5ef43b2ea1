"""`moat top` against real servers: Moat plain, with ASCII auth, over TLS with a verified certificate and
a login, and Debian's memcached; refusals when the login or the certificate is wrong; and the live view
inside tmux, read back with capture-pane."""
import os
import shutil
import subprocess
import threading

from moat_support import Conn, free_port, moat_bin, wait_until
from test_auth import PASSWORD, credentials  # noqa: F401 (a fixture)
from test_tls import pki, tls_args  # noqa: F401 (a fixture)


def top(*args, env=None, timeout=30):
    return subprocess.run([moat_bin(), "top", "--once", "--interval", "0.5", "--color", "never", *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def traffic(srv, gets=20, hits=15, login=None):
    with Conn.to(srv) as c:
        if login:
            data = ("%s %s" % login).encode()
            assert c.cmd(b"set auth 0 0 %d\r\n%s" % (len(data), data)) == b"STORED"
        for i in range(hits):
            assert c.store(b"set", b"k%d" % i, b"v") == b"STORED"
        for i in range(gets):
            c.get(b"k%d" % i)


def row(output, server):
    lines = [line for line in output.splitlines() if line.startswith(server)]
    assert lines, output
    return lines[0].split()


def test_moat_plain(server_factory):
    srv = server_factory.start()
    traffic(srv)
    res = top("127.0.0.1:%d" % srv.port)
    assert res.returncode == 0, res.stderr
    header = res.stdout.splitlines()[0].split()
    assert header[:3] == ["server", "hit%", "get/s"] and "evict/s" in header and "conns" in header
    fields = row(res.stdout, "127.0.0.1:%d" % srv.port)
    assert fields[1] == "-"  # no gets between the two readings
    assert "security" in res.stdout  # Moat counts security events
    assert "/64.0M" in res.stdout

    # Gets while it watches: three keys of four exist, so the interval's hit ratio is about 75%.
    stop = threading.Event()

    def load():
        with Conn.to(srv) as c:
            while not stop.is_set():
                for i in (0, 1, 2, 999):
                    c.get(b"k%d" % i)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        res = top("--interval", "1", "127.0.0.1:%d" % srv.port)
    finally:
        stop.set()
        worker.join(timeout=10)
    fields = row(res.stdout, "127.0.0.1:%d" % srv.port)
    assert abs(float(fields[1]) - 75) < 5 and float(fields[2]) > 10, res.stdout


def test_moat_with_ascii_auth(server_factory, credentials, tmp_path):  # noqa: F811
    srv = server_factory.start(args=["-S", "--credentials", credentials])
    traffic(srv, login=("bob", PASSWORD))
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    res = top("--user", "bob", "--password-file", str(password_file), "127.0.0.1:%d" % srv.port)
    assert res.returncode == 0, res.stdout + res.stderr
    assert row(res.stdout, "127.0.0.1:%d" % srv.port)[1] != "unreachable:"
    # The password from the environment works too; a wrong one is refused, and nothing is shown.
    env = dict(os.environ, MOAT_PASSWORD=PASSWORD)
    assert top("--user", "alice", "127.0.0.1:%d" % srv.port, env=env).returncode == 0
    env["MOAT_PASSWORD"] = "wrong"
    res = top("--user", "alice", "127.0.0.1:%d" % srv.port, env=env)
    assert res.returncode == 1 and "login refused" in res.stdout, res.stdout
    # Without a login the server answers stats with an error.
    res = top("127.0.0.1:%d" % srv.port)
    assert res.returncode == 1 and "unreachable" in res.stdout


def test_moat_over_tls_with_login(server_factory, pki, credentials, tmp_path):  # noqa: F811
    srv = server_factory.start(args=tls_args(pki, "-S", "--credentials", credentials))
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD)
    args = ["--tls", "--ca-file", pki("ca.pem"), "--server-name", "localhost", "--user", "bob",
            "--password-file", str(password_file), "127.0.0.1:%d" % srv.port]
    res = top(*args)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "security" in res.stdout
    # A certificate from another CA is not trusted: no password is sent.
    res = top("--tls", "--ca-file", pki("otherca.pem"), "--server-name", "localhost", "--user", "bob",
              "--password-file", str(password_file), "127.0.0.1:%d" % srv.port)
    assert res.returncode == 1 and "TLS" in res.stdout, res.stdout
    # TLS without a CA file is refused before anything is sent.
    res = top("--tls", "127.0.0.1:%d" % srv.port)
    assert res.returncode != 0 and "--ca-file" in res.stderr


def test_memcached(tmp_path):
    port = free_port()
    args = ["memcached", "-p", str(port), "-l", "127.0.0.1", "-U", "0"] + (["-u", "nobody"] if os.geteuid() == 0 else [])
    proc = subprocess.Popen(args)
    try:
        assert wait_until(lambda: top("127.0.0.1:%d" % port).returncode == 0, 10)
        res = top("127.0.0.1:%d" % port)
        fields = row(res.stdout, "127.0.0.1:%d" % port)
        assert len(fields) >= 10
        assert "security" not in res.stdout  # memcached has no security counters
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_live_view_in_tmux(server_factory):
    assert shutil.which("tmux"), "tmux is needed (scripts/test.sh installs it)"
    srv = server_factory.start()
    session = "moat-top-%d" % os.getpid()
    command = "%s top --interval 0.3 127.0.0.1:%d" % (moat_bin(), srv.port)
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "20", command], check=True, timeout=10)
    try:
        def screen():
            return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True,
                                  timeout=5).stdout

        assert wait_until(lambda: "127.0.0.1:%d" % srv.port in screen(), 10), screen()
        first = screen()
        assert first.startswith("moat top: 1 server(s)") and "hit%" in first
        # Traffic shows up in the next refreshes: 200 gets in a burst make a nonzero get rate.
        with Conn.to(srv) as c:
            for i in range(200):
                c.get(b"k%d" % i)
        def get_rate():
            fields = row(screen(), "127.0.0.1:%d" % srv.port)
            return float(fields[2]) if fields[1] != "unreachable:" else 0
        assert wait_until(lambda: get_rate() > 0, 10), screen()
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], timeout=10)
