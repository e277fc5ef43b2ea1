"""Adversarial framing and resource tests (issue 17, area "frame"): every attack here was possible once
and must stay closed. Each test drives the real server over loopback with raw sockets."""

from moat_support import Conn

# Finding 2: a data block must never run as commands.

INJECTED = b"set injected 0 0 1\r\nX\r\n"


def _attack(server, payload, timeout=2.0):
    """Sends `payload` on a fresh connection; returns (everything answered, whether the server closed)."""
    with Conn.to(server) as c:
        c.send(payload)
        return c.read_until_closed(timeout=timeout)


def _not_injected(server):
    with Conn.to(server) as c:
        return c.get(b"injected") is None


def test_ms_refused_key_swallows_block(server):
    """A rejected ms (key over 250 bytes) swallows its declared block instead of running it as commands."""
    payload = b"ms " + b"k" * 251 + b" 17\r\n" + INJECTED + b"get injected\r\n"
    data, _ = _attack(server, payload)
    assert b"STORED" not in data and b"VALUE injected" not in data, data
    assert data.startswith(b"CLIENT_ERROR bad command line format\r\n"), data
    # The same with an exact length: the block is swallowed and the connection goes on.
    block = b"set injected 0 0 1"
    with Conn.to(server) as c:
        c.send(b"ms " + b"k" * 251 + b" %d\r\n" % len(block) + block + b"\r\nmn\r\n")
        assert c.readline() == b"CLIENT_ERROR bad command line format"
        assert c.readline() == b"MN"
    assert _not_injected(server)


def test_ms_unreadable_length_closes(server):
    """An ms whose length cannot be read (the block cannot be found) closes instead of reading it as commands."""
    for length in (b"abc", b"-1", b"1x", b"99999999999999999999999"):
        data, closed = _attack(server, b"ms k " + length + b"\r\n" + INJECTED)
        assert closed, (length, data)
        assert data == b"CLIENT_ERROR bad command line format\r\n", (length, data)
    assert _not_injected(server)


def test_storage_key_with_space_closes(server):
    """A key with spaces (token count or length field shifted) in set/add/replace/append/prepend/cas closes."""
    value = b"set injected 0 0 1\r\nX"
    for verb in (b"set", b"add", b"replace", b"append", b"prepend", b"cas"):
        cas = b" 1" if verb == b"cas" else b""
        # Two spaces: the token count is wrong (memcached answers ERROR and runs the block).
        line = b"%s a b c 0 0 %d%s\r\n" % (verb, len(value), cas)
        data, closed = _attack(server, line + value + b"\r\n")
        assert closed, (verb, data)
        assert data == b"ERROR\r\n", (verb, data)
        # One space: one token too many, every field shifted (the length read is an exptime "0").
        shifted = b"\r\n" + value
        line = b"%s a b 0 0 %d%s\r\n" % (verb, len(shifted), cas)
        data, closed = _attack(server, line + shifted + b"\r\n")
        assert closed, (verb, data)
        assert b"STORED" not in data, (verb, data)
    assert _not_injected(server)


def test_bad_data_chunk_closes(server):
    """A data block that does not end with CRLF where its length says closes the connection."""
    # An accepted line whose block is longer than declared.
    data, closed = _attack(server, b"set k 0 0 1\r\nXY\r\n" + INJECTED)
    assert closed, data
    assert data == b"CLIENT_ERROR bad data chunk\r\n", data
    # A refused line (bad flags) whose swallowed block does not end where declared.
    data, closed = _attack(server, b"set k 0 xyz 1\r\nXY\r\n" + INJECTED)
    assert closed, data
    assert data == b"CLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad data chunk\r\n", data
    # ms too.
    data, closed = _attack(server, b"ms k 1\r\nXY\r\n" + INJECTED)
    assert closed, data
    assert data == b"CLIENT_ERROR bad data chunk\r\n", data
    assert _not_injected(server)
    with Conn.to(server) as c:
        assert c.get(b"k") is None


# ---- findings 5, 6, 12 below ----
