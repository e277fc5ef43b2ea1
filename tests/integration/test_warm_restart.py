"""Warm restarts (-e FILE): the cache saved when the server stops (SIGTERM, SIGUSR1, `shutdown`) or on
demand (SIGUSR2) and loaded when it starts, with key, value, flags, CAS, expiry and bucket; and every
snapshot that must not come back (too old, truncated, altered, under another key, unencrypted while a
key is set) refused with a log line, moved aside, the server starting empty."""

import glob
import os
import pwd
import signal
import subprocess
import time

import pytest

from moat_support import Conn, add_user, moat_bin, state_dir, wait_until

pytestmark = pytest.mark.moat_only

PASSWORD = "warm pass"
BEHAVIORS = {"connect_timeout": 5000, "receive_timeout": 5_000_000, "send_timeout": 5_000_000, "retry_timeout": 1}


def stop(srv, sig=signal.SIGTERM, timeout=20):
    srv.proc.send_signal(sig)
    assert srv.wait_exit(timeout) == 0, srv.stderr_text()[-2000:]


def start(server_factory, args, port=None):
    """Starts a server and waits for its ready line, which comes after the restore (the kernel accepts
    connections into the listen backlog before that)."""
    srv = server_factory.start(args=args, port=port)
    assert wait_until(lambda: log_lines(srv, "moat ready"), 30), srv.stderr_text()[-2000:]
    return srv


def restart(server_factory, srv, args, sig=signal.SIGTERM):
    """Stops `srv` with `sig` and starts the same command on the same port."""
    stop(srv, sig)
    return start(server_factory, args, port=srv.port)


def log_lines(srv, needle):
    return [line for line in srv.stderr_text().splitlines() if needle in line]


def test_a_restart_serves_the_same_keys_with_their_flags_cas_and_expiry(server_factory):
    pymemcache = pytest.importorskip("pymemcache.client.base")
    snapshot = os.path.join(state_dir(server_factory), "cache")
    args = ["-e", snapshot]
    srv = server_factory.start(args=args)
    client = pymemcache.Client(("127.0.0.1", srv.port), timeout=5)
    for i in range(500):
        client.set("key:%d" % i, b"value-%d" % i, expire=0, flags=i % 7)
    client.set("short", b"gone soon", expire=2)
    value, cas = client.gets("key:42")
    client.close()

    srv = restart(server_factory, srv, args)
    # 501, or 500 when "short" expired during a slow restart.
    assert log_lines(srv, "warm restart: restored 501 items") or log_lines(srv, "warm restart: restored 500 items")
    # Owned by the serving account, readable by no one else.
    status = os.stat(snapshot)
    assert status.st_mode & 0o777 == 0o600
    if os.geteuid() == 0:
        assert status.st_uid == pwd.getpwnam("nobody").pw_uid
    client = pymemcache.Client(("127.0.0.1", srv.port), timeout=5)
    assert all(client.get("key:%d" % i) == b"value-%d" % i for i in range(500))
    with Conn.to(srv) as c:
        assert c.cmd(b"mg key:6 f v") == b"VA 7 f6"
    # The CAS unique survives: a cas with the value read before the restart succeeds, once.
    assert client.gets("key:42") == (value, cas)
    assert client.cas("key:42", b"swapped", cas) is True
    assert client.cas("key:42", b"again", cas) is False
    assert client.get("key:42") == b"swapped"
    # An item's expiry is wall-clock time: it ends when it would have.
    assert wait_until(lambda: client.get("short") is None, 5)
    client.close()


def test_shutdown_sigusr1_and_an_expiry_during_downtime(server_factory):
    snapshot = os.path.join(state_dir(server_factory), "cache")
    args = ["-e", snapshot, "-A"]
    srv = server_factory.start(args=args)
    with Conn.to(srv) as c:
        assert c.store(b"set", b"kept", b"1") == b"STORED"
        assert c.store(b"set", b"brief", b"2", exptime=1) == b"STORED"
        c.send(b"shutdown\r\n")
    assert srv.wait_exit(20) == 0
    assert log_lines(srv, "warm restart: saved 2 items")
    time.sleep(2.1)  # "brief" expires while the server is down
    srv = start(server_factory, args, port=srv.port)
    assert log_lines(srv, "1 expired while down")
    with Conn.to(srv) as c:
        assert c.get(b"kept") == b"1" and c.get(b"brief") is None
    # memcached's SIGUSR1 (stop, keeping the memory file) stops and saves too.
    srv = restart(server_factory, srv, args, sig=signal.SIGUSR1)
    with Conn.to(srv) as c:
        assert c.get(b"kept") == b"1"


