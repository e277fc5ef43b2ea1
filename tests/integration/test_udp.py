"""UDP (-U) that cannot be used to amplify an attack: memcached's UDP framing, answers only to allowed
sources, replies bounded by a multiple of the request (3x by default) and one datagram, per-source rate
limits, malformed frames dropped. Amplification is measured as every reply byte (UDP payload, frame
header included) over the request's bytes, for the requests that made the 2018 attacks work."""

import os
import shutil
import socket
import struct
import subprocess
import time

import pytest

from moat_support import Conn

pytestmark = pytest.mark.moat_only

ALLOWED = "127.0.0.1"
REFUSED = "127.0.0.2"   # loopback too, but not in the allow list


def free_port_tcp_and_udp():
    """A port free for both TCP and UDP on 127.0.0.1 (memcaslap needs them equal)."""
    for _ in range(50):
        t = socket.socket()
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()
    raise RuntimeError("no port free for TCP and UDP")


def start_udp(server_factory, *extra, allow="127.0.0.1/32"):
    port = free_port_tcp_and_udp()
    args = ["-U", str(port)] + (["-o", "allow=" + allow] if allow else []) + list(extra)
    return server_factory.start(args=args, port=port), port


def frame(payload, request_id=1, seq=0, count=1, reserved=0):
    return struct.pack("!HHHH", request_id, seq, count, reserved) + payload


