"""memcached's binary protocol (memccapable -b is in test_memccapable.py): pylibmc (binary=True), python-binary-memcached, raw frames."""

import struct

import pytest

from moat_support import Conn


def test_pylibmc_binary_round_trips(server):
    pylibmc = pytest.importorskip("pylibmc")
    c = pylibmc.Client(["127.0.0.1:%d" % server.port], binary=True,
                       behaviors={"cas": True, "connect_timeout": 5000, "receive_timeout": 5_000_000,
                                  "send_timeout": 5_000_000})
    try:
        assert c.set("k", b"v") is True
        assert c.get("k") == b"v"
        assert c.get("missing") is None
        assert c.set_multi({"a": b"1", "b": b"2"}) == []
        assert c.get_multi(["a", "b", "nope"]) == {"a": b"1", "b": b"2"}
        assert c.set("n", "10") is True
        assert c.incr("n", 5) == 15
        assert c.decr("n", 20) == 0
        assert c.add("k", b"x") is False
        assert c.replace("k", b"w") is True
        assert c.append("k", b"+") is True
        assert c.prepend("k", b"-") is True
        assert c.get("k") == b"-w+"
        value, cas = c.gets("k")
        assert value == b"-w+"
        assert c.cas("k", b"new", cas) is True
        assert c.cas("k", b"stale", cas) is False
        assert c.get("k") == b"new"
        assert c.delete("k") is True
        assert c.delete("k") is False
        assert c.get("k") is None
        assert c.touch("a", 100) is True
        assert c.flush_all() is True
        assert c.get("a") is None
    finally:
        c.disconnect_all()


def test_python_binary_memcached(server):
    bmemcached = pytest.importorskip("bmemcached")
    c = bmemcached.Client(["127.0.0.1:%d" % server.port])
    try:
        assert c.set("k", "value") is True
        assert c.get("k") == "value"
        assert c.set("n", 5) is True
        assert c.incr("n", 3) == 8
        assert c.decr("n", 10) == 0
        assert c.delete("k") is True
        assert c.get("k") is None
        stats = c.stats()
        assert any("cmd_get" in s for s in stats.values())
    finally:
        c.disconnect_all()


def test_garbage_binary_header_closes_and_server_survives(server):
    with Conn.to(server) as c:
        noop = b"\x80\x0a" + b"\x00" * 22
        c.send(noop + b"\x42" * 24)  # a good request, then a header with a bad magic byte
        data, closed = c.read_until_closed(timeout=5)
        assert closed
        assert data[:2] == b"\x81\x0a" and len(data) == 24
    with Conn.to(server) as c:
        # Lengths inconsistent with the opcode: "Invalid arguments", then close.
        c.send(struct.pack(">BBHBBHIIQ", 0x80, 0x00, 1, 4, 0, 0, 5, 0, 0) + b"xxxxk")
        data, closed = c.read_until_closed(timeout=5)
        assert closed
        assert data[:2] == b"\x81\x00" and data[6:8] == b"\x00\x04"
    assert server.alive()
    with Conn.to(server) as c:
        assert c.sync() == []


def test_binary_huge_declared_body_is_not_buffered(server):
    with Conn.to(server) as c:
        # A set declaring a 1 GiB value: refused ("Too large") once key and extras arrive.
        c.send(struct.pack(">BBHBBHIIQ", 0x80, 0x01, 1, 8, 0, 0, (1 << 30) + 9, 7, 0) + b"\x00" * 8 + b"k")
        header = c.readexact(24)
        assert header[6:8] == b"\x00\x03"
        assert header[12:16] == struct.pack(">I", 7)
    assert server.alive()


def test_binary_stat_detail_on_and_off_are_accepted(server):
    """`stat "detail on"` / `"detail off"`: the empty terminating STAT only, as memcached (Moat changes
    nothing); the connection goes on."""
    with Conn.to(server) as c:
        for sub in (b"detail on", b"detail off"):
            c.send(struct.pack(">BBHBBHIIQ", 0x80, 0x10, len(sub), 0, 0, 0, len(sub), 9, 0) + sub)
            header = c.readexact(24)
            assert header[:2] == b"\x81\x10" and header[6:8] == b"\x00\x00", header
            assert struct.unpack(">I", header[8:12])[0] == 0  # no body: the terminator
            assert header[12:16] == struct.pack(">I", 9)
        noop = struct.pack(">BBHBBHIIQ", 0x80, 0x0a, 0, 0, 0, 0, 0, 10, 0)
        c.send(noop)
        assert c.readexact(24)[:2] == b"\x81\x0a"


def _binary(c, opcode, key=b"", extras=b"", value=b"", cas=0):
    """Sends one binary request and reads its response: (status, cas, body)."""
    length = len(extras) + len(key) + len(value)
    c.send(struct.pack(">BBHBBHIIQ", 0x80, opcode, len(key), len(extras), 0, 0, length, 1, cas) + extras + key + value)
    header = c.readexact(24)
    status, length, _, response_cas = struct.unpack(">HIIQ", header[6:24])
    return status, response_cas, c.readexact(length) if length else b""


def test_binary_counters_as_memcached_counts_them(server):
    """One executor counts every dialect: a binary incr that creates its counter is neither a hit nor
    a miss, a delete whose CAS differs is no miss, a CAS set is a cas hit (memcached 1.6.18 alike)."""

    def incr(delta, initial=0, exptime=0):
        return struct.pack(">QQI", delta, initial, exptime)

    with Conn.to(server) as c:
        assert _binary(c, 0x05, b"n", incr(1, initial=5))[0] == 0  # created
        assert _binary(c, 0x05, b"n", incr(1))[0] == 0  # a hit
        assert _binary(c, 0x05, b"gone", incr(1, exptime=0xFFFFFFFF))[0] == 1  # a miss
        status, cas, _ = _binary(c, 0x01, b"k", struct.pack(">II", 0, 0), b"a")
        assert status == 0
        assert _binary(c, 0x04, b"k", cas=cas + 1)[0] == 2  # exists: not a miss
        assert _binary(c, 0x04, b"gone")[0] == 1  # a miss
        assert _binary(c, 0x01, b"k", struct.pack(">II", 0, 0), b"b", cas=cas)[0] == 0  # a cas hit
    with Conn.to(server) as c:
        values = c.stats_dict()
    assert (values["incr_hits"], values["incr_misses"]) == ("1", "1"), values
    assert (values["delete_hits"], values["delete_misses"]) == ("0", "1"), values
    assert (values["cas_hits"], values["cmd_set"]) == ("1", "2"), values
