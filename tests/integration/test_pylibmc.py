"""Round trips through pylibmc (libmemcached, text protocol)."""

import time

import pylibmc
import pytest

BEHAVIORS = {
    "cas": True,
    "connect_timeout": 5000,        # ms
    "receive_timeout": 5_000_000,   # us
    "send_timeout": 5_000_000,      # us
    "retry_timeout": 1,
}


@pytest.fixture
def lmc(server):
    c = pylibmc.Client(["127.0.0.1:%d" % server.port], binary=False, behaviors=BEHAVIORS)
    yield c
    c.disconnect_all()


def test_set_get(lmc):
    assert lmc.set("k", b"v") is True
    assert lmc.get("k") == b"v"
    assert lmc.get("missing") is None
    assert lmc.set("s", "text") is True
    assert lmc.get("s") == "text"
    assert lmc.set("i", 12345) is True
    assert lmc.get("i") == 12345


def test_multi(lmc):
    assert lmc.set_multi({"a": b"1", "b": b"2", "c": b"3"}) == []
    assert lmc.get_multi(["a", "b", "c", "zzz"]) == {"a": b"1", "b": b"2", "c": b"3"}
    assert lmc.delete_multi(["a", "b"]) is True
    assert lmc.get_multi(["a", "b", "c"]) == {"c": b"3"}


def test_incr_decr(lmc):
    lmc.set("n", 10)
    assert lmc.incr("n") == 11
    assert lmc.incr("n", 9) == 20
    assert lmc.decr("n", 5) == 15
    assert lmc.decr("n", 100) == 0
    assert lmc.get("n") == 0
    with pytest.raises(pylibmc.NotFound):
        lmc.incr("missing")


def test_delete(lmc):
    lmc.set("d", b"x")
    assert lmc.delete("d") is True
    assert lmc.get("d") is None
    assert lmc.delete("d") is False


def test_add_replace_append_prepend(lmc):
    assert lmc.add("k", b"a") is True
    assert lmc.add("k", b"b") is False
    assert lmc.replace("k", b"c") is True
    assert lmc.replace("nokey", b"c") is False
    assert lmc.append("k", b"z") is True
    assert lmc.prepend("k", b"y") is True
    assert lmc.get("k") == b"ycz"


def test_cas(lmc):
    lmc.set("c", b"v1")
    v, cas = lmc.gets("c")
    assert v == b"v1"
    assert lmc.cas("c", b"v2", cas) is True
    assert lmc.get("c") == b"v2"
    assert lmc.cas("c", b"v3", cas) is False  # EXISTS
    assert lmc.get("c") == b"v2"


def test_large_value(lmc):
    big = bytes(i % 253 for i in range(1_000_000))
    assert lmc.set("big", big) is True
    assert lmc.get("big") == big


def test_expiry(lmc):
    lmc.set("e", b"v", time=1)
    lmc.set("keep", b"v")
    assert lmc.get("e") == b"v"
    time.sleep(2.5)
    assert lmc.get("e") is None
    assert lmc.get("keep") == b"v"


def test_flush_and_stats(lmc):
    lmc.set("a", b"1")
    assert lmc.flush_all() is True
    assert lmc.get("a") is None
    stats = lmc.get_stats()
    assert len(stats) == 1
    name, st = stats[0]
    assert "curr_items" in st and "limit_maxbytes" in st
