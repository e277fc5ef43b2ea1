"""Adversarial tests for the network policy layers (issue 17): who a peer is comes from its socket
address, and every rule keyed by it holds on every listener type. Link-local IPv6 clients are driven
from a network namespace made here (two namespaces joined by a veth pair, DAD off so the fe80
addresses are usable at once); every process started is stopped and the namespaces are deleted."""

import contextlib
import json
import os
import socket
import subprocess
import textwrap

import pytest

from moat_support import EXTRA_ARGS, connect_from, free_port, moat_bin, run_ok, veth_pair, wait_until

pytestmark = pytest.mark.moat_only

TCP_PORT, UDP_PORT = 11311, 11312


# ---------------------------------------------------------------- link-local IPv6 in namespaces (finding 1)

LINK_LOCAL_CLIENT = textwrap.dedent("""
    import json, socket, sys
    target, dev, tcp_port, udp_port = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    scope = socket.if_nametoindex(dev)
    result = {}
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect((target, tcp_port, 0, scope))
        s.sendall(b"set k 0 0 1\\r\\nX\\r\\nget k\\r\\n")
        data = b""
        while b"END\\r\\n" not in data and len(data) < 4096:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        result["tcp"] = data.decode()
    except OSError as e:
        result["tcp"] = "error: %s" % e
    s.close()
    u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u.settimeout(1.5)
    u.sendto(b"\\x00\\x01\\x00\\x00\\x00\\x01\\x00\\x00version\\r\\n", (target, udp_port, 0, scope))
    try:
        result["udp"] = u.recv(2000)[8:].decode()
    except socket.timeout:
        result["udp"] = None
    print(json.dumps(result))
    """)


@pytest.fixture
def link_local():
    """(server ns, client ns, server's fe80 address, client's device) joined by a veth pair."""
    with veth_pair("moatll", "ml", dad=False) as (server, client, veth_s, veth_c):
        def fe80(ns, dev):
            out = run_ok(["ip", "-n", ns, "-j", "-6", "addr", "show", "dev", dev, "scope", "link"]).stdout
            for link in json.loads(out or b"[]"):
                for info in link.get("addr_info", []):
                    if info.get("local", "").startswith("fe80") and not info.get("tentative"):
                        return info["local"]
            return None

        assert wait_until(lambda: fe80(server, veth_s) and fe80(client, veth_c), 10), "no link-local address came up"
        yield server, client, fe80(server, veth_s), veth_c


@contextlib.contextmanager
def moat_in_namespace(ns, tmp_path, options):
    """Moat on [::] (TCP and UDP) in namespace ns with `-o options` until the block ends."""
    log_path = tmp_path / "moat.log"
    log = open(log_path, "wb")
    cmd = ["ip", "netns", "exec", ns, moat_bin(), "serve", "--no-config", "-l", "[::]", "-p", str(TCP_PORT),
           "-U", str(UDP_PORT), "-o", options] + EXTRA_ARGS
    moat = subprocess.Popen(cmd, stdout=log, stderr=log)

    def listening():
        r = subprocess.run(["ip", "netns", "exec", ns, "ss", "-Hltn", "sport", "= :%d" % TCP_PORT],
                           capture_output=True, timeout=10)
        return moat.poll() is None and str(TCP_PORT) in r.stdout.decode()

    try:
        assert wait_until(listening, 15), log_path.read_text()
        yield log_path
    finally:
        moat.terminate()
        try:
            moat.wait(15)
        except subprocess.TimeoutExpired:
            moat.kill()
            moat.wait(10)
        log.close()


def link_local_probe(client, target, dev):
    r = run_ok(["ip", "netns", "exec", client, "python3", "-c", LINK_LOCAL_CLIENT, target, dev,
                str(TCP_PORT), str(UDP_PORT)])
    return json.loads(r.stdout)


@pytest.mark.parametrize("options", ["allow=198.18.0.0/15,deny=fe80::/10", "allow=198.18.0.0/15",
                                     "deny=fe80::/10,insecure_udp,insecure_public_bind"])
def test_link_local_ipv6_client_is_held_to_the_address_lists(link_local, tmp_path, options):
    """A link-local IPv6 client (getnameinfo prints it with %iface) cannot pass an allow or deny list, TCP or UDP."""
    server, client, target, dev = link_local
    with moat_in_namespace(server, tmp_path, options) as log:
        result = link_local_probe(client, target, dev)
        assert "STORED" not in result["tcp"] and "VALUE" not in result["tcp"], (result, log.read_text())
        assert result["udp"] is None, (result, log.read_text())
        reason = "denylist" if "deny=" in options else "allowlist"
        assert wait_until(lambda: '"reason":"%s"' % reason in log.read_text().replace(" ", ""), 5), log.read_text()


