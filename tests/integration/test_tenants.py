"""Tenants (--config FILE with buckets and users): isolation of the same keys between tenants over the
text and binary protocols with real SASL clients (pylibmc through Cyrus SASL, python-binary-memcached),
per-bucket quotas, permission denials, per-bucket and per-user stats, SIGHUP reloads, and malformed
configuration files."""

import json
import os
import pwd
import signal
import subprocess

import pytest

from moat_support import Conn, moat_bin, wait_until

pytestmark = pytest.mark.moat_only

PASSWORD = "tenant pass"
USERS = ("shop", "shopadmin", "blog", "reader", "scoped", "newcomer")
BEHAVIORS = {"connect_timeout": 5000, "receive_timeout": 5_000_000, "send_timeout": 5_000_000, "retry_timeout": 1}

CONFIG = """
server:
  memory-limit: 64
  extended: [auth_delay=0]
buckets:
  shop: { memory: 16m }
  blog:
    memory: 8m
    when_full: refuse
users:
  shop: { bucket: shop, permissions: [read, write] }
  shopadmin: { bucket: shop, permissions: [all] }
  blog: { bucket: blog, permissions: [read, write, admin] }
  reader: { bucket: shop, permissions: [read] }
  scoped:
    bucket: shop
    permissions: [read, write]
    keys: ["app:*"]
    read_keys: ["public:*", "motd"]
"""


def moat_user(*args, stdin=None):
    return subprocess.run([moat_bin(), "user", *args], input=stdin, capture_output=True, timeout=60)


def readable_by_server(path):
    """The server reads its files again on SIGHUP after dropping root to nobody."""
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(path, nobody.pw_uid, nobody.pw_gid)


@pytest.fixture
def setup(server_factory):
    d = server_factory.tmpdir()
    creds = os.path.join(d, "credentials")
    for name in USERS:
        r = moat_user("add", name, "--credentials", creds, "--iterations", "4096", stdin=(PASSWORD + "\n").encode())
        assert r.returncode == 0, r.stderr
    readable_by_server(creds)
    config = os.path.join(d, "moat.yaml")
    write(config, CONFIG)
    return d, creds, config


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)


def start(server_factory, setup, *extra):
    d, creds, config = setup
    log = os.path.join(d, "security.log")
    return server_factory.start(args=["--config", config, "--credentials", creds, "-o", "security_log=" + log, *extra]), log


def events(log, **match):
    if not os.path.exists(log):
        return []
    with open(log) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def text_login(srv, user):
    """memcached's ASCII auth: a `set` whose data is "user password"."""
    c = Conn.to(srv)
    secret = ("%s %s" % (user, PASSWORD)).encode()
    assert c.store(b"set", b"auth", secret) == b"STORED"
    return c


def pylibmc_client(srv, user):
    import pylibmc
    return pylibmc.Client(["127.0.0.1:%d" % srv.port], binary=True, username=user, password=PASSWORD, behaviors=BEHAVIORS)


def bmemcached_client(srv, user):
    import bmemcached
    return bmemcached.Client(("127.0.0.1:%d" % srv.port,), user, PASSWORD)


# -------------------------------------------------------------------------- isolation


