"""Correctness under concurrency and a clean stop: many clients on `-t 2`, over the text and binary
protocols, each owning its keys and checking that every read returns what it last wrote (or a miss
after eviction), never another key's value; SIGTERM while clients are busy: every reply the server
sent was complete and the process exits 0 within its drain deadline."""

import os
import random
import signal
import struct
import threading
import time

import pytest

from moat_support import Conn

DURATION = 3.0


def value_for(client, key, version, size):
    """Self-describing: a value names its key and version, so a value of another key is detectable."""
    head = b"%s|%s|%d|" % (client.encode(), key, version)
    return head + b"v" * max(0, size - len(head))


def text_worker(srv, client, seed, errors, counts):
    rng = random.Random(seed)
    model = {}
    deadline = time.monotonic() + DURATION
    try:
        with Conn.to(srv) as c:
            while time.monotonic() < deadline:
                key = b"%s-k%d" % (client.encode(), rng.randrange(40))
                op = rng.random()
                if op < 0.45:
                    version = model.get(key, (0, b""))[0] + 1
                    value = value_for(client, key, version, rng.choice([10, 100, 1000, 20000]))
                    if c.store(b"set", key, value) == b"STORED":
                        model[key] = (version, value)
                    else:
                        model.pop(key, None)
                elif op < 0.9:
                    got = c.get(key)
                    counts["reads"] += 1
                    if got is not None:
                        expected = model.get(key)
                        if expected is None or got != expected[1]:
                            errors.append("%s read %r for %r, expected %r" % (client, got[:40], key, expected and expected[1][:40]))
                else:
                    c.cmd(b"delete " + key)
                    model.pop(key, None)
    except Exception as e:  # noqa: BLE001 - any failure is the test's finding
        errors.append("%s: %r" % (client, e))


def binary_frame(op, key=b"", extras=b"", value=b"", opaque=0):
    return struct.pack("!BBHBBHIIQ", 0x80, op, len(key), len(extras), 0, 0, len(extras) + len(key) + len(value), opaque, 0) + extras + key + value


def binary_reply(sock, buf):
    while len(buf) < 24:
        d = sock.recv(65536)
        if not d:
            raise EOFError
        buf += d
    _, op, keylen, extlen, _, status, bodylen, opaque, cas = struct.unpack("!BBHBBHIIQ", bytes(buf[:24]))
    while len(buf) < 24 + bodylen:
        d = sock.recv(65536)
        if not d:
            raise EOFError
        buf += d
    body = bytes(buf[24:24 + bodylen])
    del buf[:24 + bodylen]
    return status, opaque, body[extlen + keylen:]


def binary_worker(srv, client, seed, errors, counts):
    rng = random.Random(seed)
    model = {}
    deadline = time.monotonic() + DURATION
    try:
        sock = srv.connect()
        buf = bytearray()
        opaque = 0
        while time.monotonic() < deadline:
            key = b"%s-k%d" % (client.encode(), rng.randrange(40))
            opaque += 1
            if rng.random() < 0.5:
                version = model.get(key, (0, b""))[0] + 1
                value = value_for(client, key, version, rng.choice([10, 300, 5000]))
                sock.sendall(binary_frame(0x01, key, struct.pack("!II", 0, 0), value, opaque))
                status, got_opaque, _ = binary_reply(sock, buf)
                if got_opaque != opaque:
                    errors.append("%s: opaque %d for request %d" % (client, got_opaque, opaque))
                if status == 0:
                    model[key] = (version, value)
                else:
                    model.pop(key, None)
            else:
                sock.sendall(binary_frame(0x00, key, opaque=opaque))
                status, got_opaque, value = binary_reply(sock, buf)
                counts["reads"] += 1
                if got_opaque != opaque:
                    errors.append("%s: opaque %d for request %d" % (client, got_opaque, opaque))
                if status == 0:
                    expected = model.get(key)
                    if expected is None or value != expected[1]:
                        errors.append("%s binary read %r for %r" % (client, value[:40], key))
        sock.close()
    except Exception as e:  # noqa: BLE001
        errors.append("%s: %r" % (client, e))


def test_concurrent_clients_only_ever_read_their_own_last_write(server_factory):
    # 2 MiB: the working set (16 clients x 40 keys x up to 20 KB) overflows it, so evictions happen too.
    srv = server_factory.start(["-t", "2", "-m", "2"])
    errors, counts = [], {"reads": 0}
    threads = [threading.Thread(target=text_worker, args=(srv, "t%d" % i, i, errors, counts)) for i in range(8)]
    threads += [threading.Thread(target=binary_worker, args=(srv, "b%d" % i, 100 + i, errors, counts)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DURATION + 30)
    assert not any(t.is_alive() for t in threads), "a client hung"
    assert errors == [], errors[:10]
    assert counts["reads"] > 1000, counts
    with Conn.to(srv) as c:
        stats = c.stats_dict()
    assert int(stats["evictions"]) > 0, "the test meant to exercise eviction too"


def busy_reader(srv, index, results, stop_sending):
    """Pipelines gets of a 200 KB value and reads every reply, until the server closes; records whether
    the bytes received ended on a reply boundary."""
    sock = srv.connect(timeout=20)
    buf = b""
    complete = 0
    try:
        while True:
            if not stop_sending.is_set():
                sock.sendall(b"get big\r\n" * 4)
            data = sock.recv(1 << 20)
            if not data:
                break
            buf += data
            while True:  # strip whole replies off the front
                if buf.startswith(b"VALUE big 0 "):
                    header_end = buf.find(b"\r\n")
                    if header_end < 0:
                        break
                    size = int(buf[12:header_end])
                    total = header_end + 2 + size + 2 + 5
                    if len(buf) < total:
                        break
                    assert buf[header_end + 2 + size:total] == b"\r\nEND\r\n", "corrupt reply"
                    buf = buf[total:]
                    complete += 1
                else:
                    break
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        sock.close()
    results[index] = (complete, buf)


@pytest.mark.moat_only  # memcached exits at once on SIGTERM, cutting replies short
def test_sigterm_while_clients_are_busy_sends_only_complete_replies(server_factory):
    srv = server_factory.start(["-t", "2"])
    with Conn.to(srv) as c:
        assert c.store(b"set", b"big", os.urandom(100_000).hex().encode()) == b"STORED"
    results = {}
    stop_sending = threading.Event()
    threads = [threading.Thread(target=busy_reader, args=(srv, i, results, stop_sending)) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    started = time.monotonic()
    os.kill(srv.pid, signal.SIGTERM)
    rc = srv.wait_exit(15)
    elapsed = time.monotonic() - started
    stop_sending.set()
    for t in threads:
        t.join(20)
    assert rc == 0, (rc, srv.stderr_text()[-2000:])
    assert elapsed < 12, elapsed
    assert len(results) == 8
    for index, (complete, leftover) in results.items():
        assert complete > 0, index
        assert leftover == b"", "client %d: the server stopped mid-reply (%d bytes of a partial reply)" % (index, len(leftover))
