"""`moat audit` and `moat check` against real servers: Debian's memcached (default flags with UDP on,
-X, -Y) and Moat (default, authentication, TLS, UDP with an allow list), started here on loopback
addresses (several 127.0.0.x stand in for several hosts). Each test asserts the exact findings, and
every JSON and SARIF report is validated against its schema (docs/schemas/)."""

import json
import os
import socket
import subprocess

import jsonschema
import pytest
from pymemcache.client.base import Client

from moat_support import moat_bin, wait_until
from test_tls import make_ca, make_cert  # noqa: F401  (certificates made by openssl for these tests)
from test_udp import free_port_tcp_and_udp

pytestmark = pytest.mark.moat_only

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCHEMAS = os.path.join(ROOT, "docs", "schemas")


def validator(name):
    with open(os.path.join(SCHEMAS, name)) as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


REPORT = validator("moat-report.schema.json")
SARIF = validator("sarif-2.1.0-subset.schema.json")


def run(command, *args, timeout=90):
    return subprocess.run([moat_bin(), command, *args], capture_output=True, timeout=timeout)


def audit_json(*args):
    r = run("audit", "--no-progress", "--format", "json", *args)
    assert r.returncode in (0, 1), r.stderr.decode()
    data = json.loads(r.stdout)
    REPORT.validate(data)
    return r.returncode, data


def found(data):
    return sorted((f["name"], f["severity"], f["subject"]) for f in data["findings"])


def memcached(server_factory, *flags, host="127.0.0.1", port=None):
    return server_factory.start(
        cmd=["memcached", "-u", "nobody", "-l", host, "-p", "{port}", *flags], host=host, port=port)


def memcached_version():
    out = subprocess.run(["memcached", "-V"], capture_output=True, timeout=10).stdout.decode()
    return out.split()[1]


def test_memcached_defaults_with_udp(server_factory):
    port = free_port_tcp_and_udp()
    memcached(server_factory, "-U", str(port), port=port)
    Client(("127.0.0.1", port)).set(b"user:42:session", b"a secret value")
    tcp, udp = "127.0.0.1:%d/tcp" % port, "127.0.0.1:%d/udp" % port

    rc, data = audit_json("127.0.0.1:%d" % port, "--udp")
    assert found(data) == [
        ("key-enumeration", "medium", tcp),
        ("udp-amplification", "medium", udp),
        ("unauthenticated-access", "info", tcp),
    ]
    assert rc == 0  # nothing reaches the default --fail-on high on loopback
    service, = data["services"]
    assert service["version"] == memcached_version()
    assert (service["text"], service["binary"], service["tls"]) == ("open", "open", "not-offered")
    assert service["stats_readable"] is True
    assert service["key_enumeration"] == {"stats cachedump": "listed 1 keys", "lru_crawler metadump": "listed 1 keys"}
    assert service["writable"] is None  # not probed without --intrusive
    stats = next(x for x in service["udp"] if x["command"] == "stats")
    assert stats["request_bytes"] == 15  # 8-byte frame + "stats\r\n"
    assert stats["factor"] > 10, stats  # memcached answers a 15-byte request with kilobytes
    amplification = next(f for f in data["findings"] if f["name"] == "udp-amplification")
    assert float(amplification["evidence"]["amplification"]) == max(x["factor"] for x in service["udp"])

    table = run("audit", "--no-progress", "--fail-on", "medium", "127.0.0.1:%d" % port, "--udp")
    assert table.returncode == 1
    out = table.stdout.decode()
    assert "FAILED" in out and "key-enumeration" in out and "\x1b[" not in out  # no colour when piped


def test_memcached_without_dumping(server_factory):
    srv = memcached(server_factory, "-X")
    Client(srv.addr).set(b"k", b"v")
    _, data = audit_json("127.0.0.1:%d" % srv.port)
    assert found(data) == [("unauthenticated-access", "info", "127.0.0.1:%d/tcp" % srv.port)]
    assert data["services"][0]["key_enumeration"] == {}


def test_memcached_ascii_auth(server_factory):
    d = server_factory.tmpdir()
    authfile = os.path.join(d, "auth")
    with open(authfile, "w") as f:
        f.write("app:s3cret\n")
    os.chmod(authfile, 0o644)  # memcached reads it after switching to nobody
    srv = memcached(server_factory, "-Y", authfile)
    _, data = audit_json("127.0.0.1:%d" % srv.port)
    subject = "127.0.0.1:%d/tcp" % srv.port
    assert found(data) == [("authentication-required", "info", subject), ("plaintext-transport", "info", subject)]
    service, = data["services"]
    assert (service["text"], service["binary"], service["version"]) == ("authentication-required", "not-served", None)


