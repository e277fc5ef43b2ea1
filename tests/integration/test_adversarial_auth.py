"""Adversarial tests for authentication (issue 17): each proves one attack closed, on the real binary.

Reloads revalidate open sessions and SASL exchanges against the new credentials (finding 3); parallel
SCRAM exchanges cannot get guesses past the delay or the lockout (finding 4); unknown users look like
known ones (finding 9); certificate logins and concurrent `moat user` edits (finding 12)."""

import os
import pwd
import signal
import socket
import subprocess
import time

import pytest

from moat_support import Conn, connect_from, moat_bin, wait_until
from test_auth import PASSWORD, ScramClient, frame, read_frame, sasl

pytestmark = pytest.mark.moat_only

NEW_PASSWORD = "battery staple"


def moat_user(*args, stdin=None):
    return subprocess.run([moat_bin(), "user", *args], input=stdin, capture_output=True, timeout=120)


def add_user(path, name, password=PASSWORD, iterations=4096):
    r = moat_user("add", name, "--credentials", path, "--iterations", str(iterations), stdin=(password + "\n").encode())
    assert r.returncode == 0, r.stderr


def make_credentials(server_factory, *names):
    path = os.path.join(server_factory.tmpdir(), "credentials")
    for name in names:
        add_user(path, name)
    return path


def readable_by_server(path):
    """The server reads the credentials again on SIGHUP after dropping root to nobody (`moat user` replaces the file)."""
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(path, nobody.pw_uid, nobody.pw_gid)


def reload(srv, creds):
    """SIGHUP, then wait (bounded) until the server has logged one more reload."""
    readable_by_server(creds)
    before = srv.stderr_text().count("configuration reloaded")
    os.kill(srv.pid, signal.SIGHUP)
    assert wait_until(lambda: srv.stderr_text().count("configuration reloaded") > before, 10), srv.stderr_text()[-2000:]


def ascii_login(srv, user, password, source="127.0.0.1"):
    c = connect_from(srv, source)
    reply = c.store(b"set", b"auth", ("%s %s" % (user, password)).encode())
    return c, reply


def plain_login(srv, user, password):
    c = Conn.to(srv)
    status, _ = sasl(c, "PLAIN", b"\0" + user.encode() + b"\0" + password.encode())
    return c, status


def closed_soon(c, timeout=5.0):
    """True when the server closes `c` within `timeout` without being sent anything more."""
    _, closed = c.read_until_closed(timeout=timeout)
    return closed


# -------------------------------------------------------------------------- finding 3: reloads revoke

def test_deleted_user_sessions_close_on_reload(server_factory):
    """Deleting a user and reloading closes its open ASCII and binary PLAIN sessions (they kept writing)."""
    bmemcached = pytest.importorskip("bmemcached")
    creds = make_credentials(server_factory, "alice", "bob")
    srv = server_factory.start(args=["-S", "--credentials", creds, "-o", "auth_delay=0"])
    text, reply = ascii_login(srv, "alice", PASSWORD)
    assert reply == b"STORED"
    binary, status = plain_login(srv, "alice", PASSWORD)
    assert status == 0
    client = bmemcached.Client(("127.0.0.1:%d" % srv.port,), "alice", PASSWORD)
    assert client.set("k", "v")
    bob, reply = ascii_login(srv, "bob", PASSWORD)
    assert reply == b"STORED"
    assert moat_user("del", "alice", "--credentials", creds).returncode == 0
    reload(srv, creds)
    assert closed_soon(text) and closed_soon(binary)
    # bmemcached's connection was closed too; it reconnects, and alice no longer logs in.
    try:
        stored = client.set("k", "w")
    except Exception:
        stored = False
    assert not stored
    client.disconnect_all()
    assert ascii_login(srv, "alice", PASSWORD)[1] == b"CLIENT_ERROR authentication failure"
    # bob is untouched.
    assert bob.store(b"set", b"k2", b"v") == b"STORED"
    assert bob.get(b"k") == b"v"
    assert '"reason":"access_revoked"' in srv.stderr_text()
    for c in (text, binary, bob):
        c.close()


