"""Raw-socket robustness: malformed, hostile and oddly framed input."""

import os
import random
import socket
import time

import pytest

from moat_support import Conn

BAD_FORMAT = b"CLIENT_ERROR bad command line format"


def assert_only_errors(lines):
    """Lines seen between an error and the next sync: only error replies allowed (a server may or
    may not swallow the data block that follows a rejected storage command)."""
    for l in lines:
        assert l == b"ERROR" or l.startswith(b"CLIENT_ERROR"), "unexpected reply %r" % l


def test_unknown_command(server):
    with Conn.to(server) as c:
        assert c.cmd(b"bogus_command arg") == b"ERROR"
        assert c.cmd(b"") == b"ERROR"
        assert c.sync() == []


def test_key_too_long(server):
    key = b"k" * 251
    with Conn.to(server) as c:
        assert c.cmd(b"get " + key) == BAD_FORMAT
        assert c.sync() == []
        c.send(b"set " + key + b" 0 0 1\r\nx\r\n")
        assert c.readline() == BAD_FORMAT
        assert_only_errors(c.sync())
        # 250 bytes is fine
        ok = b"k" * 250
        assert c.store(b"set", ok, b"v") == b"STORED"
        assert c.get(ok) == b"v"


@pytest.mark.moat_only  # memcached accepts control characters in text-protocol keys
def test_key_with_control_char(server):
    with Conn.to(server) as c:
        c.send(b"set a\x01b 0 0 1\r\nx\r\n")
        assert c.readline() == BAD_FORMAT
        assert_only_errors(c.sync())
        assert c.cmd(b"get a\x01b") == BAD_FORMAT
        assert c.sync() == []
        assert c.cmd(b"delete a\x7fb") == BAD_FORMAT
        assert c.sync() == []


@pytest.mark.moat_only  # memcached reads on (the data block, if any, as commands)
def test_negative_length(server):
    with Conn.to(server) as c:
        assert c.cmd(b"set k 0 0 -1") == BAD_FORMAT
        # Without a length the data block cannot be found: Moat closes.
        assert c.read_until_closed(timeout=5) == (b"", True)
    with Conn.to(server) as c:
        assert c.get(b"k") is None


def test_non_numeric_flags(server):
    with Conn.to(server) as c:
        c.send(b"set k abc 0 1\r\nx\r\n")
        assert c.readline() == BAD_FORMAT
        assert_only_errors(c.sync())
        c.send(b"set k 0 xyz 1\r\nx\r\n")
        assert c.readline() == BAD_FORMAT
        assert_only_errors(c.sync())
        assert c.get(b"k") is None


@pytest.mark.moat_only  # memcached reads on (the data block as commands)
def test_non_numeric_length_closes(server):
    with Conn.to(server) as c:
        c.send(b"set k 0 0 1z\r\nx\r\n")
        assert c.readline() == BAD_FORMAT
        assert c.read_until_closed(timeout=5) == (b"", True)
    with Conn.to(server) as c:
        assert c.get(b"k") is None


def test_bad_data_chunk(server):
    with Conn.to(server) as c:
        c.send(b"set k 0 0 3\r\nabcde\r\n")
        assert c.readline() == b"CLIENT_ERROR bad data chunk"
    # Moat closes here (framing is lost); memcached reads on.
    with Conn.to(server) as c:
        assert c.get(b"k") is None
        assert c.store(b"set", b"k", b"abc") == b"STORED"
        assert c.get(b"k") == b"abc"


def test_line_too_long_closes(server):
    with Conn.to(server) as c:
        c.send(b"x" * 3000)
        data, closed = c.read_until_closed(timeout=5)
        assert closed, "connection not closed after 3000 bytes without newline (got %r)" % data[:200]
        assert data in (b"", b"CLIENT_ERROR line too long\r\n"), data[:200]
    with Conn.to(server) as c:
        assert c.sync() == []


@pytest.mark.moat_only  # memcached 1.6.18 closes silently
def test_line_too_long_message(server):
    with Conn.to(server) as c:
        c.send(b"set " + b"k" * 2996)
        data, closed = c.read_until_closed(timeout=5)
        assert closed
        assert data == b"CLIENT_ERROR line too long\r\n"


def test_long_get_line_allowed(server):
    keys = [b"key%05d" % i for i in range(500)]  # ~4.5 KB get line
    with Conn.to(server) as c:
        assert c.store(b"set", keys[-1], b"last") == b"STORED"
        c.send(b"get " + b" ".join(keys) + b"\r\n")
        assert c.read_values() == {keys[-1]: (0, b"last", None)}


