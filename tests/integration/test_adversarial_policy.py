"""Adversarial tests for issue 17's policy findings: each reproduces an attack the review found and
proves it closed (TTL changes by read-only users, a tenant's `admin` seeing every tenant, the security
log drowned by a flood, UDP writes from spoofable sources, canaries that commands other than reads
touch silently, configuration files nested deep enough to overflow the stack)."""

import socket
import struct

import pytest

from moat_support import Conn
from test_udp import exchange, frame, start_udp
from test_tenants import PASSWORD, setup, start, text_login, write  # noqa: F401  (setup is a fixture)

pytestmark = pytest.mark.moat_only


def binary_packet(opcode, key=b"", extras=b"", value=b"", opaque=0):
    body = extras + key + value
    return struct.pack(">BBHBBHIIQ", 0x80, opcode, len(key), len(extras), 0, 0, len(body), opaque, 0) + body


def binary_reply(c):
    header = c.readexact(24)
    _magic, opcode, keylen, extlen, _dt, status, total, _opaque, _cas = struct.unpack(">BBHBBHIIQ", header)
    body = c.readexact(total) if total else b""
    return opcode, status, body[extlen + keylen:]


def binary_login(srv, user):
    c = Conn.to(srv)
    c.send(binary_packet(0x21, key=b"PLAIN", value=b"\0" + user.encode() + b"\0" + PASSWORD.encode()))
    _op, status, _ = binary_reply(c)
    assert status == 0, status
    return c


# ---------------------------------------------------------------- finding 7: a TTL change is a write


def test_a_read_only_user_cannot_change_ttls(server_factory, setup):
    """gat/gats, binary GAT and `mg ... T` by a read-only user used to set TTLs (`gat -1 k` deleted the key)."""
    srv, _ = start(server_factory, setup)
    with text_login(srv, "shop") as w:
        for k in (b"k1", b"k2", b"k3", b"k4"):
            assert w.store(b"set", k, b"value") == b"STORED"
    with text_login(srv, "reader") as r:
        assert r.get(b"k1") == b"value"  # reading still works
        assert r.cmd(b"gat -1 k1") == b"CLIENT_ERROR permission denied"
        assert r.cmd(b"gats -1 k2") == b"CLIENT_ERROR permission denied"
        assert r.cmd(b"mg k3 T-1 v") == b"CLIENT_ERROR permission denied"
        assert r.cmd(b"mg k3 v") == b"VA 5"
        assert r.readline() == b"value"
    b = binary_login(srv, "reader")
    try:
        b.send(binary_packet(0x1D, key=b"k4", extras=struct.pack(">I", 0xFFFFFFFF)))  # GAT, exptime -1
        _op, status, _ = binary_reply(b)
        assert status == 0x24, hex(status)  # permission denied
    finally:
        b.close()
    with text_login(srv, "shop") as w:
        # Every key is still there, with no TTL.
        for k in (b"k1", b"k2", b"k3", b"k4"):
            assert w.cmd(b"mg " + k + b" t") == b"HD t-1", k
        # A user with write may change TTLs.
        assert w.cmd(b"gat 100 k1").startswith(b"VALUE k1")


# ---------------------------------------------------------------- finding 8: bucket management is not server administration

MANAGED = """
server:
  memory-limit: 64
  extended: [auth_delay=0]
buckets:
  shop: { memory: 16m }
  blog: { memory: 8m }
users:
  shop: { bucket: shop, permissions: [read, write, manage] }
  blog: { bucket: blog, permissions: [read, write] }
  shopadmin: { bucket: shop, permissions: [all] }
"""


