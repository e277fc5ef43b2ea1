"""TLS (-Z): pymemcache with an ssl.SSLContext and openssl s_client, text/meta/binary over TLS,
`notls:` listeners, client certificates (required, wrong CA, expired), plaintext on a TLS port, the
handshake deadline, and certificate reload (SIGHUP and refresh_certs) under load without dropping a
connection. Every certificate is made here by openssl, for these tests only."""

import os
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

from moat_support import Conn, add_user, free_port, moat_bin, wait_until

pytestmark = pytest.mark.moat_only


def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr.decode()


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", name + ".key",
            "-out", name + ".pem", "-days", "2", "-subj", "/CN=" + name, cwd=d)


def make_cert(d, name, ca, days="2", san="DNS:localhost,IP:127.0.0.1"):
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", name + ".key",
            "-out", name + ".csr", "-subj", "/CN=" + name, cwd=d)
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write("subjectAltName=%s\n" % san)
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key", "-CAcreateserial",
            "-out", name + ".pem", "-days", days, "-extfile", name + ".ext", cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("pki"))
    os.chmod(d, 0o755)
    make_ca(d, "ca")
    make_ca(d, "otherca")
    make_cert(d, "server", "ca")
    make_cert(d, "server2", "ca")
    make_cert(d, "client", "ca")
    make_cert(d, "stranger", "otherca")
    make_cert(d, "expired", "ca", days="-1")
    for name in os.listdir(d):
        os.chmod(os.path.join(d, name), 0o644)  # test-only keys; the server reads them again as nobody on reload
    return lambda name: os.path.join(d, name)


def tls_args(pki, *extra):
    return ["-Z", "-o", "ssl_chain_cert=%s,ssl_key=%s" % (pki("server.pem"), pki("server.key")), *extra]


def context(pki, cert=None):
    ctx = ssl.create_default_context(cafile=pki("ca.pem"))
    if cert:
        ctx.load_cert_chain(pki(cert + ".pem"), pki(cert + ".key"))
    return ctx


def tls_conn(srv, pki, cert=None, port=None):
    raw = socket.create_connection(("127.0.0.1", port or srv.port), timeout=5)
    return Conn(context(pki, cert).wrap_socket(raw, server_hostname="localhost"))


def test_pymemcache_text_meta_and_binary_over_tls(server_factory, pki):
    from pymemcache.client.base import Client
    srv = server_factory.start(args=tls_args(pki))
    c = Client(("127.0.0.1", srv.port), tls_context=context(pki), timeout=5, connect_timeout=5)
    assert c.set("k", b"v") is True
    assert c.get("k") == b"v"
    assert c.get_many(["k", "nope"]) == {"k": b"v"}
    c.close()
    with tls_conn(srv, pki) as t:
        t.send(b"ms m 2\r\nhi\r\nmg m v\r\n")
        assert t.readline() == b"HD"
        assert t.readline() == b"VA 2"
        assert t.readline() == b"hi"
    with tls_conn(srv, pki) as t:  # a connection speaks one protocol, chosen by its first byte
        t.send(struct.pack(">BBHBBHIIQ", 0x80, 0x00, 1, 0, 0, 0, 1, 9, 0) + b"k")  # binary get
        header = t.readexact(24)
        assert header[0] == 0x81 and struct.unpack(">H", header[6:8])[0] == 0
        assert t.readexact(struct.unpack(">I", header[8:12])[0]) == b"\0\0\0\0v"
        assert t.sock.version() in ("TLSv1.2", "TLSv1.3")


def test_openssl_s_client_and_minimum_version(server_factory, pki):
    srv = server_factory.start(args=tls_args(pki))
    ok = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % srv.port, "-CAfile", pki("ca.pem"), "-quiet",
                         "-verify_return_error"], input=b"version\r\nquit\r\n", capture_output=True, timeout=20)
    assert b"VERSION 1.6.21-moat-" in ok.stdout, ok.stderr[-500:]
    old = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % srv.port, "-tls1_1", "-quiet"],
                         input=b"version\r\n", capture_output=True, timeout=20)
    assert b"VERSION" not in old.stdout
    only13 = server_factory.start(args=tls_args(pki, "-o", "ssl_min_version=tlsv1.3"))
    tls12 = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % only13.port, "-tls1_2", "-quiet"],
                           input=b"version\r\n", capture_output=True, timeout=20)
    assert b"VERSION" not in tls12.stdout


