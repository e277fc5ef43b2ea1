"""Authentication (-S --credentials, -Y): binary SASL with real clients (pylibmc through Cyrus SASL,
python-binary-memcached, memcstat), memcached's ASCII auth, refusals before authentication, hostile
SASL frames, and the guessing limits (per-connection failures, per-address delay and lockout, deadline)."""

import base64
import hashlib
import hmac
import os
import shutil
import struct
import subprocess
import time

import pytest

from moat_support import connect_from, Conn, moat_bin, wait_until

pytestmark = pytest.mark.moat_only

PASSWORD = "correct horse"
BEHAVIORS = {"connect_timeout": 5000, "receive_timeout": 5_000_000, "send_timeout": 5_000_000, "retry_timeout": 1}


def moat_user(*args, stdin=None):
    return subprocess.run([moat_bin(), "user", *args], input=stdin, capture_output=True, timeout=60)


@pytest.fixture
def credentials(server_factory):
    """A credentials file with alice and bob (mode 0600, made by `moat user add`)."""
    path = os.path.join(server_factory.tmpdir(), "credentials")
    for name in ("alice", "bob"):
        r = moat_user("add", name, "--credentials", path, stdin=(PASSWORD + "\n").encode())
        assert r.returncode == 0, r.stderr
    return path


def auth_server(server_factory, credentials, *extra):
    return server_factory.start(args=["-S", "--credentials", credentials, *extra])


# -------------------------------------------------------------------------- raw binary frames

def frame(opcode, key=b"", value=b"", extras=b"", opaque=0, cas=0):
    body = extras + key + value
    return struct.pack(">BBHBBHIIQ", 0x80, opcode, len(key), len(extras), 0, 0, len(body), opaque, cas) + body


def read_frame(conn):
    header = conn.readexact(24)
    magic, opcode, keylen, extlen, _, status, bodylen, opaque, cas = struct.unpack(">BBHBBHIIQ", header)
    assert magic == 0x81
    body = conn.readexact(bodylen)
    return status, body[extlen + keylen:], opaque


def sasl(conn, mechanism, data, step=False):
    conn.send(frame(0x22 if step else 0x21, key=mechanism.encode(), value=data))
    return read_frame(conn)[:2]


class ScramClient:
    """Just enough RFC 5802 client to drive (and tamper with) an exchange."""

    def __init__(self, user, password, hash_name="sha256", nonce=None):
        self.user, self.password, self.hash_name = user, password, hash_name
        self.nonce = nonce or base64.b64encode(os.urandom(18)).decode()
        self.bare = "n=%s,r=%s" % (user, self.nonce)

    def first(self):
        return ("n,," + self.bare).encode()

    def final(self, server_first):
        fields = dict(item.split("=", 1) for item in server_first.decode().split(","))
        salted = hashlib.pbkdf2_hmac(self.hash_name, self.password.encode(), base64.b64decode(fields["s"]), int(fields["i"]))
        client_key = hmac.new(salted, b"Client Key", self.hash_name).digest()
        stored = hashlib.new(self.hash_name, client_key).digest()
        without_proof = "c=biws,r=%s" % fields["r"]
        auth_message = ",".join([self.bare, server_first.decode(), without_proof]).encode()
        signature = hmac.new(stored, auth_message, self.hash_name).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        server_key = hmac.new(salted, b"Server Key", self.hash_name).digest()
        self.expected_server_signature = base64.b64encode(hmac.new(server_key, auth_message, self.hash_name).digest())
        return (without_proof + ",p=" + base64.b64encode(proof).decode()).encode()


def scram_login(conn, user, password, mechanism="SCRAM-SHA-256", hash_name="sha256"):
    client = ScramClient(user, password, hash_name)
    status, server_first = sasl(conn, mechanism, client.first())
    assert status == 0x21, (status, server_first)
    status, server_final = sasl(conn, mechanism, client.final(server_first), step=True)
    if status != 0x21:
        return status
    assert server_final == b"v=" + client.expected_server_signature
    status, body = sasl(conn, mechanism, b"", step=True)
    assert body == b"Authenticated" or status != 0
    return status


# -------------------------------------------------------------------------- credential store CLI

