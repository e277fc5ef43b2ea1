"""Adversarial tests for what Moat does to its host (issue 17 finding 12): files it opens while still root
are not followed through symlinks put in their place, and capabilities do not outlive the start when it is
started without root. Each test failed against the server before its fix."""

import os
import pwd
import signal
import socket
import stat

import pytest

from moat_support import EXTRA_ARGS, Conn, moat_bin

pytestmark = pytest.mark.moat_only

VICTIM_TEXT = "root:precious:19000:0:99999:7:::\n"


def require_root():
    if os.geteuid() != 0:
        pytest.skip("the attack needs the server to start as root, as CI runs it")


def victim_and_link(server_factory, name):
    """A root-owned victim file, and a symlink named `name` pointing at it in a directory other accounts may write."""
    d = server_factory.tmpdir()
    os.chmod(d, 0o1777)  # like /tmp or a shared /run directory: another account could have made the link
    victim = os.path.join(d, "shadow")
    with open(victim, "w") as f:
        f.write(VICTIM_TEXT)
    os.chmod(victim, 0o600)
    link = os.path.join(d, name)
    os.symlink(victim, link)
    return victim, link


def assert_untouched(victim):
    with open(victim) as f:
        assert f.read() == VICTIM_TEXT
    assert stat.S_IMODE(os.stat(victim).st_mode) == 0o600


def test_pid_file_symlink_is_not_followed(server_factory):
    """A symlink at the -P path does not make root overwrite its target (fopen("w") truncated /etc/shadow)."""
    require_root()
    victim, link = victim_and_link(server_factory, "moat.pid")
    rc, err = server_factory.start_expect_exit(args=["-P", link])
    assert rc not in (None, 0), err
    assert "pid file" in err and "symbolic link" in err, err
    assert_untouched(victim)


def test_pid_file_hard_link_is_not_written(server_factory):
    """A hard link at the -P path (to a file of root's) is not written through either."""
    require_root()
    d = server_factory.tmpdir()
    victim = os.path.join(d, "shadow")
    with open(victim, "w") as f:
        f.write(VICTIM_TEXT)
    os.chmod(victim, 0o600)
    link = os.path.join(d, "moat.pid")
    os.link(victim, link)
    rc, err = server_factory.start_expect_exit(args=["-P", link])
    assert rc not in (None, 0) and "pid file" in err, err
    assert_untouched(victim)


def test_security_log_symlink_is_not_followed(server_factory):
    """A symlink at the -o security_log= path does not make root append to its target."""
    require_root()
    victim, link = victim_and_link(server_factory, "security.log")
    rc, err = server_factory.start_expect_exit(args=["-o", "security_log=" + link])
    assert rc not in (None, 0) and "security_log" in err, err
    assert_untouched(victim)


def test_unix_socket_mode_is_not_set_by_name(server_factory):
    """The unix socket gets its -a mode at creation: no chmod by path, which a symlink swapped in after bind redirects to any file."""
    require_root()
    d = server_factory.tmpdir()
    path = os.path.join(d, "moat.sock")
    trace = os.path.join(d, "trace")
    cmd = ["strace", "-f", "-qq", "-o", trace, "-e", "trace=chmod,fchmodat,lchown,chown,fchownat",
           moat_bin(), "serve", "-p", "{port}", "-l", "127.0.0.1", "-s", path, "-a", "0770"] + EXTRA_ARGS
    srv = server_factory.start(cmd=cmd, unix_path=path)
    with Conn.to(srv) as c:
        assert c.store(b"set", b"k", b"v") == b"STORED"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o770, oct(os.stat(path).st_mode)
    # strace killed would leave its tracee serving: stop moat itself, then strace ends with it.
    with open("/proc/%d/task/%d/children" % (srv.pid, srv.pid)) as f:
        traced = [int(pid) for pid in f.read().split()]
    for pid in traced:
        os.kill(pid, signal.SIGTERM)
    assert srv.wait_exit(15) is not None, "strace did not end with moat"
    srv.stop()
    with open(trace) as f:
        calls = [line for line in f if path in line]
    assert calls == [], calls


def capabilities(pid):
    """{tid: (CapPrm, CapEff, CapAmb, NoNewPrivs)} of every thread of `pid`."""
    out = {}
    for task in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, task)) as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue  # the thread exited meanwhile
        out[task] = tuple(int(fields[k].strip(), 16) for k in ("CapPrm", "CapEff", "CapAmb")) + (fields["NoNewPrivs"].strip(),)
    return out


def free_low_port():
    """A free TCP port below 1024 on 127.0.0.1, which only a process with CAP_NET_BIND_SERVICE may bind."""
    for port in range(700, 1000):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    pytest.fail("no free port in 700-999")


def test_capabilities_are_dropped_when_started_without_root(server_factory):
    """Started as another account with ambient capabilities (systemd's AmbientCapabilities=, setpriv), no thread keeps any once serving."""
    require_root()
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        if int(f.read()) <= 700:
            pytest.skip("this host lets any account bind low ports, so the capability would prove nothing")
    nobody = pwd.getpwnam("nobody")
    port = free_low_port()
    caps = "+net_bind_service,+net_raw"
    cmd = ["setpriv", "--reuid=%d" % nobody.pw_uid, "--regid=%d" % nobody.pw_gid, "--clear-groups",
           "--inh-caps=" + caps, "--ambient-caps=" + caps,
           moat_bin(), "serve", "-p", "{port}", "-l", "127.0.0.1"] + EXTRA_ARGS
    srv = server_factory.start(cmd=cmd, port=port)
    with Conn.to(srv) as c:  # it bound the low port, so it had the capability
        assert c.cmd(b"version").startswith(b"VERSION")
    held = capabilities(srv.pid)
    assert len(held) > 1, held
    for task, (permitted, effective, ambient, no_new_privs) in held.items():
        assert (permitted, effective, ambient) == (0, 0, 0), (task, held[task])
        assert no_new_privs == "1", task
