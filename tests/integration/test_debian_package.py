"""The Debian package (scripts/build-deb.sh) installed on this machine with dpkg, as an operator would:
the binary runs from /usr/bin, the unit passes systemd-analyze, the server started under the
package's account reads /etc/moat/moat.conf and answers on loopback, an upgrade keeps a changed
conffile, and a purge removes the account, its files and the unit. The debug binary stands in for the
release one (the same packaging, minutes less to build). Everything is undone at the end: the test
refuses to run where a moat package or account already exists, so it never removes an operator's."""
import grp
import os
import pwd
import subprocess
import tempfile

import pytest

from moat_support import REPO_ROOT, moat_bin, free_port, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="installs a package: needs root (CI runs as root)")


def run(*args, check=True, timeout=120, **kwargs):
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kwargs)
    if check:
        assert proc.returncode == 0, "%s: %s%s" % (args, proc.stdout, proc.stderr)
    return proc


def installed():
    return run("dpkg-query", "-W", "-f=${Status}", "moat", check=False).stdout.startswith("install ok installed")


def account_exists():
    try:
        pwd.getpwnam("moat")
        return True
    except KeyError:
        return False


def build(out, version=None):
    args = ["bash", os.path.join(REPO_ROOT, "scripts", "build-deb.sh"), "--binary", moat_bin(), "--out", out]
    if version:
        args += ["--version", version]
    return run(*args, timeout=300).stdout.strip().splitlines()[-1]


def stats(port):
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"stats\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
    return dict(line.split(" ")[1:3] for line in data.decode().splitlines() if line.startswith("STAT "))


def test_install_serve_upgrade_purge():
    assert not installed() and not account_exists(), "a moat package or account exists here already"
    with tempfile.TemporaryDirectory() as out:
        first = build(out)
        assert os.path.basename(first).startswith("moat_0.") and first.endswith(".deb")
        version = run(moat_bin(), "--version").stdout.split()[1]
        assert os.path.basename(first) == "moat_%s_%s.deb" % (
            version, run("dpkg", "--print-architecture").stdout.strip())
        second = build(out, version=version + "+1")
        # lintian: no errors and no warnings (overrides carry their reasons: packaging/debian). The debug
        # binary standing in finds the toolchain's Swift libraries by a RUNPATH into /opt/swift, which
        # lintian rightly flags; the release build links them statically and has none.
        lint = run("lintian", "--tag-display-limit", "0", "--suppress-tags", "custom-library-search-path", first,
                   check=False, timeout=600)
        tags = [line for line in lint.stdout.splitlines() if line[:2] in ("E:", "W:")]
        assert not tags and lint.returncode == 0, lint.stdout + lint.stderr
        server = None
        try:
            run("dpkg", "-i", first)
            assert installed()
            assert run("/usr/bin/moat", "--version").stdout.split()[1] == version
            entry = pwd.getpwnam("moat")
            assert entry.pw_uid < 1000 and entry.pw_shell in ("/usr/sbin/nologin", "/bin/false")
            conf = os.stat("/etc/moat/moat.conf")
            assert (conf.st_uid, grp.getgrgid(conf.st_gid).gr_name, conf.st_mode & 0o777) == (0, "moat", 0o640)
            assert run("dpkg-query", "-W", "-f=${Conffiles}", "moat").stdout.split()[0] == "/etc/moat/moat.conf"
            verify = run("systemd-analyze", "verify", "/lib/systemd/system/moat.service", check=False)
            assert verify.returncode == 0, verify.stdout + verify.stderr
            assert "/usr/bin/moat serve --config /etc/moat/moat.conf" in open("/lib/systemd/system/moat.service").read()
            assert run("man", "-l", "/usr/share/man/man1/moat.1.gz", env={**os.environ, "MANPAGER": "cat"}).stdout

            # The operator changes the configuration; the server, started as the package's account,
            # reads it from /etc/moat and answers on loopback.
            text = open("/etc/moat/moat.conf").read()
            assert "memory-limit: 64 " in text
            with open("/etc/moat/moat.conf", "w") as f:
                f.write(text.replace("memory-limit: 64 ", "memory-limit: 48 "))
            port = free_port()
            server = subprocess.Popen(
                ["runuser", "-u", "moat", "--", "/usr/bin/moat", "serve", "-p", str(port), "-o", "security_log=off"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            assert wait_until(lambda: _answers(port), 30), server.stderr.read1(4096) if server.poll() is not None else ""
            figures = stats(port)
            assert figures["limit_maxbytes"] == str(48 * 1024 * 1024)
            uid = os.stat("/proc/%s" % figures["pid"]).st_uid
            assert uid == entry.pw_uid
            server.terminate()
            server.wait(timeout=20)
            server = None

            # An upgrade keeps the changed conffile (its packaged text did not change) and the account.
            run("dpkg", "-i", "--force-confold", second)
            assert run("dpkg-query", "-W", "-f=${Version}", "moat").stdout == version + "+1"
            assert "memory-limit: 48 " in open("/etc/moat/moat.conf").read()
            assert pwd.getpwnam("moat").pw_uid == entry.pw_uid

            # A purge takes everything the package made.
            run("dpkg", "--purge", "moat")
            assert not installed()
            for path in ("/usr/bin/moat", "/etc/moat", "/lib/systemd/system/moat.service", "/var/lib/moat",
                         "/usr/share/doc/moat", "/usr/share/man/man1/moat.1.gz"):
                assert not os.path.exists(path), path
            assert not account_exists()
            with pytest.raises(KeyError):
                grp.getgrnam("moat")
        finally:
            if server is not None:
                server.kill()
                server.wait(timeout=10)
            if installed() or os.path.exists("/var/lib/dpkg/info/moat.list"):
                run("dpkg", "--purge", "moat", check=False)
            if account_exists():
                run("deluser", "--system", "moat", check=False)


def _answers(port):
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"version\r\n")
            return s.recv(100).startswith(b"VERSION")
    except OSError:
        return False