def test_two_tenants_writing_the_same_keys_never_see_each_other(server_factory, setup):
    srv, _ = start(server_factory, setup)
    shop = pylibmc_client(srv, "shop")        # binary SASL, SCRAM through Cyrus
    blog = bmemcached_client(srv, "blog")     # binary SASL, PLAIN
    for i in range(50):
        shop.set("user:%d" % i, "shop-%d" % i)
        assert blog.set("user:%d" % i, "blog-%d" % i)
    shop.set("only-shop", "x")
    for i in range(50):
        assert shop.get("user:%d" % i) == "shop-%d" % i
        assert blog.get("user:%d" % i) == "blog-%d" % i
    assert blog.get("only-shop") is None
    # The text protocol sees the same buckets: ASCII auth as shop, then as blog.
    with text_login(srv, "shop") as c:
        assert c.get(b"user:7") == b"shop-7"
        assert c.get(b"only-shop") == b"x"
        assert c.store(b"set", b"text-key", b"from-text-shop") == b"STORED"
    with text_login(srv, "blog") as c:
        assert c.get(b"user:7") == b"blog-7"
        assert c.get(b"only-shop") is None
        assert c.get(b"text-key") is None
        # Each tenant's stats count its own bucket only.
        stats = c.stats_dict()
        assert stats["curr_items"] == "50", stats["curr_items"]
        assert stats["bucket"] == "blog"
        assert "curr_connections" in stats  # blog holds the admin permission: server-wide lines too
    with text_login(srv, "shop") as c:
        stats = c.stats_dict()
        assert stats["curr_items"] == "52"
        assert "curr_connections" not in stats and "auth_cmds" not in stats  # no admin: no view of others
        assert int(stats["get_hits"]) >= 52
        assert c.cmd(b"stats buckets") == b"CLIENT_ERROR permission denied"
    assert blog.get("text-key") is None
    # pymemcache, as docs/tenants.md shows it: ASCII auth with its default noreply set.
    from pymemcache.client.base import Client
    pm = Client(("127.0.0.1", srv.port), connect_timeout=5, timeout=5)
    pm.set("auth", "blog %s" % PASSWORD)
    assert pm.get("user:3") == b"blog-3"
    pm.set("user:3", "from-pymemcache")
    # noreply: nothing says the set was applied until a later reply on the same connection does.
    assert pm.get("user:3") == b"from-pymemcache"
    assert blog.get("user:3") == "from-pymemcache"
    assert shop.get("user:3") == "shop-3"
    pm.close()


def test_flush_all_empties_only_the_flushers_bucket(server_factory, setup):
    srv, _ = start(server_factory, setup)
    blog = bmemcached_client(srv, "blog")
    assert blog.set("kept", "blog-value")
    with text_login(srv, "shopadmin") as c:
        assert c.store(b"set", b"kept", b"shop-value") == b"STORED"
        assert c.cmd(b"flush_all") == b"OK"
        assert c.get(b"kept") is None
    assert blog.get("kept") == "blog-value"
    with text_login(srv, "shop") as c:
        # shop has no admin permission
        assert c.cmd(b"flush_all") == b"CLIENT_ERROR permission denied"


# -------------------------------------------------------------------------- quotas


def test_a_flood_evicts_only_within_its_own_bucket(server_factory, setup):
    srv, _ = start(server_factory, setup)
    blog = bmemcached_client(srv, "blog")
    for i in range(100):
        assert blog.set("post:%d" % i, "p" * 1000)
    shop = pylibmc_client(srv, "shop")
    value = b"v" * 10_000
    for i in range(4000):  # 40 MB into a 16 MiB bucket
        shop.set("flood:%d" % i, value)
    for i in range(100):
        assert blog.get("post:%d" % i) == "p" * 1000, i
    with text_login(srv, "shopadmin") as c:
        b = c.stats_dict(b"buckets")
    assert int(b["bucket:shop:evictions"]) > 0
    assert int(b["bucket:shop:bytes"]) <= 16 * 1024 * 1024
    assert b["bucket:shop:limit_maxbytes"] == str(16 * 1024 * 1024)
    assert b["bucket:blog:evictions"] == "0"
    assert b["bucket:blog:curr_items"] == "100"
    # The default bucket got what the named ones leave of -m 64.
    assert b["bucket:default:limit_maxbytes"] == str(40 * 1024 * 1024)


def test_a_full_refusing_bucket_answers_out_of_memory(server_factory, setup):
    srv, _ = start(server_factory, setup)
    with text_login(srv, "blog") as c:
        value = b"r" * 50_000
        replies = [c.store(b"set", b"big:%d" % i, value) for i in range(400)]  # 20 MB into 8 MiB
    assert replies[0] == b"STORED"
    assert b"SERVER_ERROR out of memory storing object" in replies
    blog = bmemcached_client(srv, "blog")
    assert blog.get("big:0") == value.decode()  # nothing was evicted


# -------------------------------------------------------------------------- permissions


