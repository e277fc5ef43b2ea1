"""TLS connections on the epoll loops, for the behaviours the plaintext tests prove elsewhere: the drain
on stop (replies out, then close_notify), a client that never reads its replies, and slow clients
during the handshake and after it. Certificates come from test_tls's fixture."""

import signal
import socket
import ssl
import time

import pytest

from moat_support import Conn, wait_until
from test_tls import context, pki, tls_args  # noqa: F401 - pki is a fixture

pytestmark = pytest.mark.moat_only


def raw_tls(srv, pki, rcvbuf=None):  # noqa: F811 - pki is the fixture's value
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    raw.settimeout(10)
    raw.connect(srv.addr)
    # Ragged EOFs raise: a clean end (close_notify) is told apart from a bare FIN.
    return context(pki).wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)


def test_stop_drains_tls_replies_then_sends_close_notify(server_factory, pki):  # noqa: F811
    srv = server_factory.start(args=tls_args(pki, "-I", "1m"))
    with raw_tls(srv, pki) as t:
        c = Conn(t)
        assert c.store(b"set", b"big", b"x" * 100_000) == b"STORED"
    t = raw_tls(srv, pki, rcvbuf=4096)
    t.sendall(b"get big\r\n" * 40)  # 4 MB of replies: most wait in the server when it is told to stop
    time.sleep(0.5)
    srv.proc.send_signal(signal.SIGTERM)
    data = bytearray()
    clean = False
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            chunk = t.recv(1 << 16)
        except ssl.SSLEOFError:
            break  # FIN without close_notify: a truncation
        if not chunk:
            clean = True
            break
        data += chunk
    t.close()
    reply = b"VALUE big 0 100000\r\n" + b"x" * 100_000 + b"\r\nEND\r\n"
    assert bytes(data) == reply * 40, (len(data), len(reply) * 40)
    assert clean, "the replies did not end with close_notify"
    assert srv.wait_exit(15) == 0, srv.stderr_text()[-2000:]


def test_tls_client_that_never_reads_is_closed(server_factory, pki):  # noqa: F811
    srv = server_factory.start(args=tls_args(pki, "-o", "output_timeout=1", "-I", "1m"))
    with raw_tls(srv, pki) as t:
        assert Conn(t).store(b"set", b"big", b"x" * 500_000) == b"STORED"
    hog = raw_tls(srv, pki, rcvbuf=4096)
    hog.sendall(b"get big big big big big big big big\r\n" * 20)  # ~80 MB of replies, never read
    assert wait_until(lambda: '"reason":"output_stalled"' in srv.stderr_text(), 6), srv.stderr_text()[-2000:]
    hog.close()
    with raw_tls(srv, pki) as t:
        assert Conn(t).cmd(b"version").startswith(b"VERSION")
    status = open("/proc/%d/status" % srv.pid).read()
    rss_kb = int([line for line in status.splitlines() if line.startswith("VmRSS")][0].split()[1])
    assert rss_kb < 200_000, rss_kb


def dribble(sock, data, interval):
    """Sends data a byte at a time, waiting up to interval for an answer after each; the seconds until
    the server closed the connection (None if it never did)."""
    start = time.monotonic()
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
            sock.settimeout(interval)
            if sock.recv(100) == b"":
                return time.monotonic() - start
        except socket.timeout:
            continue
        except OSError:  # a reset, or on TLS a close without close_notify
            return time.monotonic() - start
    return None


def test_slowloris_during_the_handshake_and_after_it(server_factory, pki):  # noqa: F811
    srv = server_factory.start(args=tls_args(pki, "-o", "ssl_handshake_timeout=1,command_timeout=1"))
    # A ClientHello dribbled a byte at a time does not hold the connection past the handshake deadline.
    with socket.create_connection(srv.addr, timeout=5) as s:
        closed_after = dribble(s, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 20, 0.25)
        assert closed_after is not None and closed_after < 3, closed_after
    assert wait_until(lambda: '"reason":"tls_handshake_timeout"' in srv.stderr_text(), 5)
    # After the handshake, a request dribbled in records is held to the command deadline.
    with raw_tls(srv, pki) as t:
        closed_after = dribble(t, b"get slowloris-key-that-never-ends", 0.2)
        assert closed_after is not None and closed_after < 4, closed_after
    assert wait_until(lambda: '"reason":"slow_command"' in srv.stderr_text(), 5)
    with raw_tls(srv, pki) as t:
        assert Conn(t).cmd(b"version").startswith(b"VERSION")


def _rss_kib(pid):
    status = open("/proc/%d/status" % pid).read()
    return int([line for line in status.splitlines() if line.startswith("VmRSS")][0].split()[1])


def test_idle_tls_connections_give_their_buffers_back(server_factory, pki):  # noqa: F811
    """OpenSSL's record buffers (about 34 KB a connection) and memory BIOs are kept while a connection
    is busy and given back, with the plaintext buffers, after a second of quiet."""
    srv = server_factory.start(args=tls_args(pki, "-c", "1024"))
    conns = []
    before = _rss_kib(srv.pid)
    try:
        for _ in range(400):
            conns.append(raw_tls(srv, pki))
        value = b"v" * 15_000  # about one full record each way: every connection's buffers are touched
        for i, t in enumerate(conns):
            c = Conn(t)
            assert c.store(b"set", b"k%d" % i, value) == b"STORED"
            assert c.get(b"k%d" % i) == value
        busy = _rss_kib(srv.pid)
        # Seen: 63 MB over the baseline while busy (6 MB of it the values), 44 MB back once idle; 15 MB
        # back when only the plaintext buffers were released, 25 MB without the memory BIOs.
        assert wait_until(lambda: _rss_kib(srv.pid) < busy - 30 * 1024, 8), (before, busy, _rss_kib(srv.pid))
        # And an idle connection is served again, its buffers taken anew.
        for t in conns[:50]:
            assert Conn(t).cmd(b"version").startswith(b"VERSION")
    finally:
        for t in conns:
            t.close()
    assert srv.alive()
