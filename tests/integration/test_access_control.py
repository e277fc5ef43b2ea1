"""Network access control (issue 5): allow/deny lists, per-address connection caps, slow senders,
clients that never read, and the refusal to open a public address, each driven from several loopback
source addresses (127.0.0.2, .3, ... are all this machine)."""

import os
import socket
import time

import pytest

from moat_support import connect_from, Conn, has_ipv6_loopback, wait_until

pytestmark = pytest.mark.moat_only



def refused(conn, timeout=3):
    """True when the server closed the connection without sending a byte."""
    data, closed = conn.read_until_closed(timeout=timeout)
    conn.close()
    return closed and data == b""


def works(conn):
    try:
        return conn.cmd(b"version").startswith(b"VERSION ")
    except (OSError, EOFError):  # refused: closed or reset
        return False
    finally:
        conn.close()


def test_allow_list_admits_only_named_sources(server_factory):
    srv = server_factory.start(args=["-o", "allow=127.0.0.2,127.0.0.16/30"])
    assert works(connect_from(srv, "127.0.0.2"))
    assert works(connect_from(srv, "127.0.0.17"))
    assert refused(connect_from(srv, "127.0.0.3"))
    assert refused(connect_from(srv, "127.0.0.20"))
    assert refused(Conn.to(srv))  # 127.0.0.1 is not on the list either
    with connect_from(srv, "127.0.0.2") as c:
        stats = c.stats_dict()
    # Three above, and the harness's readiness probe from 127.0.0.1.
    assert stats["rejected_allowlist"] == "4"
    assert stats["rejected_connections"] == "0"
    assert wait_until(lambda: '"reason":"allowlist"' in srv.stderr_text() and "127.0.0.3" in srv.stderr_text(), 5), srv.stderr_text()[-2000:]


def test_deny_wins_over_allow(server_factory):
    srv = server_factory.start(args=["-o", "allow=127.0.0.0/8,deny=127.0.0.9"])
    assert works(connect_from(srv, "127.0.0.8"))
    assert refused(connect_from(srv, "127.0.0.9"))
    assert wait_until(lambda: '"reason":"denylist"' in srv.stderr_text(), 5)


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_rules(server_factory):
    srv = server_factory.start(args=["-l", "::1", "-o", "allow=127.0.0.1,deny=::1"], listen=None, host="::1")
    assert refused(connect_from(srv, "::1", socket.AF_INET6, host="::1"))
    srv2 = server_factory.start(args=["-l", "::1", "-o", "allow=::1/128"], listen=None, host="::1")
    assert works(connect_from(srv2, "::1", socket.AF_INET6, host="::1"))


def test_per_address_connection_cap(server_factory):
    srv = server_factory.start(args=["-o", "max_conns_per_ip=3"])
    held = [connect_from(srv, "127.0.0.2") for _ in range(3)]
    for c in held:
        assert c.cmd(b"version").startswith(b"VERSION")
    assert refused(connect_from(srv, "127.0.0.2"))
    # Another address has its own slots.
    others = [connect_from(srv, "127.0.0.3") for _ in range(3)]
    for c in others:
        assert c.cmd(b"version").startswith(b"VERSION")
    # Closing one frees a slot.
    held.pop().close()
    assert wait_until(lambda: works(connect_from(srv, "127.0.0.2")), 3)
    with connect_from(srv, "127.0.0.4") as c:
        assert int(c.stats_dict()["rejected_per_address"]) >= 1  # the retry above may have been refused too
    for c in held + others:
        c.close()
    assert wait_until(lambda: '"reason":"per_address_limit"' in srv.stderr_text(), 5)


def test_slow_sender_is_closed_at_the_command_deadline(server_factory):
    srv = server_factory.start(args=["-o", "command_timeout=1"])
    slow = connect_from(srv, "127.0.0.2")
    slow.send(b"set k 0 0 10\r\nabc")  # never finishes
    dribble = connect_from(srv, "127.0.0.3")
    start = time.monotonic()
    for byte in b"set d 0 0 2\r\nok\r\n":  # finishes inside the deadline, byte by byte
        dribble.send(bytes([byte]))
        time.sleep(0.03)
    assert dribble.readline() == b"STORED"
    data, closed = slow.read_until_closed(timeout=4)
    assert closed and data == b""
    assert time.monotonic() - start < 4
    # A connection that is merely idle between requests is not a slow sender.
    time.sleep(1.2)
    assert dribble.cmd(b"get d") == b"VALUE d 0 2"
    dribble.close()
    slow.close()
    assert wait_until(lambda: '"reason":"slow_command"' in srv.stderr_text(), 5)
    assert srv.alive()


def test_client_that_never_reads_is_closed(server_factory):
    srv = server_factory.start(args=["-o", "output_timeout=1", "-I", "1m"])
    with Conn.to(srv) as c:
        assert c.store(b"set", b"big", b"x" * 500_000) == b"STORED"
    hog = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog.bind(("127.0.0.2", 0))
    hog.settimeout(5)
    hog.connect(srv.addr)
    hog.sendall(b"get big big big big big big big big\r\n" * 20)  # ~80 MB of replies, never read
    assert wait_until(lambda: '"reason":"output_stalled"' in srv.stderr_text(), 6), srv.stderr_text()[-2000:]
    hog.close()
    with Conn.to(srv) as c:
        assert c.cmd(b"version").startswith(b"VERSION")
    status = open("/proc/%d/status" % srv.pid).read()
    rss_kb = int([line for line in status.splitlines() if line.startswith("VmRSS")][0].split()[1])
    assert rss_kb < 200_000, rss_kb


def test_public_address_needs_auth_or_allow_list(server_factory):
    rc, err = server_factory.start_expect_exit(args=["-l", "0.0.0.0"], listen=None)
    assert rc == 64 and "allow" in err and "insecure_public_bind" in err
    # A deny list alone does not make it safe; an allow list that names everyone does not either.
    rc, err = server_factory.start_expect_exit(args=["-l", "0.0.0.0", "-o", "deny=10.0.0.0/8"], listen=None)
    assert rc == 64
    rc, err = server_factory.start_expect_exit(args=["-l", "0.0.0.0", "-o", "allow=0.0.0.0/0"], listen=None)
    assert rc == 64
    rc, err = server_factory.start_expect_exit(args=["-o", "allow=10.0.0.1/8"])
    assert rc == 64 and "CIDR" in err


def test_public_address_with_allow_list_starts(server_factory):
    srv = server_factory.start(args=["-l", "0.0.0.0", "-o", "allow=127.0.0.2"], listen=None)
    assert works(connect_from(srv, "127.0.0.2"))
    assert refused(connect_from(srv, "127.0.0.3"))


def test_serving_process_holds_no_capabilities(server):
    if os.geteuid() != 0:
        pytest.skip("the account switch happens only when started as root")
    with Conn.to(server) as c:
        assert c.cmd(b"version").startswith(b"VERSION")
    for task in os.listdir("/proc/%d/task" % server.pid):
        status = open("/proc/%d/task/%s/status" % (server.pid, task)).read()
        caps = {line.split(":")[0]: int(line.split()[1], 16) for line in status.splitlines() if line.startswith("Cap")}
        assert caps["CapEff"] == 0 and caps["CapPrm"] == 0, (task, caps)
        assert "NoNewPrivs:\t1" in status, task