def test_permission_denials_text_binary_meta_and_log(server_factory, setup):
    srv, log = start(server_factory, setup)
    with text_login(srv, "shop") as c:
        assert c.store(b"set", b"greeting", b"hello") == b"STORED"
    with text_login(srv, "reader") as c:
        assert c.get(b"greeting") == b"hello"
        assert c.store(b"set", b"greeting", b"bye") == b"CLIENT_ERROR permission denied"
        assert c.cmd(b"delete greeting") == b"CLIENT_ERROR permission denied"
        assert c.cmd(b"incr n 1") == b"CLIENT_ERROR permission denied"
        assert c.cmd(b"touch greeting 10") == b"CLIENT_ERROR permission denied"
        assert c.cmd(b"ms greeting 3\r\nbye") == b"CLIENT_ERROR permission denied"
        assert c.cmd(b"mg greeting v") == b"VA 5"
        assert c.readline() == b"hello"
        assert c.cmd(b"verbosity 1") == b"CLIENT_ERROR permission denied"
        assert c.cmd(b"stats settings") == b"CLIENT_ERROR permission denied"
        assert c.cmd(b"stats cachedump 1 1") == b"CLIENT_ERROR permission denied"
        assert c.get(b"greeting") == b"hello"
    import pylibmc
    reader = pylibmc_client(srv, "reader")
    assert reader.get("greeting") == b"hello"
    with pytest.raises(pylibmc.Error):
        reader.set("greeting", "overwritten")
    import bmemcached
    breader = bmemcached_client(srv, "reader")
    assert breader.get("greeting") == "hello"
    with pytest.raises(bmemcached.exceptions.MemcachedException, match="Permission denied"):
        breader.set("greeting", "overwritten")
    assert breader.get("greeting") == "hello"
    assert wait_until(lambda: len(events(log, event="permission_denied", user="reader")) >= 10, 5)
    denial = events(log, event="permission_denied", user="reader")[0]
    assert denial["bucket"] == "shop" and denial["command"] == "set" and denial["category"] == "write"
    assert "greeting" not in json.dumps(events(log, event="permission_denied"))  # keys are never logged
    # One failed ASCII login for reader: counted against that user.
    with Conn.to(srv) as c:
        assert c.store(b"set", b"auth", b"reader wrong-password") == b"CLIENT_ERROR authentication failure"
    with text_login(srv, "shopadmin") as c:
        users = c.stats_dict(b"users")
        general = c.stats_dict()
    assert int(users["user:reader:acl_denied"]) >= 10
    assert int(users["user:reader:auth_success"]) >= 3
    assert int(users["user:reader:auth_failures"]) == 1
    assert int(general["acl_denied"]) >= 10


def test_key_patterns_separate_read_and_write(server_factory, setup):
    srv, _ = start(server_factory, setup)
    with text_login(srv, "shop") as c:
        for key in (b"public:news", b"motd", b"secret"):
            assert c.store(b"set", key, b"v-" + key) == b"STORED"
    with text_login(srv, "scoped") as c:
        assert c.store(b"set", b"app:1", b"mine") == b"STORED"
        assert c.get(b"app:1") == b"mine"
        assert c.get(b"public:news") == b"v-public:news"
        assert c.get(b"motd") == b"v-motd"
        assert c.store(b"set", b"public:news", b"defaced") == b"CLIENT_ERROR permission denied"
        assert c.cmd(b"get secret") == b"CLIENT_ERROR permission denied"
        # One forbidden key refuses the whole multi-get: nothing is returned.
        assert c.cmd(b"get app:1 secret") == b"CLIENT_ERROR permission denied"
        assert c.cmd(b"get motdx") == b"CLIENT_ERROR permission denied"  # exact key, not a prefix
        assert c.get(b"public:news") == b"v-public:news"


# -------------------------------------------------------------------------- reload