def test_a_tenant_manager_flushes_and_resets_only_its_own_bucket(server_factory, setup):
    """A tenant given `admin` to flush its bucket saw every tenant (`stats buckets`, `stats users`) and reset
    every bucket's counters; `manage` now does its own bucket only."""
    d, creds, config = setup
    write(config, MANAGED)
    srv, _ = start(server_factory, setup)
    with text_login(srv, "blog") as blog:
        assert blog.store(b"set", b"post", b"blog-value") == b"STORED"
        assert blog.get(b"post") == b"blog-value"
        blog_hits = int(blog.stats_dict()["get_hits"])
        assert blog_hits >= 1
    with text_login(srv, "shop") as shop:
        assert shop.store(b"set", b"post", b"shop-value") == b"STORED"
        assert shop.get(b"post") == b"shop-value"
        assert shop.cmd(b"stats buckets") == b"CLIENT_ERROR permission denied"
        assert shop.cmd(b"stats users") == b"CLIENT_ERROR permission denied"
        assert shop.cmd(b"stats settings") == b"CLIENT_ERROR permission denied"
        stats = shop.stats_dict()
        assert "curr_connections" not in stats and "auth_cmds" not in stats
        assert shop.cmd(b"stats reset") == b"RESET"
        assert shop.stats_dict()["get_hits"] == "0"
        assert shop.cmd(b"flush_all") == b"OK"
        assert shop.get(b"post") is None
    with text_login(srv, "blog") as blog:
        # The other tenant's item and counters are untouched.
        assert int(blog.stats_dict()["get_hits"]) == blog_hits
        assert blog.get(b"post") == b"blog-value"
        assert blog.cmd(b"flush_all") == b"CLIENT_ERROR permission denied"
    with text_login(srv, "shopadmin") as admin:
        # The server's administrator still sees every bucket and resets them all.
        b = admin.stats_dict(b"buckets")
        assert "bucket:blog:curr_items" in b
        assert admin.cmd(b"stats reset") == b"RESET"
    with text_login(srv, "blog") as blog:
        assert blog.stats_dict()["get_hits"] == "0"


# ---------------------------------------------------------------- finding 11: UDP is read-only by default

UDP_WRITES = [
    b"set k 0 0 6\r\nforged\r\n", b"add new 0 0 6\r\nforged\r\n", b"append k 0 0 1\r\nX\r\n",
    b"ms k 6\r\nforged\r\n", b"delete k\r\n", b"md k\r\n", b"incr n 5\r\n", b"decr n 1\r\n",
    b"ma n\r\n", b"touch k 1\r\n", b"gat 1 k\r\n", b"mg k T1 v\r\n", b"mg fresh N30 v\r\n",
]


def test_udp_writes_from_a_spoofable_source_are_refused(server_factory):
    """Anyone who can forge an allowed client's source address could set, delete, incr or touch over UDP."""
    srv, port = start_udp(server_factory)
    with Conn.to(srv) as c:
        assert c.store(b"set", b"k", b"origin") == b"STORED"
        assert c.store(b"set", b"n", b"10") == b"STORED"
    for request in UDP_WRITES:
        replies = [r[8:] for r in exchange(port, frame(request))]
        # The refusal, or nothing where even it would exceed 3x the request (`md k`).
        assert replies in ([b"CLIENT_ERROR not allowed over UDP\r\n"], []), (request, replies)
    assert [r[8:] for r in exchange(port, frame(b"get k\r\n"))] == [b"VALUE k 0 6\r\norigin\r\nEND\r\n"]
    with Conn.to(srv) as c:
        # Nothing changed: value, counter and TTL as the TCP client left them, no item created.
        assert c.get(b"k") == b"origin"
        assert c.get(b"n") == b"10"
        assert c.get(b"new") is None and c.get(b"fresh") is None
        assert c.cmd(b"mg k t") == b"HD t-1"


def test_udp_writes_need_the_explicit_option(server_factory):
    """With -o udp_writes the operator accepts the risk: UDP stores work as memcached's do."""
    srv, port = start_udp(server_factory, "-o", "udp_writes")
    assert [r[8:] for r in exchange(port, frame(b"set k 0 0 3\r\nudp\r\n"))] == [b"STORED\r\n"]
    assert [r[8:] for r in exchange(port, frame(b"set n 0 0 2\r\n10\r\n"))] == [b"STORED\r\n"]
    assert [r[8:] for r in exchange(port, frame(b"incr n 5\r\n"))] == [b"15\r\n"]
    with Conn.to(srv) as c:
        assert c.get(b"k") == b"udp"
        assert c.get(b"n") == b"15"


# ---------------------------------------------------------------- finding 10: the security log cannot be drowned


def _canary_lines(log):
    import json
    import os
    if not os.path.exists(log):
        return []
    with open(log) as f:
        return [json.loads(l) for l in f if '"canary_read"' in l]