def test_user_add_list_del_and_no_plaintext(server_factory):
    path = os.path.join(server_factory.tmpdir(), "creds")
    for name in ("carol", "dave"):
        assert moat_user("add", name, "--credentials", path, stdin=b"s3cret-pass\n").returncode == 0
    assert os.stat(path).st_mode & 0o777 == 0o600
    listed = moat_user("list", "--credentials", path)
    assert listed.returncode == 0 and listed.stdout.decode().split() == ["carol", "dave"]
    content = open(path, "rb").read()
    assert b"s3cret-pass" not in content and base64.b64encode(b"s3cret-pass") not in content
    assert moat_user("del", "dave", "--credentials", path).returncode == 0
    assert moat_user("list", "--credentials", path).stdout.decode().split() == ["carol"]
    assert moat_user("del", "dave", "--credentials", path).returncode != 0
    # No password on standard input: refused, file unchanged.
    assert moat_user("add", "erin", "--credentials", path, stdin=b"").returncode != 0
    assert moat_user("list", "--credentials", path).stdout.decode().split() == ["carol"]


def test_refuses_credentials_others_can_read(server_factory, credentials):
    os.chmod(credentials, 0o644)
    rc, err = server_factory.start_expect_exit(args=["-S", "--credentials", credentials])
    assert rc == 64, err
    assert "chmod" in err


def test_dash_s_without_users_is_refused(server_factory):
    rc, err = server_factory.start_expect_exit(args=["-S"])
    assert rc == 64 and "--credentials" in err


# -------------------------------------------------------------------------- real clients

def pylibmc_client(port, user, password):
    pylibmc = pytest.importorskip("pylibmc")
    return pylibmc, pylibmc.Client(["127.0.0.1:%d" % port], binary=True, username=user, password=password, behaviors=BEHAVIORS)


@pytest.mark.parametrize("mechs", ["SCRAM-SHA-256:PLAIN", "PLAIN", "SCRAM-SHA-1"])
def test_pylibmc_authenticates_and_is_refused_with_a_wrong_password(server_factory, credentials, mechs):
    srv = auth_server(server_factory, credentials, "-vv", "-o", "sasl_mechs=" + mechs + ",auth_delay=0")
    pylibmc, good = pylibmc_client(srv.port, "alice", PASSWORD)
    assert good.set("k", b"v") is True
    assert good.get("k") == b"v"
    good.disconnect_all()
    first_mech = mechs.split(":")[0]
    assert wait_until(lambda: '"mechanism":"%s"' % first_mech in srv.stderr_text(), 5), srv.stderr_text()[-2000:]
    _, bad = pylibmc_client(srv.port, "alice", "wrong")
    with pytest.raises(pylibmc.Error):
        bad.get("k")
    bad.disconnect_all()
    assert wait_until(lambda: '"event":"auth_failure"' in srv.stderr_text(), 5)


def test_cyrus_client_picks_scram_by_default(server_factory, credentials):
    srv = auth_server(server_factory, credentials, "-vv")
    _, c = pylibmc_client(srv.port, "bob", PASSWORD)
    assert c.set("x", b"1") is True
    c.disconnect_all()
    assert wait_until(lambda: '"mechanism":"SCRAM-SHA-256"' in srv.stderr_text(), 5), srv.stderr_text()


def test_bmemcached_plain(server_factory, credentials):
    bmemcached = pytest.importorskip("bmemcached")
    srv = auth_server(server_factory, credentials, "-o", "auth_delay=0")
    c = bmemcached.Client(("127.0.0.1:%d" % srv.port,), "alice", PASSWORD)
    assert c.set("k", "v")
    assert c.get("k") == "v"
    c.disconnect_all()
    bad = bmemcached.Client(("127.0.0.1:%d" % srv.port,), "alice", "nope")
    with pytest.raises(Exception):
        bad.set("k", "w")
    bad.disconnect_all()


def test_memcstat_scram(server_factory, credentials):
    if not shutil.which("memcstat"):
        pytest.skip("memcstat (libmemcached-tools) is not installed")
    srv = auth_server(server_factory, credentials)
    ok = subprocess.run(["memcstat", "--binary", "-u", "alice", "-p", PASSWORD, "--servers=127.0.0.1:%d" % srv.port],
                        capture_output=True, timeout=30)
    assert ok.returncode == 0 and b"curr_connections" in ok.stdout, ok
    assert b"pid" in ok.stdout


# -------------------------------------------------------------------------- before authentication

