"""Round trips through pymemcache (pure-Python text-protocol client)."""

import time

import pytest
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheClientError, MemcacheServerError
from pymemcache import serde

from moat_support import Conn

MAX_U64 = 2**64 - 1


@pytest.fixture
def mc(server):
    c = Client(server.addr, connect_timeout=5, timeout=5, default_noreply=False)
    yield c
    c.close()


def test_set_get(mc):
    assert mc.set("k1", b"hello") is True
    assert mc.get("k1") == b"hello"
    assert mc.get("missing") is None
    assert mc.set("k1", b"") is True
    assert mc.get("k1") == b""
    binary = bytes(range(256)) + b"\r\nEND\r\n"
    assert mc.set("bin", binary) is True
    assert mc.get("bin") == binary


def test_get_many(mc):
    mc.set_many({"a": b"1", "b": b"22", "c": b"333"})
    assert mc.get_many(["a", "b", "c", "nope"]) == {"a": b"1", "b": b"22", "c": b"333"}


def test_gets_cas(mc):
    mc.set("c", b"v1")
    v, cas = mc.gets("c")
    assert v == b"v1" and cas is not None
    assert mc.cas("c", b"v2", cas) is True
    assert mc.get("c") == b"v2"
    # stale token -> EXISTS (pymemcache returns False)
    assert mc.cas("c", b"v3", cas) is False
    assert mc.get("c") == b"v2"
    # missing key -> NOT_FOUND (pymemcache returns None)
    assert mc.cas("nokey", b"x", cas) is None
    v2, cas2 = mc.gets("c")
    assert v2 == b"v2" and cas2 != cas


def test_cas_raw_replies(server):
    with Conn.to(server) as c:
        assert c.store(b"set", b"k", b"a") == b"STORED"
        c.send(b"gets k\r\n")
        cas = c.read_values()[b"k"][2]
        assert c.store(b"cas", b"k", b"b", extra=b" %d" % cas) == b"STORED"
        assert c.store(b"cas", b"k", b"c", extra=b" %d" % cas) == b"EXISTS"
        assert c.store(b"cas", b"zz", b"c", extra=b" %d" % cas) == b"NOT_FOUND"


def test_add_replace_append_prepend(mc):
    assert mc.add("k", b"one") is True
    assert mc.add("k", b"two") is False
    assert mc.get("k") == b"one"
    assert mc.replace("k", b"three") is True
    assert mc.replace("absent", b"x") is False
    assert mc.get("absent") is None
    assert mc.append("k", b"-end") is True
    assert mc.prepend("k", b"start-") is True
    assert mc.get("k") == b"start-three-end"
    assert mc.append("absent", b"x") is False
    assert mc.prepend("absent", b"x") is False
    assert mc.get("absent") is None


def test_incr_decr(mc):
    mc.set("n", b"10")
    assert mc.incr("n", 5) == 15
    assert mc.decr("n", 3) == 12
    assert mc.get("n") == b"12"
    assert mc.incr("missing", 1) is None
    assert mc.decr("missing", 1) is None


def test_incr_wraps_at_2_64(mc):
    mc.set("w", str(MAX_U64).encode())
    assert mc.incr("w", 1) == 0
    mc.set("w", str(MAX_U64 - 1).encode())
    assert mc.incr("w", 3) == 1
    # memcached rewrites shorter numbers in place, padded with spaces
    assert mc.get("w").rstrip(b" ") == b"1"


def test_decr_floors_at_zero(mc):
    mc.set("d", b"5")
    assert mc.decr("d", 10) == 0
    assert mc.get("d") == b"0"
    assert mc.decr("d", 1) == 0


def test_decr_length_shrinks(mc):
    mc.set("d", b"100")
    assert mc.decr("d", 1) == 99
    assert mc.get("d").rstrip(b" ") == b"99"  # memcached pads in place with spaces


def test_incr_non_numeric(mc, server):
    mc.set("s", b"abc")
    with pytest.raises(MemcacheClientError):
        mc.incr("s", 1)
    with Conn.to(server) as c:
        assert c.cmd(b"incr s 1") == b"CLIENT_ERROR cannot increment or decrement non-numeric value"
        assert c.cmd(b"decr s 1") == b"CLIENT_ERROR cannot increment or decrement non-numeric value"
        assert c.get(b"s") == b"abc"


def test_delete(mc):
    mc.set("k", b"v")
    assert mc.delete("k") is True
    assert mc.get("k") is None
    assert mc.delete("k") is False


def test_touch(mc):
    mc.set("t", b"v", expire=1)
    assert mc.touch("t", expire=100) is True
    assert mc.touch("absent", expire=100) is False
    time.sleep(2.2)
    assert mc.get("t") == b"v"


def test_expiry(mc):
    mc.set("e", b"v", expire=1)
    mc.set("keep", b"v")
    assert mc.get("e") == b"v"
    time.sleep(2.5)
    assert mc.get("e") is None
    assert mc.get("keep") == b"v"


def test_negative_exptime_is_immediately_expired(server):
    with Conn.to(server) as c:
        assert c.store(b"set", b"neg", b"x", exptime=-1) == b"STORED"
        assert c.get(b"neg") is None