def test_password_change_closes_old_sessions_on_reload(server_factory):
    """A password change and reload closes sessions opened with the old password; only the new one logs in."""
    pymemcache = pytest.importorskip("pymemcache.client.base")
    creds = make_credentials(server_factory, "alice")
    srv = server_factory.start(args=["-S", "--credentials", creds, "-o", "auth_delay=0,auth_max_failures=50"])
    text, reply = ascii_login(srv, "alice", PASSWORD)
    assert reply == b"STORED"
    client = pymemcache.Client(("127.0.0.1", srv.port), timeout=5, connect_timeout=5)
    assert client.set("auth", "alice " + PASSWORD) is True
    assert client.set("k", b"v") is True
    add_user(creds, "alice", NEW_PASSWORD)
    reload(srv, creds)
    assert closed_soon(text)
    # pymemcache's socket was closed under it: its next command fails.
    with pytest.raises(Exception):
        client.get("k")
    client.close()
    old, reply = ascii_login(srv, "alice", PASSWORD)
    assert reply == b"CLIENT_ERROR authentication failure"
    old.close()
    new, reply = ascii_login(srv, "alice", NEW_PASSWORD)
    assert reply == b"STORED"
    assert new.get(b"k") == b"v"
    new.close()
    text.close()


def test_last_user_deleted_means_nobody_logs_in(server_factory):
    """Deleting the last user and reloading applies (it failed with "no users"): nobody logs in, even after a restart."""
    creds = make_credentials(server_factory, "alice")
    srv = server_factory.start(args=["-S", "--credentials", creds, "-o", "auth_delay=0"])
    text, reply = ascii_login(srv, "alice", PASSWORD)
    assert reply == b"STORED"
    assert moat_user("del", "alice", "--credentials", creds).returncode == 0
    reload(srv, creds)
    assert closed_soon(text)
    assert srv.alive()
    c, reply = ascii_login(srv, "alice", PASSWORD)
    assert reply == b"CLIENT_ERROR authentication failure"
    c.close()
    c, status = plain_login(srv, "alice", PASSWORD)
    assert status == 0x20
    c.close()
    srv.stop()
    # An empty credentials file is a valid state to start in, and to reload into.
    again = server_factory.start(args=["-S", "--credentials", creds, "-o", "auth_delay=0"])
    c, reply = ascii_login(again, "alice", PASSWORD)
    assert reply == b"CLIENT_ERROR authentication failure"
    c.close()
    add_user(creds, "alice")
    reload(again, creds)
    c, reply = ascii_login(again, "alice", PASSWORD)
    assert reply == b"STORED"
    c.close()


@pytest.mark.parametrize("change", ["delete", "password"])
def test_scram_exchange_begun_before_reload_fails(server_factory, change):
    """A SCRAM exchange started before a reload that removed the user or changed its password cannot finish."""
    creds = make_credentials(server_factory, "alice", "bob")
    srv = server_factory.start(args=["-S", "--credentials", creds, "-o", "auth_delay=0"])
    with Conn.to(srv) as c:
        client = ScramClient("alice", PASSWORD)
        status, first = sasl(c, "SCRAM-SHA-256", client.first())
        assert status == 0x21
        if change == "delete":
            assert moat_user("del", "alice", "--credentials", creds).returncode == 0
        else:
            add_user(creds, "alice", NEW_PASSWORD)
        reload(srv, creds)
        status, _ = sasl(c, "SCRAM-SHA-256", client.final(first), step=True)
        if status == 0x21:  # the proof was accepted: the acknowledgement must not log in either
            status, _ = sasl(c, "SCRAM-SHA-256", b"", step=True)
        assert status == 0x20
        c.send(frame(0x01, key=b"k", extras=b"\0" * 8, value=b"v"))
        assert read_frame(c)[0] == 0x20