def test_notls_listener_stays_plain(server_factory, pki):
    plain_port = free_port()
    srv = server_factory.start(args=tls_args(pki, "-l", "notls:127.0.0.1:%d" % plain_port))
    with socket.create_connection(("127.0.0.1", plain_port), timeout=5) as s:
        c = Conn(s)
        assert c.cmd(b"version").startswith(b"VERSION")
    with tls_conn(srv, pki) as t:
        assert t.cmd(b"version").startswith(b"VERSION")


def refused_tls(srv, pki, cert):
    """True when the server refuses the client (during the handshake, or at once after it under TLS 1.3)."""
    try:
        with tls_conn(srv, pki, cert) as t:
            t.send(b"version\r\n")
            data, closed = t.read_until_closed(timeout=3)
            return closed and b"VERSION" not in data
    except (ssl.SSLError, OSError, EOFError):
        return True


def test_client_certificates(server_factory, pki):
    srv = server_factory.start(args=tls_args(pki, "-o", "ssl_verify_mode=2,ssl_ca_cert=%s" % pki("ca.pem")))
    with tls_conn(srv, pki, "client") as t:
        assert t.cmd(b"version").startswith(b"VERSION")
    assert refused_tls(srv, pki, None)
    assert refused_tls(srv, pki, "stranger")
    assert refused_tls(srv, pki, "expired")
    with tls_conn(srv, pki, "client") as t:
        assert int(t.stats_dict()["ssl_handshake_errors"]) >= 3
    assert wait_until(lambda: srv.stderr_text().count('"reason":"tls_error"') >= 3, 5), srv.stderr_text()[-1500:]
    # Requested, not required: no certificate is fine, a bad one is not.
    optional = server_factory.start(args=tls_args(pki, "-o", "ssl_verify_mode=1,ssl_ca_cert=%s" % pki("ca.pem")))
    with tls_conn(optional, pki) as t:
        assert t.cmd(b"version").startswith(b"VERSION")
    assert refused_tls(optional, pki, "stranger")


def test_plaintext_and_silent_clients_on_a_tls_port(server_factory, pki):
    srv = server_factory.start(args=tls_args(pki, "-o", "ssl_handshake_timeout=1"))
    with Conn.to(srv) as c:
        c.send(b"version\r\n")
        data, closed = c.read_until_closed(timeout=3)
        assert closed and data[:1] == b"\x15" and b"VERSION" not in data  # a TLS alert record, then the close
    with Conn.to(srv) as silent:
        start = time.monotonic()
        data, closed = silent.read_until_closed(timeout=4)
        assert closed and data == b"" and time.monotonic() - start < 3.5
    with tls_conn(srv, pki) as t:
        assert int(t.stats_dict()["ssl_handshake_errors"]) >= 2
    assert wait_until(lambda: '"reason":"tls_handshake_timeout"' in srv.stderr_text(), 5)
    assert srv.alive()


def serial(srv, pki):
    raw = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    with context(pki).wrap_socket(raw, server_hostname="localhost") as s:
        return s.getpeercert()["serialNumber"]


