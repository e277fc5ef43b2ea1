"""Scale-out on existing engines: three Moat nodes on 127.0.0.2-4 behind twemproxy (Debian's nutcracker)
with ketama hashing, and pylibmc's own ketama client across the same nodes. Keys spread over the nodes;
when one node stops, the proxy ejects it and service continues on the others."""

import os
import shutil
import socket
import subprocess

import pytest

from moat_support import Conn, free_port, wait_until

pytestmark = pytest.mark.moat_only

NODES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


def start_nodes(server_factory):
    port = free_port()
    return [server_factory.start(args=["-t", "1"], listen=host, host=host, port=port) for host in NODES]


def node_items(node):
    with Conn.to(node) as c:
        return int(c.stats_dict()["curr_items"])


def test_three_nodes_behind_twemproxy_with_ketama(server_factory):
    if not shutil.which("nutcracker"):
        pytest.fail("nutcracker (Debian's twemproxy) is not installed")
    nodes = start_nodes(server_factory)
    d = server_factory.tmpdir()
    proxy_port, stats_port = free_port(), free_port()
    conf = os.path.join(d, "pool.yml")
    with open(conf, "w") as f:
        f.write("moat:\n  listen: 127.0.0.1:%d\n  hash: md5\n  distribution: ketama\n  timeout: 400\n"
                "  auto_eject_hosts: true\n  server_retry_timeout: 30000\n  server_failure_limit: 1\n  servers:\n" % proxy_port)
        for i, node in enumerate(nodes):
            f.write("   - %s:%d:1 moat%d\n" % (node.host, node.port, i + 1))
    check = subprocess.run(["nutcracker", "-t", "-c", conf], capture_output=True, text=True, timeout=10)
    assert check.returncode == 0, check.stderr
    proxy = subprocess.Popen(["nutcracker", "-c", conf, "-s", str(stats_port), "-a", "127.0.0.1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: _listening(proxy_port), 10), "nutcracker did not start"
        c = Conn(socket.create_connection(("127.0.0.1", proxy_port), timeout=5))
        for i in range(300):
            assert c.store(b"set", b"user:%d" % i, b"v%d" % i) == b"STORED"
        for i in range(300):
            assert c.get(b"user:%d" % i) == b"v%d" % i
        spread = [node_items(n) for n in nodes]
        assert sum(spread) == 300 and min(spread) >= 40, spread  # ketama: roughly a third each
        # Stop one node: the proxy ejects it after one failure and the keys rehash to the others.
        nodes[1].stop()
        answered, failures = 0, 0
        for i in range(300):
            for attempt in range(3):  # nutcracker never retries: the client does (its docs say so)
                try:
                    reply = c.store(b"set", b"after:%d" % i, b"x")
                except (EOFError, OSError):
                    c.close()
                    c = Conn(socket.create_connection(("127.0.0.1", proxy_port), timeout=5))
                    reply = b""
                if reply == b"STORED":
                    answered += 1
                    break
                failures += 1
        assert answered == 300, (answered, failures)
        assert failures <= 5, failures  # only the requests before the ejection failed
        assert node_items(nodes[0]) + node_items(nodes[2]) >= 300 + spread[0] + spread[2]
        c.close()
    finally:
        proxy.kill()
        proxy.wait(10)


def _listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def test_pylibmc_ketama_across_nodes(server_factory):
    import pylibmc
    nodes = start_nodes(server_factory)
    servers = ["%s:%d" % (n.host, n.port) for n in nodes]
    client = pylibmc.Client(servers, behaviors={"ketama": True, "connect_timeout": 2000, "retry_timeout": 1,
                                                "remove_failed": 1, "dead_timeout": 60})
    for i in range(300):
        assert client.set("k%d" % i, "v%d" % i)
    spread = [node_items(n) for n in nodes]
    assert sum(spread) == 300 and min(spread) >= 40, spread
    # The same ring in a second client finds every key where the first put it.
    other = pylibmc.Client(servers, behaviors={"ketama": True})
    assert all(other.get("k%d" % i) == "v%d" % i for i in range(300))
    # Consistent hashing: with a node gone, keys of the other nodes stay where they were.
    nodes[2].stop()
    survivors = pylibmc.Client(servers[:2], behaviors={"ketama": True})
    found = sum(1 for i in range(300) if survivors.get("k%d" % i) == "v%d" % i)
    assert found == spread[0] + spread[1], (found, spread)