# -------------------------------------------------------------------------- finding 4: parallel SCRAM

def start_exchanges(srv, source, user, password, count):
    """`count` SCRAM exchanges from `source`, each past its server-first: [(conn, client, server_first)]."""
    started = []
    for _ in range(count):
        c = connect_from(srv, source)
        client = ScramClient(user, password)
        status, first = sasl(c, "SCRAM-SHA-256", client.first())
        assert status == 0x21
        started.append((c, client, first))
    return started


def stats_from_elsewhere(srv):
    c, reply = ascii_login(srv, "bob", PASSWORD, source="127.0.0.9")
    assert reply == b"STORED"
    stats = c.stats_dict()
    c.close()
    return stats


def test_parallel_scram_exchanges_respect_the_lockout(server_factory):
    """K SCRAM exchanges begun together get no guesses past the lockout, and a right proof fails during it."""
    creds = make_credentials(server_factory, "alice", "bob")
    srv = server_factory.start(args=["-S", "--credentials", creds, "-o",
                                     "auth_delay=0,auth_lockout_failures=3,auth_lockout_seconds=60,auth_max_failures=50"])
    wrong = start_exchanges(srv, "127.0.0.7", "alice", "wrong password", 8)
    right = start_exchanges(srv, "127.0.0.7", "alice", PASSWORD, 1)
    for c, client, first in wrong:
        assert sasl(c, "SCRAM-SHA-256", client.final(first), step=True)[0] == 0x20
    c, client, first = right[0]
    status, _ = sasl(c, "SCRAM-SHA-256", client.final(first), step=True)
    if status == 0x21:
        status, _ = sasl(c, "SCRAM-SHA-256", b"", step=True)
    assert status == 0x20
    stats = stats_from_elsewhere(srv)
    assert stats["auth_lockouts"] == "1"
    assert int(stats["auth_errors"]) == 3   # only the failures up to the lockout were checked
    assert int(stats["auth_refused"]) >= 6  # the other five wrong proofs and the right one
    for c, _, _ in wrong + right:
        c.close()


def test_parallel_scram_exchanges_respect_the_delay(server_factory):
    """K SCRAM exchanges begun together get the burst's checked guesses (-o auth_burst), not K."""
    creds = make_credentials(server_factory, "alice", "bob")
    srv = server_factory.start(args=["-S", "--credentials", creds, "-o",
                                     "auth_delay=30,auth_burst=2,auth_lockout_failures=100,auth_max_failures=50"])
    wrong = start_exchanges(srv, "127.0.0.8", "alice", "wrong password", 5)
    for c, client, first in wrong:
        assert sasl(c, "SCRAM-SHA-256", client.final(first), step=True)[0] == 0x20
    stats = stats_from_elsewhere(srv)
    assert int(stats["auth_errors"]) == 2
    assert int(stats["auth_refused"]) == 3
    for c, _, _ in wrong:
        c.close()


def test_plaintext_users_keep_their_sessions_over_an_unchanged_reload(server_factory):
    """A reload that leaves a -Y user's password alone keeps its session (random salts made it look changed); a change closes it."""
    path = os.path.join(server_factory.tmpdir(), "auth")
    with open(path, "w") as f:
        f.write("alice:pw1\nbob:pw2\n")
    os.chmod(path, 0o600)
    srv = server_factory.start(args=["-Y", path])
    alice = Conn.to(srv)
    assert alice.store(b"set", b"a", b"alice pw1") == b"STORED"
    bob = Conn.to(srv)
    assert bob.store(b"set", b"a", b"bob pw2") == b"STORED"
    reload(srv, path)
    time.sleep(1.0)  # revalidation runs every quarter second
    assert alice.store(b"set", b"k", b"v") == b"STORED"
    with open(path, "w") as f:
        f.write("alice:pw1\nbob:changed\n")
    reload(srv, path)
    assert closed_soon(bob)
    assert alice.get(b"k") == b"v"
    alice.close()
    bob.close()