def test_intrusive_write_probe_is_set_then_deleted(server_factory):
    srv = memcached(server_factory)
    client = Client(srv.addr)
    client.set(b"k", b"v")
    before = client.stats()
    _, data = audit_json("127.0.0.1:%d" % srv.port)
    assert client.stats()[b"total_items"] == before[b"total_items"]  # no write without --intrusive
    _, data = audit_json("127.0.0.1:%d" % srv.port, "--intrusive")
    assert ("unauthenticated-write", "low", "127.0.0.1:%d/tcp" % srv.port) in found(data)
    assert data["services"][0]["writable"] is True
    after = client.stats()
    assert after[b"total_items"] == before[b"total_items"] + 1  # the probe key was stored...
    assert after[b"curr_items"] == before[b"curr_items"]  # ...and deleted again


def test_moat_default_reports_nothing_above_info(server_factory):
    srv = server_factory.start()
    Client(srv.addr).set(b"k", b"v")
    r = run("audit", "--no-progress", "--fail-on", "low", "--format", "json", "--udp", "127.0.0.1:%d" % srv.port)
    data = json.loads(r.stdout)
    REPORT.validate(data)
    assert r.returncode == 0, r.stdout.decode()
    assert found(data) == [("unauthenticated-access", "info", "127.0.0.1:%d/tcp" % srv.port)]
    service, = data["services"]
    assert service["key_enumeration"] == {} and service["udp"] == []
    assert service["version"].endswith(tuple("0123456789")) and "moat" in service["version"]
    # The probes were noticed: Moat logs key-dump attempts as critical security events.
    assert wait_until(lambda: srv.stderr_text().count('"event":"key_dump_attempt"') >= 2, 5), srv.stderr_text()[-2000:]


def test_moat_with_authentication(server_factory):
    d = server_factory.tmpdir()
    credentials = os.path.join(d, "credentials")
    r = subprocess.run([moat_bin(), "user", "add", "app", "--credentials", credentials], input=b"s3cret-pass\n",
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr.decode()
    srv = server_factory.start(args=["-S", "--credentials", credentials], listen="127.0.0.2", host="127.0.0.2")
    _, data = audit_json("127.0.0.2:%d" % srv.port)
    subject = "127.0.0.2:%d/tcp" % srv.port
    assert found(data) == [("authentication-required", "info", subject), ("plaintext-transport", "info", subject)]
    service, = data["services"]
    assert (service["text"], service["binary"]) == ("authentication-required", "authentication-required")
    assert service["sasl_mechanisms"] == ["SCRAM-SHA-256", "PLAIN"]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("audit-pki"))
    os.chmod(d, 0o755)
    make_ca(d, "ca")
    make_cert(d, "server", "ca")
    for name in os.listdir(d):
        os.chmod(os.path.join(d, name), 0o644)
    return os.path.join(d, "server.pem"), os.path.join(d, "server.key")


def test_moat_with_tls_required(server_factory, certificate):
    cert, key = certificate
    srv = server_factory.start(args=["-Z", "-o", "ssl_chain_cert=%s,ssl_key=%s" % (cert, key)])
    _, data = audit_json("127.0.0.1:%d" % srv.port)
    subject = "127.0.0.1:%d/tcp" % srv.port
    assert found(data) == [("tls", "info", subject), ("unauthenticated-access", "info", subject)]
    service, = data["services"]
    assert (service["tls"], service["text"], service["binary"]) == ("required", "not-served", "not-served")
    access = next(f for f in data["findings"] if f["name"] == "unauthenticated-access")
    assert access["evidence"]["protocols"] == "text over TLS"


def test_moat_udp_with_allow_list_stays_within_3x(server_factory):
    port = free_port_tcp_and_udp()
    server_factory.start(args=["-U", str(port), "-o", "allow=127.0.0.1"], port=port)
    _, data = audit_json("127.0.0.1:%d" % port, "--udp")
    assert found(data) == [
        ("udp-amplification", "medium", "127.0.0.1:%d/udp" % port),
        ("unauthenticated-access", "info", "127.0.0.1:%d/tcp" % port),
    ]
    factors = [x["factor"] for x in data["services"][0]["udp"]]
    assert factors and max(factors) <= 3.0, factors


