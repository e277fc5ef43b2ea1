"""Behaviour specific to Moat (documented differences from memcached). All `moat_only`."""

import os
import subprocess

import pytest

from moat_support import Conn, moat_bin, wait_until

pytestmark = pytest.mark.moat_only


def test_version_string(server):
    with Conn.to(server) as c:
        assert c.cmd(b"version") == b"VERSION 1.6.21-moat-0.1.0"


def test_ready_line_on_stderr(server):
    assert wait_until(lambda: "moat ready:" in server.stderr_text(), 5), server.stderr_text()


def test_binary_protocol_magic_gets_a_binary_reply(server):
    with Conn.to(server) as c:
        # binary-protocol GET request for key "k" (opaque 0x01020304): a miss, answered in binary
        c.send(b"\x80\x00\x00\x01" + b"\x00" * 4 + b"\x00\x00\x00\x01" + b"\x01\x02\x03\x04" + b"\x00" * 8 + b"k")
        header = c.readexact(24)
        assert header[0] == 0x81 and header[1] == 0x00
        assert header[6:8] == b"\x00\x01"  # key not found
        assert header[12:16] == b"\x01\x02\x03\x04"  # opaque echoed
        body_len = int.from_bytes(header[8:12], "big")
        assert c.readexact(body_len) == b"Not found"
    with Conn.to(server) as c:
        assert c.sync() == []


def test_lru_crawler_metadump_not_allowed(server):
    with Conn.to(server) as c:
        assert c.store(b"set", b"k", b"v") == b"STORED"
        assert c.cmd(b"lru_crawler metadump all") == b"ERROR key dumping not allowed"
        assert c.sync() == []


def test_plain_invocation_without_serve(server_factory):
    srv = server_factory.start(cmd=[moat_bin(), "-p", "{port}", "-l", "127.0.0.1"])
    with Conn.to(srv) as c:
        assert c.sync() == []


def test_version_flag():
    res = subprocess.run([moat_bin(), "-V"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, timeout=10)
    assert res.returncode == 0
    assert b"moat" in res.stdout.lower() or b"1.6.21" in res.stdout


@pytest.mark.parametrize("argv", [["-h"], ["serve", "-h"], ["serve", "--help"]])
def test_help_flag(argv):
    res = subprocess.run([moat_bin()] + argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, timeout=10)
    assert res.returncode == 0, res.stdout
    if argv[0] == "serve":
        assert b"--port" in res.stdout and b"--listen" in res.stdout, res.stdout


def test_help_lists_the_subcommands_and_serves_flags():
    res = subprocess.run([moat_bin(), "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, timeout=10)
    assert res.returncode == 0, res.stdout
    text = b" ".join(res.stdout.split())
    assert b"--port" in text and b"--memory-limit" in text, res.stdout
    for name in (b"user", b"audit", b"check", b"firewall"):
        assert b"moat " + name in text, name
        described = subprocess.run([moat_bin(), "help", name.decode()], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=10)
        assert described.returncode == 0 and b"USAGE: moat " + name in described.stdout, described.stdout


def test_unknown_flag_refused(server_factory):
    rc, err = server_factory.start_expect_exit(["--definitely-not-a-flag"])
    assert rc is not None and rc != 0


def test_daemon_flag_ignored_stays_foreground(server_factory):
    srv = server_factory.start(["-d"])
    assert srv.alive()
    with Conn.to(srv) as c:
        assert c.sync() == []


def test_pidfile(server_factory):
    d = server_factory.tmpdir()
    pidfile = os.path.join(d, "moat.pid")
    srv = server_factory.start(["-P", pidfile])
    assert wait_until(lambda: os.path.exists(pidfile), 5)
    with open(pidfile) as f:
        assert int(f.read().strip()) == srv.pid


def test_tuning_options_accepted(server_factory):
    srv = server_factory.start(["-o", "hashpower=20,slab_reassign,lru_crawler,modern", "-t", "2"])
    with Conn.to(srv) as c:
        assert c.sync() == []


def test_verbose_flags_accepted(server_factory):
    srv = server_factory.start(["-vv"])
    with Conn.to(srv) as c:
        assert c.store(b"set", b"k", b"v") == b"STORED"


def test_lenient_keys_accepts_control_bytes_like_memcached(server_factory):
    # memcaslap (libmemcached-tools) generates keys with bytes such as 0x10; protocol.txt forbids
    # them and Moat refuses them by default, -o lenient_keys accepts them as memcached does.
    key = b"\x10\x18memcaslap"
    srv = server_factory.start(["-o", "lenient_keys"])
    with Conn.to(srv) as c:
        assert c.store(b"set", key, b"v") == b"STORED"
        assert c.get(key) == b"v"
        assert c.cmd(b"get " + b"k" * 251) == b"CLIENT_ERROR bad command line format"
        assert c.sync() == []


def test_memcaslap_load_stores_with_lenient_keys(server_factory):
    srv = server_factory.start(["-o", "lenient_keys"])
    cfg = os.path.join(server_factory.tmpdir(), "caslap.cnf")
    with open(cfg, "w") as f:
        f.write("key\n16 16 1\nvalue\n32 32 1\ncmd\n0 0.5\n1 0.5\n")
    out = subprocess.run(
        ["memcaslap", "-s", "127.0.0.1:%d" % srv.port, "-T", "1", "-c", "4", "-w", "1k", "-t", "1s", "-F", cfg],
        capture_output=True, text=True, timeout=30)
    assert "TPS" in out.stdout, out.stdout + out.stderr
    with Conn.to(srv) as c:
        stats = c.stats_dict()
    assert int(stats["curr_items"]) > 0, stats
    assert int(stats["protocol_errors"]) == 0, stats