def test_sighup_applies_users_permissions_and_quotas(server_factory, setup):
    d, creds, config = setup
    srv, log = start(server_factory, setup)
    blog_conn = text_login(srv, "blog")
    reader_conn = text_login(srv, "reader")
    shop_conn = text_login(srv, "shop")
    assert shop_conn.store(b"set", b"survives", b"yes") == b"STORED"
    with pytest.raises(Exception):
        text_login(srv, "newcomer").close()  # not in the configuration yet
    new = (CONFIG.replace("  blog: { bucket: blog, permissions: [read, write, admin] }\n", "")
           .replace("reader: { bucket: shop, permissions: [read] }", "reader: { bucket: shop, permissions: [read, write] }")
           .replace("shop: { memory: 16m }", "shop: { memory: 24m }")
           + "  newcomer: { bucket: blog }\n")
    write(config, new)
    os.kill(srv.pid, signal.SIGHUP)
    assert wait_until(lambda: events(log, event="config_reload", applied=True), 5), srv.stderr_text()
    # blog was removed: its idle connection is closed without it sending anything.
    blog_conn.sock.settimeout(5)
    assert blog_conn.sock.recv(100) == b""
    # reader may now write, on the connection it already had.
    assert reader_conn.store(b"set", b"by-reader", b"ok") == b"STORED"
    assert shop_conn.get(b"survives") == b"yes"   # the bucket kept its items through the resize
    with text_login(srv, "newcomer") as c:
        assert c.store(b"set", b"k", b"v") == b"STORED"
    with text_login(srv, "shopadmin") as c:
        assert c.stats_dict(b"buckets")["bucket:shop:limit_maxbytes"] == str(24 * 1024 * 1024)
    with pytest.raises(Exception):
        text_login(srv, "blog").close()
    assert events(log, event="connection_closed", reason="access_revoked")

    # A broken file changes nothing, and the log names its line.
    write(config, new + "  broken: { bucket: shop, permissions: [read, fly] }\n")
    os.kill(srv.pid, signal.SIGHUP)
    assert wait_until(lambda: events(log, event="config_reload", applied=False), 5)
    failure = events(log, event="config_reload", applied=False)[0]
    lines = new.count("\n") + 1
    assert "moat.yaml:%d" % lines in failure["detail"] and "fly" in failure["detail"], failure
    assert "not reloaded" in srv.stderr_text()
    with text_login(srv, "newcomer") as c:
        assert c.store(b"set", b"k", b"v") == b"STORED"
    for c in (reader_conn, shop_conn):
        c.close()


# -------------------------------------------------------------------------- the file itself


BAD_FILES = [
    ("users:\n  a: { bucket: nowhere }\n", 2, "not declared"),
    ("buckets:\n  b: { memory: 16m }\nusers:\n  a:\n    bucket: b\n    permissions: [read, fly]\n", 6, "unknown permission"),
    ("buckets:\n  b: { memory: 100m }\n", None, "more than the memory limit"),
    ("buckets:\n  b: { memory: 16m\n", 3, None),                       # YAML syntax error
    ("buckets:\n  b: { memory: 16m }\n  b: { memory: 8m }\n", 2, "twice"),
    ("tenants:\n  a: 1\n", 2, "unknown section"),
    ("users:\n  a: { keys: ['a*b'] }\n", 2, "key pattern"),
    ("server:\n  no-such-flag: 1\n", 2, "unknown setting"),
    ("buckets:\n  b: { memory: 16m, when_full: maybe }\n", 2, "when_full"),
]


@pytest.mark.parametrize("text,line,words", BAD_FILES)
def test_a_malformed_file_is_refused_naming_its_line(server_factory, setup, text, line, words):
    d, creds, config = setup
    write(config, text)
    rc, err = server_factory.start_expect_exit(args=["--config", config, "--credentials", creds, "-m", "64"])
    assert rc == 64, err
    if line is not None:
        assert "moat.yaml:%d" % line in err or "line %d" % line in err, err
    if words:
        assert words in err, err


def test_command_line_flags_win_over_the_file(server_factory, setup):
    d, creds, config = setup
    write(config, CONFIG.replace("memory-limit: 64", "memory-limit: 64\n  threads: 3\n  conn-limit: 77"))
    srv, _ = start(server_factory, setup, "-c", "99")
    with text_login(srv, "shopadmin") as c:
        settings = c.stats_dict(b"settings")
    assert settings["maxconns"] == "99"          # the flag, not the file's 77
    assert settings["num_threads"] == "3"        # the file, where no flag says otherwise
    assert settings["maxbytes"] == str(64 * 1024 * 1024)


def test_buckets_without_authentication_are_refused(server_factory, setup):
    d, creds, config = setup
    rc, err = server_factory.start_expect_exit(args=["--config", config])
    assert rc == 64 and "authentication" in err, err