def test_certificate_reload_under_load(server_factory, pki):
    d = server_factory.tmpdir()
    chain, key = os.path.join(d, "chain.pem"), os.path.join(d, "key.pem")
    for src, dst in ((pki("server.pem"), chain), (pki("server.key"), key)):
        open(dst, "wb").write(open(src, "rb").read())
        os.chmod(dst, 0o644)
    srv = server_factory.start(args=["-Z", "-o", "ssl_chain_cert=%s,ssl_key=%s" % (chain, key)])
    first = serial(srv, pki)
    errors, done = [], threading.Event()

    def load(n):
        try:
            with tls_conn(srv, pki) as t:
                i = 0
                while not done.is_set():
                    i += 1
                    assert t.store(b"set", b"load%d" % n, b"%d" % i) == b"STORED"
                    assert t.get(b"load%d" % n) == b"%d" % i
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    workers = [threading.Thread(target=load, args=(n,)) for n in range(4)]
    for w in workers:
        w.start()
    try:
        time.sleep(0.3)
        # Swap in the second certificate: SIGHUP, then refresh_certs; then a broken file is refused.
        for src, dst in ((pki("server2.pem"), chain), (pki("server2.key"), key)):
            open(dst, "wb").write(open(src, "rb").read())
        os.kill(srv.pid, signal.SIGHUP)
        assert wait_until(lambda: serial(srv, pki) != first, 5)
        with tls_conn(srv, pki) as t:
            assert t.cmd(b"refresh_certs") == b"OK"
            open(chain, "w").write("not a certificate\n")
            assert t.cmd(b"refresh_certs") == b"ERROR: Failed to refresh SSL keys"
        second = serial(srv, pki)
        assert second != first  # the broken file left the second certificate in use
        time.sleep(0.3)
    finally:
        done.set()
        for w in workers:
            w.join(10)
    assert errors == []
    assert "TLS certificates not reloaded" in srv.stderr_text()
    assert '"command":"refresh_certs"' in srv.stderr_text()


def test_tls_configuration_errors(server_factory, pki):
    rc, err = server_factory.start_expect_exit(args=["-Z"])
    assert rc == 64 and "ssl_chain_cert" in err
    rc, err = server_factory.start_expect_exit(args=tls_args(pki, "-o", "ssl_verify_mode=2"))
    assert rc == 64 and "ssl_ca_cert" in err
    rc, err = server_factory.start_expect_exit(args=tls_args(pki, "-o", "ssl_min_version=tlsv1.1"))
    assert rc == 64
    rc, err = server_factory.start_expect_exit(args=["-Z", "-o", "ssl_chain_cert=/nonexistent.pem"])
    assert rc == 64 and "cannot load TLS certificates" in err


