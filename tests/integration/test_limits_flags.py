"""Command-line flags and resource limits."""

import os
import pwd
import socket
import stat
import time

import pytest
from pymemcache.client.base import Client

from moat_support import (IS_MOAT, Conn, all_thread_uids, free_port, has_ipv6_loopback,
                          proc_status_ids)

# Both memcached and Moat refuse -m 1 with the default -I 1m (item size limit above half the memory).
SMALL_MEM_EXTRA = ["-I", "512k"]


@pytest.mark.moat_only  # memcached reserves fds for listeners and cannot run with -c 2
def test_conn_limit(server_factory):
    srv = server_factory.start(["-c", "2"])
    time.sleep(0.3)  # let the server notice the readiness probe closing
    c1, c2 = Conn.to(srv), Conn.to(srv)
    try:
        assert c1.sync() == [] and c2.sync() == []
        with Conn.to(srv) as c3:
            data, closed = c3.read_until_closed(timeout=5)
            assert data == b"ERROR Too many open connections\r\n"
            assert closed
        # the first two still work; once one leaves, a new client gets in
        assert c1.sync() == []
        c2.close()
        time.sleep(0.3)
        with Conn.to(srv) as c4:
            assert c4.sync() == []
    finally:
        c1.close()
        c2.close()


def test_idle_timeout(server_factory):
    srv = server_factory.start(["-o", "idle_timeout=1"])
    with Conn.to(srv, timeout=10) as c:
        assert c.sync() == []
        t0 = time.monotonic()
        data, closed = c.read_until_closed(timeout=6)
        assert closed, "idle connection still open after 6s"
        assert data == b""
        assert time.monotonic() - t0 >= 0.5
    with Conn.to(srv) as c:
        assert c.sync() == []


def test_max_item_size_2m(server_factory):
    srv = server_factory.start(["-I", "2m"])
    val = os.urandom(1_500_000)
    with Conn.to(srv, timeout=10) as c:
        assert c.store(b"set", b"big", val) == b"STORED"
        assert c.get(b"big") == val
        assert c.store(b"set", b"big2", b"x" * (2 * 1024 * 1024 + 1)) == \
            b"SERVER_ERROR object too large for cache"


def test_max_item_size_small(server_factory):
    srv = server_factory.start(["-I", "512k"])
    with Conn.to(srv, timeout=10) as c:
        assert c.store(b"set", b"a", b"x" * 400_000) == b"STORED"
        assert c.store(b"set", b"b", b"x" * 600_000) == b"SERVER_ERROR object too large for cache"
        assert c.sync() == []


def test_a_store_refused_for_size_is_counted_as_memcached_counts_it(server_factory):
    """A store refused for its size is not a cmd_set but a store_too_large, in the text and the meta
    protocol; a refused set (text) or any refused ms (meta) takes the key's old value out, so that it
    does not look current, while a refused append leaves it (memcached 1.6.18 does the same)."""
    srv = server_factory.start(["-I", "512k"])
    big = b"x" * 600_000
    with Conn.to(srv, timeout=10) as c:
        for key in (b"s", b"a", b"m"):
            assert c.store(b"set", key, b"old") == b"STORED"
        before = c.stats_dict()
        assert c.store(b"set", b"s", big) == b"SERVER_ERROR object too large for cache"
        assert c.store(b"append", b"a", big) == b"SERVER_ERROR object too large for cache"
        c.send(b"ms m %d MA\r\n" % len(big) + big + b"\r\n")
        assert c.readline() == b"SERVER_ERROR object too large for cache"
        after = c.stats_dict()
        assert int(after["cmd_set"]) - int(before["cmd_set"]) == 0
        assert int(after["store_too_large"]) - int(before["store_too_large"]) == 3
        assert c.get(b"s") is None and c.get(b"m") is None
        assert c.get(b"a") == b"old"
        assert c.sync() == []


def test_no_evictions_out_of_memory(server_factory):
    srv = server_factory.start(["-M", "-m", "1"] + SMALL_MEM_EXTRA)
    val = b"m" * 50_000
    with Conn.to(srv) as c:
        stored = 0
        reply = None
        for i in range(200):  # 10 MB, ten times the limit
            reply = c.store(b"set", b"k%d" % i, val)
            if reply != b"STORED":
                break
            stored += 1
        assert reply == b"SERVER_ERROR out of memory storing object", (stored, reply)
        assert stored >= 1
        st = c.stats_dict()
        assert int(st["evictions"]) == 0
        assert int(st["bytes"]) <= int(st["limit_maxbytes"]) == 1024 * 1024
        # earliest items still present, connection usable
        assert c.get(b"k0") == val
        assert c.sync() == []