def exchange(port, datagram, source=ALLOWED, quiet=0.3, limit=2.0, first=1.0):
    """Send one datagram from `source`; wait up to `first` seconds for a reply (a loaded CI machine may take
    more than `quiet` to answer a server's first datagram), then collect replies until `quiet` seconds pass
    with none (at most `limit` seconds in all). Returns the list of reply payloads."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((source, 0))
    s.settimeout(first)
    replies = []
    try:
        s.sendto(datagram, ("127.0.0.1", port))
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                data, _ = s.recvfrom(65536)
            except socket.timeout:
                break
            replies.append(data)
            s.settimeout(quiet)
    finally:
        s.close()
    return replies


def amplification(port, payload, source=ALLOWED):
    request = frame(payload)
    replies = exchange(port, request, source=source)
    return sum(len(r) for r in replies) / len(request), replies


def test_small_get_works_and_large_replies_stay_within_3x(server_factory):
    srv, port = start_udp(server_factory)
    with Conn.to(srv) as c:
        assert c.store(b"set", b"small", b"x" * 20) == b"STORED"
        assert c.store(b"set", b"big", b"B" * (1024 * 1024 - 100)) == b"STORED"
    factors = {}
    factor, replies = amplification(port, b"get small\r\n")
    assert len(replies) == 1 and replies[0][8:] == b"VALUE small 0 20\r\n" + b"x" * 20 + b"\r\nEND\r\n"
    assert replies[0][:8] == frame(b"")  # request id echoed, sequence 0 of 1
    factors["small get"] = factor
    for name, payload in [
        ("stats", b"stats\r\n"),
        ("get 1 MB", b"get big\r\n"),
        ("multi-get of one key x100", b"get " + b" ".join([b"big"] * 100) + b"\r\n"),
        ("multi-get of small x100", b"get " + b" ".join([b"small"] * 100) + b"\r\n"),
        ("stats items", b"stats items\r\n"),
        ("stats slabs", b"stats slabs\r\n"),
    ]:
        factor, replies = amplification(port, payload)
        factors[name] = factor
        assert len(replies) <= 1, name
        assert all(b"VALUE" not in r and b"STAT" not in r for r in replies), (name, replies)
    print("amplification (reply bytes / request bytes):", factors)
    assert all(f <= 3.0 for f in factors.values()), factors
    assert factors["small get"] > 1  # it was answered, and still within the bound


def test_refused_sources_get_nothing(server_factory):
    srv, port = start_udp(server_factory)
    for payload in (b"get small\r\n", b"stats\r\n", b"version\r\n"):
        factor, replies = amplification(port, payload, source=REFUSED)
        assert factor == 0 and replies == []
    with Conn.to(srv) as c:
        assert int(c.stats_dict()["udp_refused_source"]) == 3


def test_malformed_frames_are_dropped(server_factory):
    srv, port = start_udp(server_factory)
    bad = [
        b"",                                          # empty
        b"\x00\x01\x00",                              # shorter than the header
        b"get k\r\n",                                 # no header at all (7 bytes)
        frame(b"get k\r\n", seq=1, count=2),          # a later datagram of a multi-datagram request
        frame(b"get k\r\n", count=2),                 # wrong count
        frame(b"get k\r\n", count=0),
        frame(os.urandom(200)),                       # garbage
        frame(b"\x80\x00\x00\x01" + bytes(20)),       # the binary protocol
        frame(b"get k"),                              # no newline
    ]
    for datagram in bad:
        assert exchange(port, datagram, quiet=0.2) == [], datagram
    with Conn.to(srv) as c:
        stats = c.stats_dict()
    assert int(stats["udp_malformed"]) >= 8, stats
    assert int(stats["udp_replies"]) == 0
    assert srv.alive()


def test_a_strict_bound_of_1x(server_factory):
    srv, port = start_udp(server_factory, "-o", "udp_amplification=1")
    assert exchange(port, frame(b"stats\r\n")) == []     # even the refusal is larger than the request
    assert exchange(port, frame(b"version\r\n")) == []   # the version is longer than its request
    padded = frame(b"version" + b" " * 40 + b"\r\n")     # a client that pads its requests is answered
    replies = exchange(port, padded)
    assert len(replies) == 1 and replies[0][8:].startswith(b"VERSION ") and len(replies[0]) <= len(padded)


def test_a_source_is_rate_limited(server_factory):
    srv, port = start_udp(server_factory, "-o", "udp_rate=20")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ALLOWED, 0))
    s.settimeout(0.5)
    for i in range(60):  # a burst, far faster than 20 a second
        s.sendto(frame(b"version\r\n", request_id=i), ("127.0.0.1", port))
    answered = 0
    try:
        while answered < 100:
            s.recvfrom(2048)
            answered += 1
    except socket.timeout:
        pass
    s.close()
    assert 15 <= answered <= 25, answered  # one second's burst of 20, and a little refill
    with Conn.to(srv) as c:
        assert int(c.stats_dict()["udp_rate_limited"]) >= 35


def test_udp_needs_an_allow_list_or_an_explicit_flag(server_factory):
    port = free_port_tcp_and_udp()
    rc, err = server_factory.start_expect_exit(["-U", str(port)])
    assert rc == 64 and "allow=" in err and "insecure_udp" in err, err
    rc, err = server_factory.start_expect_exit(["-U", str(port), "-o", "allow=0.0.0.0/0"])
    assert rc == 64, err  # an allow list that admits everyone is no list
    srv, port = start_udp(server_factory, "-o", "insecure_udp", allow=None)
    factor, replies = amplification(port, b"stats\r\n", source=REFUSED)
    assert 0 < factor <= 3, factor  # answered (a short refusal), and still bounded


def test_memcaslap_udp_mode(server_factory):
    if not shutil.which("memcaslap"):
        pytest.fail("memcaslap (libmemcached-tools) is not installed")
    srv, port = start_udp(server_factory, "-o", "lenient_keys,udp_writes,udp_rate=100000,udp_bytes_rate=100000000")
    d = server_factory.tmpdir()
    cfg = os.path.join(d, "udp.cnf")
    with open(cfg, "w") as f:
        f.write("key\n16 16 1\nvalue\n32 32 1\ncmd\n0 0.1\n1 0.9\n")
    out = subprocess.run(["memcaslap", "-s", "127.0.0.1:%d" % port, "-U", "-T", "1", "-c", "4", "-t", "3s", "-F", cfg],
                         capture_output=True, text=True, timeout=60).stdout
    fields = dict(line.split(": ", 1) for line in out.splitlines() if line.startswith(("cmd_get:", "cmd_set:", "get_misses:", "udp_timeout:")))
    assert int(fields["cmd_get"]) > 100 and int(fields["cmd_set"]) > 10, out
    assert int(fields["udp_timeout"]) == 0, out
    with Conn.to(srv) as c:
        stats = c.stats_dict()
    assert int(stats["get_hits"]) > 0
    assert int(stats["udp_oversized"]) == 0 and int(stats["udp_malformed"]) == 0
    assert int(stats["udp_reply_bytes"]) <= 3 * int(stats["udp_request_bytes"])