def test_client_certificate_logs_in_its_user(server_factory, pki):
    d = server_factory.tmpdir()
    creds = os.path.join(d, "credentials")
    r = subprocess.run([moat_bin(), "user", "add", "client",
                        "--credentials", creds], input=b"unused-password\n", capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    srv = server_factory.start(args=tls_args(pki, "-S", "--credentials", creds, "-o",
                                             "ssl_verify_mode=1,ssl_ca_cert=%s,ssl_cert_auth" % pki("ca.pem")))
    # CN=client is a user: authenticated by the certificate alone.
    with tls_conn(srv, pki, "client") as t:
        assert t.store(b"set", b"k", b"v") == b"STORED"
        assert t.get(b"k") == b"v"
    # No certificate (allowed by mode 1) or a CN that is no user: SASL/ASCII auth is still required.
    with tls_conn(srv, pki) as t:
        assert t.cmd(b"get k") == b"CLIENT_ERROR unauthenticated"
    make_cert(os.path.dirname(pki("ca.pem")), "not-a-user", "ca")
    for name in ("not-a-user.pem", "not-a-user.key"):
        os.chmod(pki(name), 0o644)
    with tls_conn(srv, pki, "not-a-user") as t:
        assert t.cmd(b"get k") == b"CLIENT_ERROR unauthenticated"
    assert wait_until(lambda: '"mechanism":"tls-client-certificate"' in srv.stderr_text(), 5)
    rc, err = server_factory.start_expect_exit(args=tls_args(pki, "-o", "ssl_cert_auth"))
    assert rc == 64 and "ssl_cert_auth" in err


def test_certificate_subjects_map_to_tenant_users(server_factory, pki):
    """--config: a certificate whose CN a user lists in certificate_subjects logs in as that user, in its
    bucket and with its permissions; a CN that is only a credentials user (not in the file) does not."""
    d = server_factory.tmpdir()
    creds = os.path.join(d, "credentials")
    for name in ("client", "writer"):
        r = subprocess.run([moat_bin(), "user", "add", name, "--credentials", creds, "--iterations", "4096"],
                           input=b"pw-pw-pw\n", capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
    config = os.path.join(d, "moat.yaml")
    with open(config, "w") as f:
        f.write("buckets:\n  reports: { memory: 8m }\n"
                "users:\n"
                "  reporter: { bucket: reports, permissions: [read], certificate_subjects: [reporting-job] }\n"
                "  writer: { bucket: reports }\n")
    os.chmod(config, 0o644)
    make_cert(os.path.dirname(pki("ca.pem")), "reporting-job", "ca")
    for name in ("reporting-job.pem", "reporting-job.key"):
        os.chmod(pki(name), 0o644)
    srv = server_factory.start(args=tls_args(pki, "--config", config, "--credentials", creds, "-o",
                                             "ssl_verify_mode=1,ssl_ca_cert=%s,ssl_cert_auth" % pki("ca.pem")))
    with tls_conn(srv, pki) as t:   # no certificate: ASCII auth as writer, in the reports bucket
        assert t.store(b"set", b"auth", b"writer pw-pw-pw") == b"STORED"
        assert t.store(b"set", b"daily", b"42") == b"STORED"
    with tls_conn(srv, pki, "reporting-job") as t:
        assert t.get(b"daily") == b"42"                                   # same bucket as writer
        assert t.store(b"set", b"daily", b"0") == b"CLIENT_ERROR permission denied"   # read only
    # CN=client holds credentials but the configuration does not list it: not logged in.
    with tls_conn(srv, pki, "client") as t:
        assert t.cmd(b"get daily") == b"CLIENT_ERROR unauthenticated"
    assert wait_until(lambda: '"user":"reporter"' in srv.stderr_text(), 5)


def test_proxy_health_checks_answer_before_authentication_on_every_listener(server_factory, pki):
    """What proxies and load balancers probe with (text `version`, meta `mn`, a binary NOOP) is answered
    before authentication, on TLS, plain (`notls:`) and unix listeners alike, and `version` tells only the
    protocol level (memcached's), never Moat's build."""
    d = server_factory.tmpdir()
    creds = os.path.join(d, "credentials")
    add_user(creds, "probe", "probe pass")
    plain_port = free_port()
    unix_path = os.path.join(d, "moat.sock")
    srv = server_factory.start(args=tls_args(pki, "-l", "notls:127.0.0.1:%d" % plain_port, "-s", unix_path,
                                             "-a", "0777", "-S", "--credentials", creds))
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.settimeout(5)
    unix.connect(unix_path)
    listeners = {
        "tls": lambda: tls_conn(srv, pki),
        "notls": lambda: Conn(socket.create_connection(("127.0.0.1", plain_port), timeout=5)),
        "unix": lambda: Conn(unix),
    }
    for name, connect in listeners.items():
        c = connect()
        assert c.cmd(b"version") == b"VERSION 1.6.21", name
        assert c.cmd(b"mn") == b"MN", name
        assert c.cmd(b"get k") == b"CLIENT_ERROR unauthenticated", name  # and nothing else
        c.close()
        c = connect() if name != "unix" else Conn(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        if name == "unix":
            c.sock.settimeout(5)
            c.sock.connect(unix_path)
        c.send(struct.pack(">BBHBBHIIQ", 0x80, 0x0a, 0, 0, 0, 0, 0, 5, 0))  # binary NOOP
        header = c.readexact(24)
        assert header[:2] == b"\x81\x0a" and header[6:8] == b"\x00\x00" and header[12:16] == struct.pack(">I", 5)
        c.send(struct.pack(">BBHBBHIIQ", 0x80, 0x0b, 0, 0, 0, 0, 0, 6, 0))  # binary version
        header = c.readexact(24)
        assert c.readexact(struct.unpack(">I", header[8:12])[0]) == b"1.6.21", name
        c.close()