def test_binary_garbage_server_survives(server):
    rng = random.Random(1234)
    chunks = []
    for _ in range(200):
        n = rng.randint(0, 80)
        chunks.append(bytes(rng.randrange(256) for _ in range(n)) + rng.choice([b"\n", b"\r\n"]))
    garbage = b"".join(chunks)
    if garbage[:1] == b"\x80":
        garbage = b"z" + garbage
    for _ in range(2):
        try:
            s = server.connect()
            try:
                s.sendall(garbage)
            except OSError:
                pass  # server may close early
            c = Conn(s)
            c.read_until_closed(timeout=0.5)
            s.close()
        except OSError:
            pass
    assert server.alive(), "server died on garbage input"
    with Conn.to(server) as c:
        assert c.sync() == []
        assert c.store(b"set", b"k", b"v") == b"STORED"
        assert c.get(b"k") == b"v"


def test_http_request_closed_without_reply(server):
    with Conn.to(server) as c:
        c.send(b"GET / HTTP/1.1\r\n")
        data, closed = c.read_until_closed(timeout=5)
        assert closed and data == b"", (closed, data)
    with Conn.to(server) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data, closed = c.read_until_closed(timeout=5)
        assert closed and data == b"", (closed, data)


def test_pipelined_requests_in_order(server):
    n = 200
    req = b"".join(b"set p%d 0 0 %d\r\n%d\r\nget p%d\r\n" % (i, len(b"%d" % i), i, i) for i in range(n))
    req += b"get " + b" ".join(b"p%d" % i for i in range(n)) + b"\r\n"
    with Conn.to(server) as c:
        c.send(req)
        for i in range(n):
            assert c.readline() == b"STORED"
            assert c.readline() == b"VALUE p%d 0 %d" % (i, len(b"%d" % i))
            assert c.readline() == b"%d" % i
            assert c.readline() == b"END"
        vals = c.read_values()
        assert len(vals) == n
        assert c.sync() == []


def test_pipelined_order_of_keys_in_multiget(server):
    with Conn.to(server) as c:
        c.send(b"set a 0 0 1\r\n1\r\nset b 0 0 1\r\n2\r\nset c 0 0 1\r\n3\r\nget c a b\r\n")
        for _ in range(3):
            assert c.readline() == b"STORED"
        assert c.readline() == b"VALUE c 0 1"
        assert c.readline() == b"3"
        assert c.readline() == b"VALUE a 0 1"
        assert c.readline() == b"1"
        assert c.readline() == b"VALUE b 0 1"
        assert c.readline() == b"2"
        assert c.readline() == b"END"


def test_drip_fed(server):
    s = server.connect()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c = Conn(s)
    try:
        msg = b"set drip 7 0 11\r\nhello\r\nworl\r\nget drip\r\n"
        for b in msg:
            s.sendall(bytes([b]))
            time.sleep(0.002)
        assert c.readline() == b"STORED"
        assert c.readline() == b"VALUE drip 7 11"
        assert c.readexact(13) == b"hello\r\nworl\r\n"
        assert c.readline() == b"END"
    finally:
        c.close()


def test_huge_declared_length(server):
    n = 2_000_000
    with Conn.to(server, timeout=10) as c:
        assert c.store(b"set", b"k", b"old") == b"STORED"
        c.send(b"set k 0 0 %d\r\n" % n)
        c.send(b"y" * n + b"\r\n")
        assert c.readline() == b"SERVER_ERROR object too large for cache"
        # swallowed data produced no further replies; connection in sync
        assert c.sync() == []
        assert c.get(b"k") is None  # set of a too-large object removes the old value
        assert c.store(b"set", b"k2", b"fine") == b"STORED"
        assert c.get(b"k2") == b"fine"
    assert server.alive()


def test_incr_bad_delta(server):
    with Conn.to(server) as c:
        assert c.store(b"set", b"n", b"1") == b"STORED"
        assert c.cmd(b"incr n abc") == b"CLIENT_ERROR invalid numeric delta argument"
        assert c.cmd(b"incr n -1") == b"CLIENT_ERROR invalid numeric delta argument"
        assert c.cmd(b"decr n 99999999999999999999999") == b"CLIENT_ERROR invalid numeric delta argument"
        assert c.cmd(b"incr n 2") == b"3"
        assert c.cmd(b"incr missing 1") == b"NOT_FOUND"