def test_binary_commands_before_authentication(server_factory, credentials):
    srv = auth_server(server_factory, credentials)
    with Conn.to(srv) as c:
        c.send(frame(0x0b, opaque=7))  # version: no build
        status, body, opaque = read_frame(c)
        assert (status, body, opaque) == (0, b"1.6.21", 7)
        c.send(frame(0x0a))  # noop
        assert read_frame(c)[0] == 0
        for request in (frame(0x00, key=b"k"), frame(0x09, key=b"k"), frame(0x10), frame(0x01, key=b"k", extras=b"\0" * 8, value=b"v")):
            c.send(request)
            status, body, _ = read_frame(c)
            assert (status, body) == (0x20, b"Auth failure."), request[:2]
        c.send(frame(0x20))  # list mechs
        assert read_frame(c)[:2] == (0, b"SCRAM-SHA-256 PLAIN")
        assert scram_login(c, "alice", PASSWORD) == 0
        c.send(frame(0x0b))
        assert read_frame(c)[1].startswith(b"1.6.21-moat-")
        c.send(frame(0x01, key=b"k", extras=b"\0" * 8, value=b"v"))
        assert read_frame(c)[0] == 0


def test_ascii_auth(server_factory, credentials):
    srv = auth_server(server_factory, credentials)
    with Conn.to(srv) as c:
        assert c.cmd(b"get k") == b"CLIENT_ERROR unauthenticated"
        assert c.cmd(b"stats") == b"CLIENT_ERROR unauthenticated"
        assert c.cmd(b"version") == b"VERSION 1.6.21"
        assert c.store(b"add", b"auth", b"alice " + PASSWORD.encode()) == b"CLIENT_ERROR unauthenticated"
        assert c.store(b"set", b"auth", b"alice " + PASSWORD.encode()) == b"STORED"
        assert c.store(b"set", b"k", b"v") == b"STORED"
        assert c.get(b"k") == b"v"
        assert c.get(b"auth") is None  # the credentials were not stored as an item
        stats = c.stats_dict()
        assert stats["auth_cmds"] == "1" and stats["auth_errors"] == "0"


def test_pymemcache_ascii_auth(server_factory, credentials):
    pymemcache = pytest.importorskip("pymemcache.client.base")
    srv = auth_server(server_factory, credentials)
    c = pymemcache.Client(("127.0.0.1", srv.port), timeout=5, connect_timeout=5)
    assert c.set("auth", "bob " + PASSWORD) is True
    assert c.set("k", b"v") is True
    assert c.get("k") == b"v"
    c.close()


def test_memcached_plaintext_auth_file(server_factory):
    d = server_factory.tmpdir()
    path = os.path.join(d, "auth")
    # memcached keeps only the first 8 users; Moat keeps them all. Passwords may contain ':'.
    with open(path, "w") as f:
        for i in range(12):
            f.write("user%d:pa:ss%d\n" % (i, i))
    os.chmod(path, 0o600)
    srv = server_factory.start(args=["-Y", path])
    assert "plaintext" in srv.stderr_text()
    with Conn.to(srv) as c:
        assert c.store(b"set", b"a", b"user11 pa:ss11") == b"STORED"
        assert c.store(b"set", b"k", b"v") == b"STORED"
    bmemcached = pytest.importorskip("bmemcached")
    b = bmemcached.Client(("127.0.0.1:%d" % srv.port,), "user9", "pa:ss9")
    assert b.get("k") == "v"
    b.disconnect_all()


# -------------------------------------------------------------------------- hostile SASL