def test_link_local_ipv6_client_named_by_the_allow_list_is_admitted(link_local, tmp_path):
    """The same client is admitted when the allow list names fe80::/10: its address is parsed, not refused blindly."""
    server, client, target, dev = link_local
    with moat_in_namespace(server, tmp_path, "allow=fe80::/10") as log:
        result = link_local_probe(client, target, dev)
        assert "STORED\r\n" in result["tcp"] and "VALUE k 0 1\r\nX\r\n" in result["tcp"], (result, log.read_text())
        assert result["udp"] is not None and result["udp"].startswith("VERSION"), (result, log.read_text())


# ---------------------------------------------------------------- unix clients throttled per uid (finding 12a)

PASSWORD = "correct horse"

UNIX_LOGIN = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(sys.argv[1])
    value = sys.argv[2].encode()
    s.sendall(b"set a 0 0 %d\\r\\n%s\\r\\n" % (len(value), value))
    reply = b""
    while not reply.endswith(b"\\r\\n") and len(reply) < 200:
        chunk = s.recv(200)
        if not chunk:
            break
        reply += chunk
    print(reply.decode().strip())
    """)


def unix_login(path, value, uid):
    r = subprocess.run(["python3", "-c", UNIX_LOGIN, path, value], capture_output=True, timeout=30, user=uid)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode().strip()


def test_unix_clients_are_throttled_per_uid(server_factory):
    """Guessing failures by one local account over the unix socket do not delay another account's login."""
    if os.geteuid() != 0:
        pytest.skip("running a client as another uid needs root (CI runs as root)")
    d = server_factory.tmpdir()
    credentials = os.path.join(d, "credentials")
    r = subprocess.run([moat_bin(), "user", "add", "alice", "--credentials", credentials],
                       input=(PASSWORD + "\n").encode(), capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    path = os.path.join(d, "moat.sock")
    # A long delay after one failure: whoever shares the failing client's key is refused unchecked.
    srv = server_factory.start(["-S", "--credentials", credentials, "-s", path, "-a", "0777",
                                "-o", "auth_delay=30,auth_burst=1,auth_max_failures=50"], unix_path=path)
    good = "alice " + PASSWORD
    assert unix_login(path, "alice wrong", 0) == "CLIENT_ERROR authentication failure"
    # The same account is held back (the throttle is on) ...
    assert unix_login(path, good, 0) == "CLIENT_ERROR authentication failure"
    # ... another account is a different source and logs in at once.
    assert unix_login(path, good, 65534) == "STORED"
    with connect_from(srv, "127.0.0.1") as c:
        assert c.store(b"set", b"a", good.encode()) == b"STORED"
        stats = c.stats_dict()
    assert int(stats["auth_refused"]) == 1 and int(stats["auth_errors"]) == 1, stats


# ---------------------------------------------------------------- metrics slots per address (finding 12b)

SCRAPE = b"GET /metrics HTTP/1.1\r\nHost: moat\r\n\r\n"


def scrape_on(sock):
    """Sends one keep-alive scrape on sock; True when a 200 response comes back whole."""
    try:
        sock.sendall(SCRAPE)
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = sock.recv(65536)
            if not chunk:
                return False
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int([line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")][0])
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                return False
            body += chunk
        return head.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def test_one_host_cannot_hold_every_metrics_slot(server_factory):
    """A host holding many idle metrics connections gets only its share (4), so another host still scrapes."""
    port = free_port()
    server_factory.start(args=["-o", "metrics_port=%d" % port])
    held = []
    try:
        for _ in range(16):
            s = socket.socket()
            s.settimeout(3)
            s.bind(("127.0.0.2", 0))
            s.connect(("127.0.0.1", port))
            held.append(s)
        # Each scrape proves its connection was accepted and kept (keep-alive) or refused.
        served = sum(scrape_on(s) for s in held)
        assert served == 4, served
        other = socket.socket()
        other.settimeout(3)
        other.bind(("127.0.0.3", 0))
        try:
            other.connect(("127.0.0.1", port))
            assert scrape_on(other)
        finally:
            other.close()
    finally:
        for s in held:
            s.close()