def test_evictions(server_factory):
    srv = server_factory.start(["-m", "1"] + SMALL_MEM_EXTRA)
    val = b"e" * 50_000
    with Conn.to(srv) as c:
        for i in range(200):
            assert c.store(b"set", b"k%d" % i, val) == b"STORED", i
        st = c.stats_dict()
        assert int(st["evictions"]) > 0
        assert int(st["limit_maxbytes"]) == 1024 * 1024
        assert 0 < int(st["bytes"]) <= int(st["limit_maxbytes"])
        if IS_MOAT:  # the real item memory (pages and large items) never passes -m
            slabs = c.stats_dict(b"slabs")
            assert 0 < int(slabs["total_malloced"]) <= 1024 * 1024, slabs
        assert c.get(b"k199") == val  # most recent survives
        assert c.get(b"k0") is None   # oldest evicted


def test_flush_all_disabled(server_factory):
    srv = server_factory.start(["-F"])
    with Conn.to(srv) as c:
        assert c.store(b"set", b"k", b"v") == b"STORED"
        assert c.cmd(b"flush_all") == b"CLIENT_ERROR flush_all not allowed"
        assert c.get(b"k") == b"v"


def test_shutdown_refused_by_default(server):
    with Conn.to(server) as c:
        assert c.cmd(b"shutdown") == b"ERROR: shutdown not enabled"
        assert c.sync() == []
    assert server.alive()


def test_shutdown_enabled(server_factory):
    srv = server_factory.start(["-A"])
    with Conn.to(srv) as c:
        c.send(b"shutdown\r\n")
        c.read_until_closed(timeout=5)
    rc = srv.wait_exit(10)
    assert rc is not None, "server still running 10s after shutdown"


def test_sigterm_exits(server_factory):
    srv = server_factory.start()
    with Conn.to(srv) as c:
        assert c.sync() == []
    srv.proc.terminate()
    rc = srv.wait_exit(10)
    assert rc is not None, "server still running 10s after SIGTERM"


@pytest.mark.moat_only  # memcached supports UDP
def test_udp_port_refused_without_an_allow_list(server_factory):
    rc, err = server_factory.start_expect_exit(["-U", "11311"])
    assert rc is not None, "server started with -U 11311"
    assert rc != 0


def test_binary_only_mode_serves_binary_and_closes_text(server_factory):
    srv = server_factory.start(["-B", "binary"])
    with Conn.to(srv) as c:
        c.send(b"\x80\x0a" + b"\x00" * 22)  # noop
        assert c.readexact(24)[:2] == b"\x81\x0a"
    with Conn.to(srv) as c:
        c.send(b"version\r\n")
        data, closed = c.read_until_closed(timeout=5)
        assert closed and data == b""


@pytest.mark.moat_only  # memcached binds anywhere; it has no insecure_public_bind
def test_public_bind_refused(server_factory):
    rc, err = server_factory.start_expect_exit(listen="0.0.0.0")
    assert rc is not None, "server started on 0.0.0.0 without -o insecure_public_bind"
    assert rc != 0
    assert "insecure_public_bind" in err, err


@pytest.mark.moat_only
def test_public_bind_allowed_with_option(server_factory):
    srv = server_factory.start(["-o", "insecure_public_bind"], listen="0.0.0.0")
    with Conn.to(srv) as c:
        assert c.store(b"set", b"k", b"v") == b"STORED"
        assert c.get(b"k") == b"v"


def test_ipv6_loopback(server_factory):
    if not has_ipv6_loopback():
        pytest.skip("host has no IPv6 loopback (::1)")
    port = free_port(socket.AF_INET6, "::1")
    srv = server_factory.start(["-l", "[::1]:%d" % port], listen=None, port=port, host="::1")
    with Conn.to(srv) as c:
        assert c.sock.family == socket.AF_INET6
        assert c.store(b"set", b"k6", b"v6") == b"STORED"
        assert c.get(b"k6") == b"v6"
    mc = Client(("::1", port), connect_timeout=5, timeout=5)
    try:
        assert mc.get("k6") == b"v6"
    finally:
        mc.close()