def test_invalid_delete_and_flush_all_answer_as_memcached(server):
    """A noreply error stays silent (or every later reply would answer the wrong request); a flush_all
    delay that is not a number is an exptime error. Same replies from memcached 1.6.18."""
    with Conn.to(server) as c:
        assert c.store(b"set", b"k", b"v") == b"STORED"
        assert c.cmd(b"delete k 5") == b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]"
        c.send(b"delete k 5 noreply\r\n")
        assert c.sync() == []  # nothing before the version reply
        assert c.get(b"k") == b"v"  # and nothing was deleted
        assert c.cmd(b"flush_all soon") == b"CLIENT_ERROR invalid exptime argument"
        c.send(b"flush_all soon noreply\r\n")
        assert c.sync() == []
        assert c.get(b"k") == b"v"


def test_stats_detail_on_and_off_are_accepted(server):
    """Client libraries send `stats detail on` at connect: OK, as memcached (Moat changes nothing)."""
    with Conn.to(server) as c:
        assert c.cmd(b"stats detail on") == b"OK"
        assert c.cmd(b"stats detail off") == b"OK"
        assert c.sync() == []


def test_quit_closes(server):
    with Conn.to(server) as c:
        c.send(b"quit\r\n")
        data, closed = c.read_until_closed(timeout=5)
        assert closed and data == b""


def test_many_concurrent_clients(server):
    conns = [Conn.to(server) for _ in range(50)]
    try:
        for i, c in enumerate(conns):
            c.send(b"set c%d 0 0 1\r\n%d\r\n" % (i, i % 10))
        for c in conns:
            assert c.readline() == b"STORED"
        for i, c in enumerate(conns):
            assert c.get(b"c%d" % ((i + 1) % 50)) == b"%d" % (((i + 1) % 50) % 10)
    finally:
        for c in conns:
            c.close()


def test_peer_vanishing_mid_reply_does_not_hurt_the_server(server):
    # A client asks for a large reply and closes (with RST) before reading it: the server's write
    # fails with EPIPE/ECONNRESET, which must neither raise SIGPIPE in it nor disturb other clients.
    import struct
    value = b"p" * 500_000
    with Conn.to(server) as c:
        assert c.store(b"set", b"big", value) == b"STORED"
    for _ in range(20):
        s = socket.create_connection((server.host, server.port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.sendall(b"get big big big big\r\n")
        s.close()
    with Conn.to(server) as c:
        assert c.get(b"big") == value
        assert c.sync() == []


def test_half_closed_client_still_gets_its_replies(server):
    with Conn.to(server) as c:
        assert c.store(b"set", b"hc", b"v") == b"STORED"
    s = socket.create_connection((server.host, server.port), timeout=5)
    s.sendall(b"get hc\r\n")
    s.shutdown(socket.SHUT_WR)
    data = b""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    assert data == b"VALUE hc 0 1\r\nv\r\nEND\r\n"


def _rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_client_that_never_reads_cannot_grow_server_memory(server):
    # Each request names a 500 KB value 100 times (50 MB of replies); the client never reads.
    # The server must stop reading from it once its replies stop draining (back-pressure), so its
    # memory stays near where it started, and other clients are still served.
    value = b"r" * 500_000
    with Conn.to(server) as c:
        assert c.store(b"set", b"bp", value) == b"STORED"
    before = _rss_kb(server.pid)
    hog = socket.create_connection((server.host, server.port), timeout=5)
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog.setblocking(False)
    request = b"get" + b" bp" * 100 + b"\r\n"
    sent = 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and sent < 500 * len(request):
        try:
            sent += hog.send(request)
        except BlockingIOError:
            time.sleep(0.01)
    time.sleep(0.5)
    grown_mb = (_rss_kb(server.pid) - before) / 1024
    # A server that buffered the replies of even one request would grow by 50 MB.
    assert sent > 10 * len(request), sent
    assert grown_mb < 8, "server RSS grew by %.1f MB for a client that does not read" % grown_mb
    with Conn.to(server) as c:
        assert c.get(b"bp") == value
        assert c.sync() == []
    hog.close()


def _cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_paused_half_closed_client_does_not_spin_the_server(server):
    # The client asks for far more than the socket buffers hold, shuts down its sending side and
    # never reads: the server is paused on it, and the half-close must not wake it over and over.
    value = b"s" * 500_000
    with Conn.to(server) as c:
        assert c.store(b"set", b"spin", value) == b"STORED"
    hog = socket.create_connection((server.host, server.port), timeout=5)
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog.sendall(b"get" + b" spin" * 40 + b"\r\n")
    hog.shutdown(socket.SHUT_WR)
    time.sleep(0.5)
    before = _cpu_seconds(server.pid)
    time.sleep(1.5)
    used = _cpu_seconds(server.pid) - before
    assert used < 0.5, "server used %.2f s of CPU in 1.5 s while paused on a half-closed client" % used
    with Conn.to(server) as c:
        assert c.sync() == []
    hog.close()
