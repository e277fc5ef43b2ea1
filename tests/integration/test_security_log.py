"""The security log (issue 5): one JSON object per line for connections, authentication, dangerous
commands, key-dump attempts and canary reads, to a file or stderr, with counts in `stats`; and the
go-derper sequence (list slabs, dump keys, read them) refused and raised as critical events."""

import json
import os
import subprocess
import time

import pytest

from moat_support import connect_from, Conn, moat_bin, wait_until

pytestmark = pytest.mark.moat_only



def events(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def find(path, **fields):
    return [e for e in events(path) if all(e.get(k) == v for k, v in fields.items())]


def test_events_go_to_a_file_as_json(server_factory):
    d = server_factory.tmpdir()
    log = os.path.join(d, "security.log")
    creds = os.path.join(d, "credentials")
    assert subprocess.run([moat_bin(), "user", "add", "alice", "--credentials", creds], input=b"pw-1234\n",
                          capture_output=True, timeout=60).returncode == 0
    srv = server_factory.start(args=["-S", "--credentials", creds, "-o", "security_log=%s,auth_delay=0,canary=secret:admin" % log])
    assert os.stat(log).st_mode & 0o777 == 0o600
    with connect_from(srv, "127.0.0.2") as c:
        assert c.store(b"set", b"a", b"alice wrong") == b"CLIENT_ERROR authentication failure"
    with connect_from(srv, "127.0.0.3") as c:
        assert c.store(b"set", b"a", b"alice pw-1234") == b"STORED"
        assert c.cmd(b"shutdown") == b"ERROR: shutdown not enabled"
        assert c.cmd(b"stats cachedump 1 100") == b"CLIENT_ERROR stats cachedump not allowed"
        assert c.cmd(b"watch") == b"CLIENT_ERROR watch not allowed"
        assert c.cmd(b"stats conns") == b"CLIENT_ERROR stats conns not allowed"
        assert c.store(b"set", b"secret:admin", b"decoy") == b"STORED"
        assert c.get(b"secret:admin") == b"decoy"  # served as any key: the reader must not notice
        stats = c.stats_dict()
    assert wait_until(lambda: find(log, event="canary_read"), 5)
    assert find(log, event="connection_accepted", peer="127.0.0.2")
    assert find(log, event="connection_accepted", peer="127.0.0.3")
    assert find(log, event="auth_failure", peer="127.0.0.2", user="alice", mechanism="ascii", severity="warning")
    assert find(log, event="auth_success", peer="127.0.0.3", user="alice")
    assert find(log, event="dangerous_command", command="shutdown", allowed=False, peer="127.0.0.3")
    assert find(log, event="dangerous_command", command="stats conns", allowed=False)
    assert find(log, event="key_dump_attempt", command="stats cachedump", severity="critical")
    assert find(log, event="key_dump_attempt", command="watch", severity="critical")
    assert find(log, event="canary_read", key="secret:admin", peer="127.0.0.3", severity="critical")
    for e in events(log):
        assert e["ts"].endswith("Z") and "T" in e["ts"]
        assert "pw-1234" not in json.dumps(e)
    assert stats["security_auth_failures"] == "1"
    assert stats["security_dangerous_commands"] == "2"
    assert stats["security_key_dump_attempts"] == "2"
    assert stats["security_canary_reads"] == "1"
    # Nothing went to stderr as JSON when a file is configured.
    assert '"event"' not in srv.stderr_text()


def test_go_derper_enumeration_is_refused_and_raised(server_factory):
    srv = server_factory.start(args=["-o", "canary=canary-key"])
    with Conn.to(srv) as victim:
        assert victim.store(b"set", b"session:42", b"token") == b"STORED"
        assert victim.store(b"set", b"canary-key", b"x") == b"STORED"
    with connect_from(srv, "127.0.0.9") as attacker:
        items = attacker.stats(b"items")  # the slab ids an enumerator would walk
        assert all(b"number" in line or b":" in line for line in items)
        assert attacker.cmd(b"stats cachedump 1 0") == b"CLIENT_ERROR stats cachedump not allowed"
        assert attacker.cmd(b"lru_crawler metadump all") == b"ERROR key dumping not allowed"
        assert attacker.cmd(b"lru_crawler mgdump 1") == b"ERROR key dumping not allowed"
        attacker.send(b"get canary-key\r\n")
        assert b"canary-key" in attacker.read_values()
    text = lambda: srv.stderr_text()
    assert wait_until(lambda: '"event":"canary_read"' in text(), 5)
    # The server's own log lines are JSON too when standard error is not a terminal: events have "event".
    lines = [e for e in (json.loads(line) for line in text().splitlines() if line.startswith("{")) if "event" in e]
    dumps = [e for e in lines if e["event"] == "key_dump_attempt" and e["peer"] == "127.0.0.9"]
    assert [e["command"] for e in dumps] == ["stats cachedump", "lru_crawler metadump", "lru_crawler mgdump"]
    assert any(e["event"] == "canary_read" and e["peer"] == "127.0.0.9" and e["severity"] == "critical" for e in lines)


def test_dangerous_command_switches(server_factory):
    srv = server_factory.start(args=["-F", "-o", "disable_verbosity"])
    with Conn.to(srv) as c:
        assert c.cmd(b"flush_all") == b"CLIENT_ERROR flush_all not allowed"
        assert c.cmd(b"verbosity 1") == b"CLIENT_ERROR verbosity not allowed"
        assert c.cmd(b"cache_memlimit 100") == b"ERROR cache_memlimit not supported"
    open_srv = server_factory.start(args=["-W", "-X"])
    with Conn.to(open_srv) as c:
        assert c.cmd(b"flush_all") == b"OK"
        assert c.cmd(b"verbosity 1") == b"OK"
        assert c.cmd(b"watch") == b"CLIENT_ERROR watch not allowed"
    assert wait_until(lambda: '"command":"verbosity","allowed":true' in open_srv.stderr_text(), 5)
    assert '"command":"flush_all","allowed":false' in srv.stderr_text()
    assert '"command":"flush_all","allowed":true' in open_srv.stderr_text()


def test_security_log_off(server_factory):
    srv = server_factory.start(args=["-o", "security_log=off"])
    with Conn.to(srv) as c:
        assert c.cmd(b"stats cachedump 1 1") == b"CLIENT_ERROR stats cachedump not allowed"
        assert c.stats_dict()["security_key_dump_attempts"] == "1"
    assert '"event"' not in srv.stderr_text()


def test_log_lines_are_rate_limited(server_factory):
    log = os.path.join(server_factory.tmpdir(), "sec.log")
    srv = server_factory.start(args=["-o", "security_log=" + log])
    with Conn.to(srv) as c:
        c.send(b"shutdown\r\n" * 3000)  # pipelined: answered within a second or two
        for _ in range(3000):
            assert c.readline() == b"ERROR: shutdown not enabled"
        time.sleep(1.1)
        assert c.cmd(b"shutdown") == b"ERROR: shutdown not enabled"
        assert c.stats_dict()["security_dangerous_commands"] == "3001"
    written = find(log, event="dangerous_command")
    dropped = find(log, event="security_log_dropped")
    # At most 1,000 lines a second (the connection's own event took one); every dropped line is reported.
    assert len(written) < 3001 and dropped
    assert len(written) + sum(e["lines"] for e in dropped) == 3001


@pytest.mark.parametrize("flags, reason, send", [
    (["-o", "idle_timeout=1"], "idle_timeout", b""),
    (["-o", "command_timeout=1"], "slow_command", b"get partial-key-with-no-end"),
])
def test_a_deadline_close_is_logged_once(server_factory, flags, reason, send):
    """Each deadline close is one `connection_closed` event and one log line, with its reason (the retired SwiftNIO backend logged two lines)."""
    log = os.path.join(server_factory.tmpdir(), "security.log")
    srv = server_factory.start(flags + ["-v", "-o", "security_log=" + log])
    with Conn.to(srv, timeout=10) as c:
        port = c.sock.getsockname()[1]
        if send:
            c.send(send)
        _, closed = c.read_until_closed(timeout=6)
        assert closed
    assert wait_until(lambda: find(log, event="connection_closed", reason=reason), 5), events(log)
    time.sleep(0.6)  # a second line, if any, would follow within a tick or two
    assert len(find(log, event="connection_closed")) == 1, events(log)
    closes = [line for line in srv.stderr_text().splitlines() if "connection closed" in line and ":%d\"" % port in line]
    assert len(closes) == 1 and reason in closes[0], closes