def test_a_range_and_a_target_file(server_factory):
    port = free_port_tcp_and_udp()
    memcached(server_factory, host="127.0.0.2", port=port)
    server_factory.start(listen="127.0.0.3", host="127.0.0.3", port=port)
    d = server_factory.tmpdir()
    targets = os.path.join(d, "targets")
    with open(targets, "w") as f:
        f.write("# the cache tier\n127.0.0.0/30\n127.0.0.4:%d  # nothing listens here\n" % port)
    _, data = audit_json("-p", str(port), "@" + targets, "--concurrency", "4")
    assert data["summary"]["endpoints"] == 5 and data["summary"]["services"] == 2
    assert [s["endpoint"] for s in data["services"]] == ["127.0.0.2:%d" % port, "127.0.0.3:%d" % port]
    assert found(data) == [
        ("key-enumeration", "medium", "127.0.0.2:%d/tcp" % port),
        ("unauthenticated-access", "info", "127.0.0.2:%d/tcp" % port),
        ("unauthenticated-access", "info", "127.0.0.3:%d/tcp" % port),
    ]
    sarif = run("audit", "--no-progress", "--format", "sarif", "-p", str(port), "127.0.0.0/30")
    log = json.loads(sarif.stdout)
    SARIF.validate(log)
    results = log["runs"][0]["results"]
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    assert sorted(r["ruleId"] for r in results) == ["MOAT-A001", "MOAT-A001", "MOAT-A002"]
    for result in results:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["locations"][0]["logicalLocations"][0]["name"].startswith("127.0.0.")


def test_audit_refuses_oversized_ranges_and_bad_targets():
    r = run("audit", "10.0.0.0/8")
    assert r.returncode == 64 and b"addresses" in r.stderr
    r = run("audit", "not a host")
    assert r.returncode == 64


def check_json(*args):
    r = run("check", "--format", "json", *args)
    data = json.loads(r.stdout)
    REPORT.validate(data)
    return r.returncode, data


def test_check_default_and_an_open_public_bind():
    rc, data = check_json("--no-config")
    assert rc == 0 and data["findings"] == []
    rc, data = check_json("--no-config", "-l", "0.0.0.0", "-o", "insecure_public_bind", "-A")
    assert rc == 1
    assert sorted((f["name"], f["severity"]) for f in data["findings"]) == [
        ("flush-shutdown", "high"), ("flush-shutdown", "medium"), ("public-bind-open", "critical"), ("public-plaintext", "low"),
    ]
    rc, data = check_json("--no-config", "-l", "0.0.0.0")
    assert rc == 1 and [(f["name"], f["severity"]) for f in data["findings"]] == [("configuration-refused", "high")]


def test_check_reads_a_configuration_file(tmp_path):
    credentials = tmp_path / "credentials"
    r = subprocess.run([moat_bin(), "user", "add", "app", "--credentials", str(credentials)], input=b"s3cret-pass\n",
                       capture_output=True, timeout=30)
    assert r.returncode == 0
    os.chmod(credentials, 0o644)
    config = tmp_path / "moat.conf"
    config.write_text(
        "server:\n  listen: [10.9.9.9]\n  credentials: %s\n  udp-port: 11311\n  extended: [allow=10.0.0.0/8, security_log=off]\n"
        "users:\n  app: { permissions: [all] }\n" % credentials)
    os.chmod(config, 0o666)
    rc, data = check_json("--config", str(config))
    assert rc == 1
    assert sorted((f["name"], f["severity"]) for f in data["findings"]) == [
        ("configuration-refused", "high"),
    ], data  # UDP with authentication is refused: moat check says so rather than guessing
    config.write_text(
        "server:\n  listen: [10.9.9.9]\n  credentials: %s\n  extended: [allow=10.0.0.0/8, security_log=off]\n"
        "users:\n  app: { permissions: [all] }\n" % credentials)
    rc, data = check_json("--config", str(config))
    assert sorted((f["name"], f["severity"]) for f in data["findings"]) == [
        ("key-dumping", "low"), ("public-plaintext", "medium"), ("readable-secret", "high"), ("security-log-off", "low"),
        ("writable-configuration", "high"),
    ]
    assert all(f["subject"] == str(config) for f in data["findings"])
    sarif = run("check", "--format", "sarif", "--config", str(config))
    log = json.loads(sarif.stdout)
    SARIF.validate(log)
    for result in log["runs"][0]["results"]:
        assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == str(config)


def test_another_udp_service_is_not_taken_for_memcached():
    """A UDP service that answers anything (here: 1,000 bytes of its own, whatever the request) is not
    memcached: its replies do not echo the request id of memcached's frame, so no service, no factor."""
    import threading
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    port = sock.getsockname()[1]
    stop = threading.Event()

    def answer():
        while not stop.is_set():
            try:
                _, peer = sock.recvfrom(2048)
            except socket.timeout:
                continue
            sock.sendto(b"\xff\xfe" + b"x" * 998, peer)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        rc, data = audit_json("127.0.0.1:%d" % port, "--udp", "--timeout", "1")
    finally:
        stop.set()
        thread.join(5)
        sock.close()
    assert rc == 0 and data["services"] == [] and data["findings"] == [], data