def test_malformed_sasl_is_refused_cleanly(server_factory, credentials):
    srv = auth_server(server_factory, credentials, "-o", "auth_delay=0,auth_max_failures=100,auth_lockout_failures=1000")
    with Conn.to(srv) as c:
        # A mechanism not offered, or a name longer than any: "Invalid arguments", as memcached, and the
        # connection stays (clients try the next mechanism on it).
        assert sasl(c, "GSSAPI", b"x") == (0x04, b"Invalid arguments")
        assert sasl(c, "M" * 40, b"x" * 100) == (0x04, b"Invalid arguments")
        assert sasl(c, "PLAIN", b"", step=True)[0] == 0x20                    # step with no exchange
        assert sasl(c, "PLAIN", b"alice")[0] == 0x20                          # no NULs
        assert sasl(c, "PLAIN", b"\0alice\0wrong")[0] == 0x20                 # wrong password
        assert sasl(c, "PLAIN", b"\0mallory\0" + PASSWORD.encode())[0] == 0x20  # unknown user
        assert sasl(c, "SCRAM-SHA-256", b"n,,n=alice")[0] == 0x20              # truncated client-first
        assert sasl(c, "SCRAM-SHA-256", b"p=tls-unique,,n=alice,r=abc")[0] == 0x20  # channel binding
        assert sasl(c, "SCRAM-SHA-256", b"\xff" * 300)[0] == 0x20
        # A truncated client-final, then a tampered proof.
        client = ScramClient("alice", PASSWORD)
        status, first = sasl(c, "SCRAM-SHA-256", client.first())
        assert status == 0x21
        assert sasl(c, "SCRAM-SHA-256", client.final(first)[:20], step=True)[0] == 0x20
        client = ScramClient("alice", "wrong password")
        status, first = sasl(c, "SCRAM-SHA-256", client.first())
        assert sasl(c, "SCRAM-SHA-256", client.final(first), step=True)[0] == 0x20
        # Still a working connection that can authenticate.
        assert sasl(c, "PLAIN", b"\0alice\0" + PASSWORD.encode()) == (0, b"Authenticated")
    with Conn.to(srv) as c:
        # A huge length field is refused at once (invalid arguments, then closed), not awaited.
        c.send(struct.pack(">BBHBBHIIQ", 0x80, 0x21, 5, 0, 0, 0, 0x7FFFFFF0, 0, 0) + b"PLAIN")
        status, _, _ = read_frame(c)
        assert status == 0x04
        assert c.read_until_closed(timeout=3)[1]
    assert srv.alive()


def test_replayed_scram_final_is_refused(server_factory, credentials):
    srv = auth_server(server_factory, credentials, "-o", "auth_delay=0")
    client = ScramClient("alice", PASSWORD, nonce="fixednonce")
    with Conn.to(srv) as c:
        status, first = sasl(c, "SCRAM-SHA-256", client.first())
        final = client.final(first)
        assert sasl(c, "SCRAM-SHA-256", final, step=True)[0] == 0x21
        assert sasl(c, "SCRAM-SHA-256", b"", step=True) == (0, b"Authenticated")
    with Conn.to(srv) as c:
        status, first2 = sasl(c, "SCRAM-SHA-256", client.first())
        assert status == 0x21 and first2 != first  # a fresh server nonce
        assert sasl(c, "SCRAM-SHA-256", final, step=True)[0] == 0x20
        c.send(frame(0x00, key=b"k"))
        assert read_frame(c)[0] == 0x20


def test_unknown_user_looks_like_a_known_one(server_factory, credentials):
    srv = auth_server(server_factory, credentials)
    shapes = []
    for user in ("alice", "nobody-here"):
        with Conn.to(srv) as c:
            status, first = sasl(c, "SCRAM-SHA-256", ScramClient(user, "x").first())
            assert status == 0x21
            fields = dict(item.split("=", 1) for item in first.decode().split(","))
            shapes.append((sorted(fields), len(base64.b64decode(fields["s"])), fields["i"]))
    assert shapes[0] == shapes[1]


# -------------------------------------------------------------------------- guessing limits

def test_connection_closes_after_repeated_failures(server_factory, credentials):
    srv = auth_server(server_factory, credentials, "-o", "auth_delay=0,auth_max_failures=3")
    with Conn.to(srv) as c:
        for _ in range(2):
            assert c.store(b"set", b"a", b"alice wrong") == b"CLIENT_ERROR authentication failure"
        c.send(b"set a 0 0 11\r\nalice wrong\r\n")
        data, closed = c.read_until_closed(timeout=3)
        assert data == b"CLIENT_ERROR authentication failure\r\n" and closed
    assert '"event":"auth_failure"' in srv.stderr_text()