def _unix_server(server_factory, extra=()):
    d = server_factory.tmpdir()
    path = os.path.join(d, "moat.sock")
    srv = server_factory.start(["-s", path] + list(extra), unix_path=path)
    return srv, path


def test_unix_socket_default_mode(server_factory):
    srv, path = _unix_server(server_factory)
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o700, oct(st.st_mode)
    mc = Client(path, connect_timeout=5, timeout=5)
    try:
        assert mc.set("u", b"unix") is True
        assert mc.get("u") == b"unix"
    finally:
        mc.close()
    with Conn.to(srv) as c:
        assert c.sock.family == socket.AF_UNIX
        assert c.get(b"u") == b"unix"


def test_unix_socket_mask(server_factory):
    srv, path = _unix_server(server_factory, ["-a", "0770"])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o770, oct(os.stat(path).st_mode)
    with Conn.to(srv) as c:
        assert c.store(b"set", b"k", b"v") == b"STORED"
        assert c.get(b"k") == b"v"


def _require_root():
    if os.geteuid() != 0:
        pytest.skip("privilege-dropping checks need the tests to run as root")


def _assert_runs_as(srv, uid):
    with Conn.to(srv) as c:
        assert c.sync() == []
    # Moat accepts no connection before the switch, so once a reply has come back the process
    # must already run as the unprivileged account: no settling time.
    ids = proc_status_ids(srv.pid)
    assert ids[:3] == (uid, uid, uid), "Uid line: %r (want %d)" % (ids, uid)
    threads = all_thread_uids(srv.pid)
    assert threads and all(u[:3] == (uid, uid, uid) for u in threads.values()), threads
    with Conn.to(srv) as c:
        assert c.store(b"set", b"k", b"v") == b"STORED"


def test_drops_root_to_nobody_by_default(server):
    _require_root()
    _assert_runs_as(server, 65534)


def test_drops_root_to_named_user(server_factory):
    _require_root()
    for name in ("daemon", "bin", "sys"):
        try:
            uid = pwd.getpwnam(name).pw_uid
            break
        except KeyError:
            continue
    else:
        pytest.skip("no daemon/bin/sys account on this host")
    srv = server_factory.start(["-u", name])
    _assert_runs_as(srv, uid)


def test_unknown_user_refused(server_factory):
    _require_root()
    rc, err = server_factory.start_expect_exit(["-u", "no-such-user-moat-it"])
    assert rc is not None and rc != 0


@pytest.mark.moat_only  # memcached -X is opt-in; Moat disables key dumping by default
def test_cachedump_not_allowed(server):
    with Conn.to(server) as c:
        assert c.store(b"set", b"secret", b"v") == b"STORED"
        assert c.cmd(b"stats cachedump 1 100") == b"CLIENT_ERROR stats cachedump not allowed"
        assert c.sync() == []


def test_cachedump_not_allowed_with_X(server_factory):
    srv = server_factory.start(["-X"])
    with Conn.to(srv) as c:
        assert c.store(b"set", b"secret", b"v") == b"STORED"
        assert c.cmd(b"stats cachedump 1 100") == b"CLIENT_ERROR stats cachedump not allowed"
        assert c.sync() == []


@pytest.mark.moat_only  # memcached has no command deadline
def test_a_pipelined_load_longer_than_the_command_timeout_is_not_cut_off(server_factory):
    """The command deadline runs per request: a client that pipelines for longer than it, mid-request at
    the end of almost every read, is not closed as slow while its requests keep completing."""
    srv = server_factory.start(args=["-o", "command_timeout=1"])
    record = len(b"set key:000000 0 0 10 noreply\r\n0123456789\r\n")
    stream = b"".join(b"set key:%06d 0 0 10 noreply\r\n0123456789\r\n" % i for i in range(200_000))
    with Conn.to(srv) as c:
        # Every send ends 20 bytes into a request: the server never sees a read end between requests.
        started, offset = time.monotonic(), 0
        while time.monotonic() - started < 3 and offset + 51 * record < len(stream):
            end = offset + 50 * record + 20 - (offset % record)
            c.send(stream[offset:end])
            offset = end
            time.sleep(0.002)
        assert time.monotonic() - started >= 2.5, "the stream ran out before the deadline was passed twice"
        c.send(stream[offset:offset + (-offset % record)])  # finish the request cut last
        assert c.cmd(b"version").startswith(b"VERSION"), "closed as slow while requests kept completing"
    assert "slow_command" not in srv.stderr_text()
