"""Operations: the Prometheus endpoint (-o metrics_port) scraped and parsed by prometheus_client's
own parser, its bounds (loopback by default, the allow list, 404/405), the log format switch
(--log-format json|human|auto), and a graceful stop through swift-service-lifecycle (SIGTERM and
SIGINT: exit 0, `moat stopped`; a start failure exits 1)."""

import json
import signal
import socket
import subprocess
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from moat_support import Conn, free_port, moat_bin, wait_until

pytestmark = pytest.mark.moat_only


def scrape(port, host="127.0.0.1", path="/metrics", method="GET"):
    request = urllib.request.Request("http://%s:%d%s" % (host, port, path), method=method)
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, response.headers.get("Content-Type"), response.read().decode()


def samples(text):
    """{(name, frozenset(labels)): value} for every sample, as prometheus_client parses them."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(parsed, name, **labels):
    return parsed[(name, frozenset(labels.items()))]


def test_metrics_scrape_parses_and_counts(server_factory):
    metrics_port = free_port()
    srv = server_factory.start(args=["-o", "metrics_port=%d" % metrics_port])
    with Conn.to(srv) as c:
        for i in range(5):
            assert c.store(b"set", b"k%d" % i, b"value") == b"STORED"
        for i in range(8):
            c.get(b"k%d" % i)  # 5 hits, 3 misses
        assert c.cmd(b"stats cachedump 1 1").startswith(b"CLIENT_ERROR")

    status, content_type, text = scrape(metrics_port)
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    parsed = samples(text)
    assert value(parsed, "memcached_up") == 1
    assert value(parsed, "memcached_current_items") == 5
    assert value(parsed, "memcached_commands_total", command="get", status="hit") == 5
    assert value(parsed, "memcached_commands_total", command="get", status="miss") == 3
    assert value(parsed, "memcached_commands_total", command="set", status="hit") == 5
    assert value(parsed, "memcached_current_connections") >= 0
    assert value(parsed, "memcached_limit_bytes") == 64 * 1024 * 1024
    assert value(parsed, "moat_security_events_total", event="key_dump_attempts") == 1
    assert value(parsed, "moat_bucket_current_items", bucket="default") == 5
    versions = [dict(labels)["version"] for name, labels in parsed if name == "memcached_version"]
    assert len(versions) == 1 and versions[0].startswith("1.6.21"), versions
    types = {family.name: family.type for family in text_string_to_metric_families(text)}
    assert types["memcached_commands"] == "counter" and types["memcached_current_items"] == "gauge"

    # Counters move with the traffic between scrapes.
    with Conn.to(srv) as c:
        c.get(b"k0")
    assert value(samples(scrape(metrics_port)[2]), "memcached_commands_total", command="get", status="hit") == 6


def test_metrics_endpoint_bounds(server_factory):
    metrics_port = free_port()
    server_factory.start(args=["-o", "metrics_port=%d,allow=127.0.0.1" % metrics_port])
    with pytest.raises(urllib.error.HTTPError) as missing:
        scrape(metrics_port, path="/other")
    assert missing.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as wrong:
        scrape(metrics_port, method="POST")
    assert wrong.value.code == 405
    # The allow list applies to scrapers too: 127.0.0.2 is closed before any byte.
    s = socket.socket()
    s.settimeout(5)
    s.bind(("127.0.0.2", 0))
    s.connect(("127.0.0.1", metrics_port))
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        assert s.recv(100) == b""
    except ConnectionResetError:
        pass
    s.close()
    assert scrape(metrics_port)[0] == 200


def test_metrics_refuses_a_public_address_without_allow_list(server_factory):
    rc, err = server_factory.start_expect_exit(args=["-o", "metrics_port=%d,metrics_listen=0.0.0.0" % free_port()])
    assert rc == 64 and "metrics" in err and "allow" in err, err


def test_log_formats(server_factory):
    srv = server_factory.start(args=["--log-format", "json"])
    assert wait_until(lambda: "moat ready" in srv.stderr_text(), 5)
    lines = [json.loads(line) for line in srv.stderr_text().splitlines() if line.strip()]
    ready = next(line for line in lines if "message" in line and line["message"].startswith("moat ready"))
    assert ready["level"] == "notice" and ready["label"] == "moat" and ready["ts"].endswith("Z")
    human = server_factory.start(args=["--log-format", "human"])
    assert wait_until(lambda: "moat ready" in human.stderr_text(), 5)
    # The security log's JSON lines (always JSON) may come first: the readiness probe's connection can be
    # accepted before the ready line is written.
    first = next(line for line in human.stderr_text().splitlines() if "moat ready" in line)
    assert " notice moat:" in first and not first.startswith("{")
    # auto: standard error is a file here, not a terminal, so JSON lines.
    auto = server_factory.start()
    assert wait_until(lambda: "moat ready" in auto.stderr_text(), 5)
    ready = next(line for line in auto.stderr_text().splitlines() if "moat ready" in line)
    assert json.loads(ready)["message"].startswith("moat ready")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_graceful_stop_through_service_lifecycle(server_factory, signum):
    srv = server_factory.start()
    with Conn.to(srv) as c:
        assert c.store(b"set", b"k", b"v") == b"STORED"
    srv.proc.send_signal(signum)
    assert srv.wait_exit(15) == 0, srv.stderr_text()[-2000:]
    assert "moat stopped" in srv.stderr_text()


def test_a_start_failure_exits_1(server_factory):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        r = subprocess.run([moat_bin(), "serve", "--no-config", "-l", "127.0.0.1", "-p", str(port)],
                           capture_output=True, timeout=30)
    finally:
        holder.close()
    assert r.returncode == 1 and b"cannot start" in r.stderr, r.stderr