def test_sigusr2_saves_while_serving_and_survives_a_crash(server_factory):
    snapshot = os.path.join(state_dir(server_factory), "cache")
    args = ["-e", snapshot]
    srv = server_factory.start(args=args)
    with Conn.to(srv) as c:
        assert c.store(b"set", b"before", b"1") == b"STORED"
        srv.proc.send_signal(signal.SIGUSR2)
        assert wait_until(lambda: log_lines(srv, "warm restart: saved 1 items"), 10)
        assert c.store(b"set", b"after", b"2") == b"STORED"  # still serving
    srv.proc.kill()  # a crash: no save at the stop
    srv.wait_exit(10)
    srv = start(server_factory, args, port=srv.port)
    with Conn.to(srv) as c:
        assert c.get(b"before") == b"1" and c.get(b"after") is None


def test_a_client_chosen_cas_at_the_top_survives_a_restart(server_factory):
    """`ms E` lets a client pick any CAS unique, the largest included: restoring it must not stop the start."""
    snapshot = os.path.join(state_dir(server_factory), "cache")
    args = ["-e", snapshot]
    srv = server_factory.start(args=args)
    with Conn.to(srv) as c:
        assert c.cmd(b"ms top 1 E18446744073709551615\r\nx") == b"HD"
    srv = restart(server_factory, srv, args)
    with Conn.to(srv) as c:
        assert c.cmd(b"mg top c v") == b"VA 1 c18446744073709551615"
        assert c.readline() == b"x"
        assert c.store(b"set", b"new", b"y") == b"STORED"


def test_tenants_get_their_own_items_back(server_factory):
    pylibmc = pytest.importorskip("pylibmc")
    d = server_factory.tmpdir()
    creds = os.path.join(d, "credentials")
    for name in ("shop", "blog"):
        add_user(creds, name, PASSWORD)
    config = os.path.join(d, "moat.yaml")
    with open(config, "w") as f:
        f.write("server:\n  extended: [auth_delay=0]\nbuckets:\n  shop: { memory: 16m }\n  blog: { memory: 8m }\n"
                "users:\n  shop: { bucket: shop, permissions: [all] }\n  blog: { bucket: blog, permissions: [all] }\n")
    os.chmod(config, 0o644)
    args = ["--config", config, "--credentials", creds, "-e", os.path.join(state_dir(server_factory), "cache")]

    def client(srv, user):
        return pylibmc.Client(["127.0.0.1:%d" % srv.port], binary=True, username=user, password=PASSWORD,
                              behaviors={**BEHAVIORS, "cas": True})

    srv = server_factory.start(args=args)
    shop, blog = client(srv, "shop"), client(srv, "blog")
    for i in range(50):
        shop.set("user:%d" % i, "shop-%d" % i)
        blog.set("user:%d" % i, "blog-%d" % i)
    shop.set("only-shop", "x")
    cas = shop.gets("user:7")[1]
    srv = restart(server_factory, srv, args)
    shop, blog = client(srv, "shop"), client(srv, "blog")
    assert all(shop.get("user:%d" % i) == "shop-%d" % i for i in range(50))
    assert all(blog.get("user:%d" % i) == "blog-%d" % i for i in range(50))
    assert blog.get("only-shop") is None
    assert shop.gets("user:7")[1] == cas


def test_a_smaller_memory_limit_keeps_the_most_recent_and_says_how_many_were_dropped(server_factory):
    snapshot = os.path.join(state_dir(server_factory), "cache")
    srv = server_factory.start(args=["-e", snapshot, "-m", "64", "-t", "1"])
    value = b"v" * 100_000
    with Conn.to(srv) as c:
        for i in range(400):  # 40 MB, the newest last
            assert c.store(b"set", b"k%d" % i, value) == b"STORED"
    srv = restart(server_factory, srv, ["-e", snapshot, "-m", "8", "-t", "1"])
    dropped = log_lines(srv, "dropped: over the memory limit (-m)")
    assert dropped, srv.stderr_text()[-2000:]
    with Conn.to(srv) as c:
        assert c.get(b"k399") == value and c.get(b"k0") is None
        stats = c.stats_dict()
    assert int(stats["evictions"]) == 0 and 0 < int(stats["curr_items"]) < 400


def test_an_old_snapshot_is_not_restored(server_factory):
    snapshot = os.path.join(state_dir(server_factory), "cache")
    args = ["-e", snapshot, "-o", "restore_max_age=1"]
    srv = server_factory.start(args=args)
    with Conn.to(srv) as c:
        assert c.store(b"set", b"stale", b"1") == b"STORED"
    stop(srv)
    time.sleep(2.1)
    srv = start(server_factory, args, port=srv.port)
    assert log_lines(srv, "older than restore_max_age")
    with Conn.to(srv) as c:
        assert c.get(b"stale") is None
    # Not damaged: left in place, and the next stop replaces it.
    assert os.path.exists(snapshot) and not glob.glob(snapshot + ".bad-*")