def test_delay_then_lockout_per_address(server_factory, credentials):
    srv = auth_server(server_factory, credentials, "-o",
                      "auth_burst=1,auth_delay=0.5,auth_lockout_failures=3,auth_lockout_seconds=60,auth_max_failures=50")
    good = b"alice " + PASSWORD.encode()
    with connect_from(srv, "127.0.0.5") as c:
        assert c.store(b"set", b"a", b"alice wrong") == b"CLIENT_ERROR authentication failure"
        # Too soon after a failure: refused without being checked, even with the right password.
        assert c.store(b"set", b"a", good) == b"CLIENT_ERROR authentication failure"
        time.sleep(0.6)
        assert c.store(b"set", b"a", b"alice wrong") == b"CLIENT_ERROR authentication failure"
        time.sleep(1.1)  # the delay doubled
        assert c.store(b"set", b"a", b"alice wrong") == b"CLIENT_ERROR authentication failure"  # third: locked out
        time.sleep(2.1)
        assert c.store(b"set", b"a", good) == b"CLIENT_ERROR authentication failure"
    # Another address is not affected, and sees the counts.
    with connect_from(srv, "127.0.0.6") as c:
        assert c.store(b"set", b"a", good) == b"STORED"
        stats = c.stats_dict()
        assert stats["auth_lockouts"] == "1"
        assert int(stats["auth_refused"]) == 2
        assert int(stats["auth_errors"]) == 3
    assert '"event":"auth_lockout"' in srv.stderr_text()


def test_a_mistyped_password_then_the_right_one_logs_in(server_factory, credentials):
    """With the default limits, a stale password and then the right one log in on one connection
    (ASCII auth and binary SASL), and a failing neighbour does not hold back a healthy client."""
    srv = auth_server(server_factory, credentials)
    good = b"alice " + PASSWORD.encode()
    with connect_from(srv, "127.0.0.9") as c:
        assert c.store(b"set", b"a", b"alice stale") == b"CLIENT_ERROR authentication failure"
        assert c.store(b"set", b"a", good) == b"STORED"
        assert c.store(b"set", b"k", b"v") == b"STORED"
    with connect_from(srv, "127.0.0.9") as c:
        assert sasl(c, "PLAIN", b"\0alice\0stale")[0] == 0x20
        assert sasl(c, "PLAIN", b"\0alice\0" + PASSWORD.encode()) == (0, b"Authenticated")
    # A misconfigured process and a healthy one on the same host, with real clients.
    import bmemcached
    stale = bmemcached.Client(("127.0.0.1:%d" % srv.port,), "alice", "stale", socket_timeout=5)
    with pytest.raises(Exception):
        stale.set("k", "v")
    healthy = bmemcached.Client(("127.0.0.1:%d" % srv.port,), "alice", PASSWORD, socket_timeout=5)
    assert healthy.set("k", "fresh") and healthy.get("k") == "fresh"
    stale.disconnect_all()
    healthy.disconnect_all()
    with Conn.to(srv) as c:
        assert c.store(b"set", b"a", good) == b"STORED"
        stats = c.stats_dict()
    assert int(stats["auth_errors"]) >= 3 and int(stats["auth_refused"]) == 0, stats


def test_a_burst_of_failures_then_the_delay(server_factory, credentials):
    """The first -o auth_burst failures from a source are checked at once; then the delay holds
    even the right password back, and the default budget locks the source out at the tenth."""
    srv = auth_server(server_factory, credentials, "-o", "auth_burst=3,auth_delay=0.4,auth_max_failures=50")
    good = b"alice " + PASSWORD.encode()
    with connect_from(srv, "127.0.0.10") as c:
        for _ in range(3):
            assert c.store(b"set", b"a", b"alice wrong") == b"CLIENT_ERROR authentication failure"
        assert c.store(b"set", b"a", good) == b"CLIENT_ERROR authentication failure"  # refused unchecked
        time.sleep(0.5)
        assert c.store(b"set", b"a", good) == b"STORED"
        stats = c.stats_dict()
    assert int(stats["auth_errors"]) == 3 and int(stats["auth_refused"]) == 1, stats


def test_deadline_to_authenticate(server_factory, credentials):
    srv = auth_server(server_factory, credentials, "-o", "auth_timeout=1")
    idle = Conn.to(srv)
    authed = Conn.to(srv)
    assert authed.store(b"set", b"a", b"alice " + PASSWORD.encode()) == b"STORED"
    data, closed = idle.read_until_closed(timeout=4)
    assert closed and data == b""
    time.sleep(0.5)
    assert authed.cmd(b"version").startswith(b"VERSION 1.6.21-moat-")
    idle.close()
    authed.close()