def test_concurrent_user_edits_lose_nothing(server_factory):
    """Concurrent `moat user add`/`del` of distinct users all take effect (an unlocked read-modify-write resurrected deleted users)."""
    path = make_credentials(server_factory, *["old%d" % i for i in range(6)])
    procs = []
    for i in range(6):
        procs.append(subprocess.Popen([moat_bin(), "user", "del", "old%d" % i, "--credentials", path],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        procs.append(subprocess.Popen([moat_bin(), "user", "add", "new%d" % i, "--credentials", path, "--iterations", "4096"],
                                      stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        procs[-1].stdin.write(b"pw\n")
        procs[-1].stdin.close()
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    listed = moat_user("list", "--credentials", path)
    assert listed.stdout.decode().split() == ["new%d" % i for i in range(6)]


# -------------------------------------------------------------------------- finding 9: unknown users

def server_first(srv, user):
    """The SCRAM-SHA-256 server-first fields the server gives `user`: {"r": ..., "s": ..., "i": ...}."""
    with Conn.to(srv) as c:
        status, first = sasl(c, "SCRAM-SHA-256", ScramClient(user, "x").first())
        assert status == 0x21, (status, first)
    return dict(item.split("=", 1) for item in first.decode().split(","))


def plaintext_file(server_factory, text):
    path = os.path.join(server_factory.tmpdir(), "auth")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


@pytest.mark.parametrize("source", ["plaintext", "credentials"])
def test_unknown_users_get_the_iteration_count_of_real_ones(server_factory, source):
    """SCRAM's server-first gives an unknown name the count real users have (65,536 beside -Y's 4,096 told who exists)."""
    if source == "plaintext":
        args, expected = ["-Y", plaintext_file(server_factory, "alice:pw1\nbob:pw2\n")], "4096"
    else:
        creds = os.path.join(server_factory.tmpdir(), "credentials")
        for name in ("alice", "bob"):
            add_user(creds, name, iterations=8192)
        args, expected = ["-S", "--credentials", creds], "8192"
    srv = server_factory.start(args=args)
    assert server_first(srv, "alice")["i"] == expected
    assert server_first(srv, "mallory")["i"] == expected


def test_unknown_user_salts_survive_a_restart(server_factory):
    """An unknown name's salt stays the same across a restart, as a real user's does (fake salts changed, real ones not)."""
    creds = make_credentials(server_factory, "alice")
    readable_by_server(creds)
    port = None
    salts = []
    for _ in range(2):
        srv = server_factory.start(args=["-S", "--credentials", creds], port=port)
        port = srv.port
        salts.append((server_first(srv, "alice")["s"], server_first(srv, "mallory")["s"]))
        assert server_first(srv, "mallory")["s"] == salts[-1][1]
        srv.stop()
    assert salts[0] == salts[1]
    assert salts[0][0] != salts[0][1]
    # An edit of the file (another user) changes neither.
    add_user(creds, "bob")
    readable_by_server(creds)
    srv = server_factory.start(args=["-S", "--credentials", creds], port=port)
    assert (server_first(srv, "alice")["s"], server_first(srv, "mallory")["s"]) == salts[0]


def plain_failure_seconds(srv, user, rounds):
    """Median seconds of `rounds` failed PLAIN attempts as `user` (a fresh connection each)."""
    times = []
    for _ in range(rounds):
        with Conn.to(srv) as c:
            start = time.monotonic()
            status, _ = sasl(c, "PLAIN", b"\0" + user.encode() + b"\0wrong password")
            times.append(time.monotonic() - start)
            assert status == 0x20
    return sorted(times)[rounds // 2]


def test_plain_attempts_take_as_long_for_unknown_users(server_factory):
    """A failed PLAIN attempt costs the same for an unknown name as for a -Y user (65,536 rounds against 4,096 told who exists)."""
    srv = server_factory.start(args=["-Y", plaintext_file(server_factory, "alice:pw1\n"), "-o", "auth_delay=0",
                                     "-o", "auth_lockout_failures=1000"])
    known, unknown = [], []
    for _ in range(3):  # interleaved, so that load on the machine hits both alike
        known.append(plain_failure_seconds(srv, "alice", 5))
        unknown.append(plain_failure_seconds(srv, "mallory", 5))
    known, unknown = sorted(known)[1], sorted(unknown)[1]
    # The old server took 16 times as long for the unknown name; equal work stays well inside 3x.
    assert unknown < 3 * known + 0.002, (known, unknown)


def test_iteration_counts_are_bounded(server_factory):
    """No user can cost the server more than 262,144 rounds per PLAIN attempt (10,000,000 took ~2 s of a loop thread each)."""
    creds = os.path.join(server_factory.tmpdir(), "credentials")
    r = moat_user("add", "slow", "--credentials", creds, "--iterations", "10000000", stdin=b"pw\n")
    assert r.returncode != 0 and b"iterations" in r.stderr, r
    assert not os.path.exists(creds)
    # A file written by hand (or by an older Moat) with such a count is refused at start.
    add_user(creds, "alice")
    with open(creds) as f:
        text = f.read()
    fields = text.splitlines()[-1].split(":")
    fields[2] = fields[7] = "10000000"
    with open(creds, "w") as f:
        f.write(text + ":".join(["slow"] + fields[1:]) + "\n")
    readable_by_server(creds)
    rc, err = server_factory.start_expect_exit(args=["-S", "--credentials", creds])
    assert rc not in (None, 0) and "iterations" in err, err


# -------------------------------------------------------------------------- finding 12: certificates

def test_a_certificate_with_several_common_names_logs_in_no_one(server_factory):
    """A client certificate whose subject holds several CNs ("CN=mallory, CN=alice") logs in as none of them (it logged in as the first that named a user)."""
    from test_tls import make_ca, make_cert, openssl
    d = server_factory.tmpdir()
    os.chmod(d, 0o755)
    make_ca(d, "ca")
    make_cert(d, "server", "ca")
    make_cert(d, "alice", "ca")
    for subject, name in (("/CN=mallory/CN=alice", "two"), ("/CN=mallory+CN=alice", "multi")):
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", name + ".key",
                "-out", name + ".csr", "-subj", subject, "-multivalue-rdn", cwd=d)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", name + ".pem", "-days", "2", cwd=d)
    for entry in os.listdir(d):
        os.chmod(os.path.join(d, entry), 0o644)
    creds = make_credentials(server_factory, "alice")
    srv = server_factory.start(args=["-Z", "-o", "ssl_chain_cert=%s/server.pem,ssl_key=%s/server.key" % (d, d),
                                     "-S", "--credentials", creds,
                                     "-o", "ssl_verify_mode=1,ssl_ca_cert=%s/ca.pem,ssl_cert_auth" % d])

    def tls(cert):
        import ssl
        ctx = ssl.create_default_context(cafile=os.path.join(d, "ca.pem"))
        ctx.load_cert_chain(os.path.join(d, cert + ".pem"), os.path.join(d, cert + ".key"))
        return Conn(ctx.wrap_socket(socket.create_connection(("127.0.0.1", srv.port), timeout=5), server_hostname="localhost"))

    with tls("alice") as t:  # one CN that is a user: logged in
        assert t.store(b"set", b"k", b"v") == b"STORED"
    for cert in ("two", "multi"):
        with tls(cert) as t:
            assert t.cmd(b"get k") == b"CLIENT_ERROR unauthenticated", cert
    assert wait_until(lambda: srv.stderr_text().count("common names: not used to log in") == 2, 5), srv.stderr_text()[-2000:]