def damage(path, how):
    with open(path, "rb") as f:
        data = bytearray(f.read())
    if how == "truncated":
        data = data[: len(data) // 2]
    elif how == "altered":
        data[len(data) // 2] ^= 0x01
    elif how == "not a snapshot":
        data = bytearray(b"hello")
    with open(path, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("how", ["truncated", "altered", "not a snapshot"])
def test_a_damaged_snapshot_is_refused_moved_aside_and_the_server_starts_empty(server_factory, how):
    snapshot = os.path.join(state_dir(server_factory), "cache")
    args = ["-e", snapshot]
    srv = server_factory.start(args=args)
    with Conn.to(srv) as c:
        for i in range(3000):
            assert c.store(b"set", b"k%d" % i, b"x" * 500) == b"STORED"
    stop(srv)
    damage(snapshot, how)
    srv = start(server_factory, args, port=srv.port)
    refused = log_lines(srv, "refused, starting empty")
    assert refused and "moved aside" in refused[0], srv.stderr_text()[-2000:]
    assert len(glob.glob(snapshot + ".bad-*")) == 1
    with Conn.to(srv) as c:
        assert c.get(b"k0") is None and c.stats_dict()["curr_items"] == "0"
    assert '"event":"snapshot_refused"' in srv.stderr_text()


def test_an_encrypted_snapshot_needs_its_key(server_factory):
    d = server_factory.tmpdir()
    key, other = os.path.join(d, "key"), os.path.join(d, "other")
    with open(key, "wb") as f:
        f.write(os.urandom(32))
    with open(other, "w") as f:
        f.write(os.urandom(32).hex() + "\n")  # 64 hexadecimal digits work too
    for path in (key, other):
        os.chmod(path, 0o600)  # read while still root, as a systemd credential is
    snapshot = os.path.join(state_dir(server_factory), "cache")
    args = ["-e", snapshot, "-o", "restore_key=" + key]
    srv = server_factory.start(args=args)
    with Conn.to(srv) as c:
        assert c.store(b"set", b"session:alice", b"token-e3b0c44298fc1c149afb") == b"STORED"
    srv = restart(server_factory, srv, args)
    with Conn.to(srv) as c:
        assert c.get(b"session:alice") == b"token-e3b0c44298fc1c149afb"
    stop(srv)
    with open(snapshot, "rb") as f:
        data = f.read()
    assert b"token-e3b0" not in data and b"session:alice" not in data  # a copy of the disk holds no value
    # Another key: refused as forged or altered, moved aside.
    srv = start(server_factory, ["-e", snapshot, "-o", "restore_key=" + other], port=srv.port)
    assert log_lines(srv, "does not authenticate under the restore key")
    with Conn.to(srv) as c:
        assert c.get(b"session:alice") is None
    stop(srv)  # writes a snapshot under the other key
    # No key: an encrypted file is refused.
    srv = start(server_factory, ["-e", snapshot], port=srv.port)
    assert log_lines(srv, "encrypted, and no -o restore_key is set")
    stop(srv)  # writes an unencrypted snapshot
    # A key, and a file that is not encrypted: anyone who can write the directory could have written it.
    srv = start(server_factory, args, port=srv.port)
    assert log_lines(srv, "not encrypted while -o restore_key is set")
    assert '"severity":"critical"' in "".join(log_lines(srv, "snapshot_refused"))


def test_restore_options_need_a_memory_file(server_factory):
    rc, err = server_factory.start_expect_exit(args=["-o", "restore_max_age=60"])
    assert rc == 64 and "give -e FILE" in err
    rc, err = server_factory.start_expect_exit(args=["-e", "/nonexistent/x", "-o", "restore_key=/nonexistent/key"])
    assert rc == 64 and "restore_key" in err


def test_moat_check_reports_a_snapshot_directory_others_can_use_or_moat_cannot_write(server_factory):
    import json

    def check(*args):
        r = subprocess.run([moat_bin(), "check", "--no-config", "--format", "json", *args], capture_output=True,
                           timeout=30)
        return {f["name"]: f["severity"] for f in json.loads(r.stdout)["findings"]}

    good = state_dir(server_factory)
    assert check("-e", os.path.join(good, "cache")) == {}
    shared = server_factory.tmpdir()  # mode 1777
    assert check("-e", os.path.join(shared, "cache")).get("snapshot-directory-open") == "high"
    if os.geteuid() == 0:
        private = os.path.join(server_factory.tmpdir(), "rootonly")
        os.mkdir(private, 0o700)  # root's: nobody, whom moat serves as, cannot write it
        assert check("-e", os.path.join(private, "cache")).get("snapshot-not-writable") == "medium"