def test_flags_round_trip(server):
    c = Client(server.addr, connect_timeout=5, timeout=5, serde=serde.pickle_serde)
    try:
        c.set("int", 42)
        c.set("dict", {"a": [1, 2]})
        c.set("str", "héllo")
        assert c.get("int") == 42
        assert c.get("dict") == {"a": [1, 2]}
        assert c.get("str") == "héllo"
    finally:
        c.close()
    with Conn.to(server) as r:
        for flags in (0, 1, 12345, 2**32 - 1):
            assert r.store(b"set", b"f", b"v", flags=flags) == b"STORED"
            r.send(b"get f\r\n")
            assert r.read_values()[b"f"][0] == flags


def test_large_value_ok(mc):
    big = bytes(i % 251 for i in range(1_000_000))
    assert mc.set("big", big) is True
    assert mc.get("big") == big


def test_value_over_1mib_refused(mc, server):
    too_big = b"x" * (1024 * 1024 + 1)
    with pytest.raises(MemcacheServerError) as ei:
        mc.set("huge", too_big)
    assert "object too large for cache" in str(ei.value)
    assert mc.get("huge") is None
    # raw: reply is exact and the same connection keeps working
    with Conn.to(server) as c:
        assert c.store(b"set", b"huge", too_big) == b"SERVER_ERROR object too large for cache"
        assert c.store(b"set", b"after", b"ok") == b"STORED"
        assert c.get(b"after") == b"ok"


def test_noreply(server):
    mc = Client(server.addr, connect_timeout=5, timeout=5, default_noreply=True)
    try:
        for i in range(20):
            assert mc.set("nr%d" % i, b"v%d" % i) is True
        # a reply on the same connection orders after the noreply sets
        assert mc.get_many(["nr0", "nr19"]) == {"nr0": b"v0", "nr19": b"v19"}
    finally:
        mc.close()
    with Conn.to(server) as c:
        # noreply commands must produce no output: the first reply we see is version's
        c.send(b"set a 0 0 1 noreply\r\nx\r\nadd a 0 0 1 noreply\r\ny\r\n"
               b"incr a 1 noreply\r\ndelete nr0 noreply\r\n")
        assert c.sync() == []
        assert c.get(b"a") == b"x"
        assert c.get(b"nr0") is None
        assert c.get(b"nr19") == b"v19"


def test_flush_all(mc, server):
    mc.set("a", b"1")
    mc.set("b", b"2")
    assert mc.flush_all() is True
    assert mc.get("a") is None and mc.get("b") is None
    assert mc.set("c", b"3") is True
    assert mc.get("c") == b"3"
    with Conn.to(server) as c:
        assert c.cmd(b"flush_all") == b"OK"
        assert c.get(b"c") is None


STAT_KEYS = ["curr_items", "get_hits", "get_misses", "cmd_get", "cmd_set", "curr_connections",
             "total_items", "bytes", "limit_maxbytes", "evictions"]


def test_stats(mc, server):
    mc.set("a", b"hello")
    mc.set("b", b"world")
    assert mc.get("a") == b"hello"
    assert mc.get("nope") is None
    st = mc.stats()
    for k in STAT_KEYS:
        assert k.encode() in st or k in st, "missing stat %s" % k
    with Conn.to(server) as c:
        d = c.stats_dict()
    for k in STAT_KEYS:
        assert k in d, "missing stat %s in %r" % (k, sorted(d))
    assert int(d["curr_items"]) == 2
    assert int(d["total_items"]) == 2
    assert int(d["cmd_set"]) == 2
    assert int(d["cmd_get"]) == 2
    assert int(d["get_hits"]) == 1
    assert int(d["get_misses"]) == 1
    assert int(d["curr_connections"]) >= 1
    assert int(d["bytes"]) > 0
    assert int(d["limit_maxbytes"]) == 64 * 1024 * 1024
    assert int(d["evictions"]) == 0


@pytest.mark.parametrize("sub", [b"settings", b"items", b"slabs"])
def test_stats_subcommands(server, sub):
    with Conn.to(server) as c:
        assert c.store(b"set", b"k", b"v") == b"STORED"
        lines = c.stats(sub)  # reads up to END (fails on timeout/close)
        for line in lines:
            assert line.startswith(b"STAT "), "bad line in stats %s: %r" % (sub, line)
        if sub == b"settings":
            d = c.stats_dict(sub)
            assert "maxbytes" in d and int(d["maxbytes"]) == 64 * 1024 * 1024
            assert "maxconns" in d
        # connection still in sync
        assert c.sync() == []


def test_gat_gats(server):
    with Conn.to(server) as c:
        assert c.store(b"set", b"g", b"val", flags=3, exptime=1) == b"STORED"
        c.send(b"gat 100 g missing\r\n")
        assert c.read_values() == {b"g": (3, b"val", None)}
        c.send(b"gats 100 g\r\n")
        vals = c.read_values()
        assert vals[b"g"][:2] == (3, b"val") and vals[b"g"][2] is not None
        assert c.cmd(b"touch g 100") == b"TOUCHED"
        assert c.cmd(b"touch nope 100") == b"NOT_FOUND"
        time.sleep(1.5)
        assert c.get(b"g") == b"val"  # exptime was extended by gat