def test_a_flood_of_refused_datagrams_cannot_hide_a_canary_read(server_factory):
    """Refused UDP datagrams (which any source can cause) used to use up the log's one budget, dropping canary_read."""
    import os
    import threading
    import time
    log = os.path.join(server_factory.tmpdir(), "security.log")
    srv, port = start_udp(server_factory, "-o", "canary=honey,security_log=" + log)
    stop = threading.Event()

    def flood():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.2", 0))  # not in the allow list: every datagram is a refusal event
        deadline = time.monotonic() + 6
        datagram = frame(b"get x\r\n")
        while not stop.is_set() and time.monotonic() < deadline:
            for _ in range(200):
                s.sendto(datagram, ("127.0.0.1", port))
        s.close()

    t = threading.Thread(target=flood)
    t.start()
    try:
        time.sleep(1.2)
        with Conn.to(srv) as c:
            for _ in range(5):
                assert c.get(b"honey") is None
                time.sleep(0.3)
    finally:
        stop.set()
        t.join(10)
    with Conn.to(srv) as c:
        stats = c.stats_dict()
    assert int(stats["security_udp_refusals"]) > 3000, stats["security_udp_refusals"]  # the flood was a flood
    assert int(stats["security_canary_reads"]) == 5
    assert len(_canary_lines(log)) == 5


def test_a_flood_of_key_dump_attempts_cannot_hide_a_canary_read(server_factory):
    """One kind of critical event looped by a client must not use up the budget of another."""
    import os
    log = os.path.join(server_factory.tmpdir(), "security.log")
    srv = server_factory.start(args=["-o", "canary=honey,security_log=" + log])
    with Conn.to(srv) as c:
        c.send(b"stats cachedump 1 1\r\n" * 3000 + b"get honey\r\n")
        for _ in range(3000):
            assert c.readline() == b"CLIENT_ERROR stats cachedump not allowed"
        assert c.readline() == b"END"
    assert len(_canary_lines(log)) == 1


# ---------------------------------------------------------------- finding 12: every command naming a canary raises the event

CANARY_COMMANDS = [
    b"me honey\r\n", b"touch honey 10\r\n", b"add honey 0 0 1\r\nx\r\n", b"incr honey 1\r\n", b"decr honey 1\r\n",
    b"delete honey\r\n", b"replace honey 0 0 1\r\nx\r\n", b"ms honey 1 ME\r\nx\r\n", b"md honey q\r\n",
    b"ma honey q\r\n",
]


@pytest.mark.parametrize("request_bytes", CANARY_COMMANDS, ids=lambda r: r.split(b" ")[0].decode())
def test_commands_other_than_reads_on_a_canary_raise_the_event(server_factory, request_bytes):
    """me, touch, add, incr (and every command that learns whether the key exists) on a canary raised no event."""
    import os
    log = os.path.join(server_factory.tmpdir(), "security.log")
    srv = server_factory.start(args=["-o", "canary=honey,security_log=" + log])
    with Conn.to(srv) as c:
        c.send(request_bytes + b"mn\r\n")
        for _ in range(3):
            if c.readline() == b"MN":
                break
        else:
            pytest.fail("no MN after " + repr(request_bytes))
        assert c.stats_dict()["security_canary_reads"] == "1"
    assert len(_canary_lines(log)) == 1


def test_binary_touch_on_a_canary_raises_the_event(server_factory):
    """Binary TOUCH (and ADD) on a canary key raised no event; a plain SET, which plants canaries, raises none."""
    import os
    log = os.path.join(server_factory.tmpdir(), "security.log")
    srv = server_factory.start(args=["-o", "canary=honey,security_log=" + log])
    with Conn.to(srv) as c:
        c.send(binary_packet(0x1C, key=b"honey", extras=struct.pack(">I", 10)))  # TOUCH
        _op, status, _ = binary_reply(c)
        assert status == 0x01  # not found
        c.send(binary_packet(0x02, key=b"honey", extras=struct.pack(">II", 0, 0), value=b"x"))  # ADD
        _op, status, _ = binary_reply(c)
        assert status == 0
        c.send(binary_packet(0x01, key=b"honey", extras=struct.pack(">II", 0, 0), value=b"x"))  # SET: plants, no event
        _op, status, _ = binary_reply(c)
        assert status == 0
    assert len(_canary_lines(log)) == 2
