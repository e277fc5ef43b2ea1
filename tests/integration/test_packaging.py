"""The shipped packaging: the systemd unit passes `systemd-analyze verify` and the default configuration
file starts a server with the settings it documents."""

import json
import os
import shutil
import subprocess

import pytest

from moat_support import REPO_ROOT, Conn, moat_bin

pytestmark = pytest.mark.moat_only


def test_systemd_unit_verifies(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.fail("systemd-analyze is not installed")
    text = open(os.path.join(REPO_ROOT, "packaging", "moat.service")).read()
    assert "ExecStart=/usr/local/bin/moat serve --config /etc/moat/moat.conf" in text
    for hardening in ("NoNewPrivileges=yes", "CapabilityBoundingSet=\n", "ProtectSystem=strict", "PrivateTmp=yes",
                      "MemoryDenyWriteExecute=yes", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "User=moat",
                      "StateDirectory=moat\nStateDirectoryMode=0700"):
        assert hardening in text, hardening
    unit = tmp_path / "moat.service"
    unit.write_text(text.replace("/usr/local/bin/moat", moat_bin()))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr


def test_default_configuration_file_starts_the_documented_server(server_factory):
    srv = server_factory.start(args=["--config", os.path.join(REPO_ROOT, "packaging", "moat.conf")])
    with Conn.to(srv) as c:
        settings = c.stats_dict(b"settings")
        assert settings["maxbytes"] == str(64 * 1024 * 1024)
        assert c.store(b"set", b"k", b"v") == b"STORED"


def test_etc_moat_moat_conf_is_read_unless_no_config(server_factory):
    """`moat serve` with no --config reads /etc/moat/moat.conf; --no-config skips it. The test writes
    the file only where none exists (CI's fresh machines) and removes it again."""
    path = "/etc/moat/moat.conf"
    if os.path.exists(path):
        pytest.skip("%s exists on this machine; the test does not touch a real configuration" % path)
    if os.geteuid() != 0:
        pytest.skip("writing /etc/moat needs root (CI runs as root)")
    created_dir = not os.path.isdir("/etc/moat")
    os.makedirs("/etc/moat", exist_ok=True)
    try:
        with open(path, "w") as f:
            f.write("server:\n  memory-limit: 17\n  extended: [security_log=off]\n")
        os.chmod(path, 0o644)
        srv = server_factory.start()  # the harness passes no --config
        with Conn.to(srv) as c:
            assert c.stats_dict(b"settings")["maxbytes"] == str(17 * 1024 * 1024)
        skipped = server_factory.start(args=["--no-config"])
        with Conn.to(skipped) as c:
            assert c.stats_dict(b"settings")["maxbytes"] == str(64 * 1024 * 1024)
        # moat check reads it the same way.
        check = subprocess.run([moat_bin(), "check", "--format", "json"], capture_output=True, timeout=30)
        found = [(f["name"], f["subject"]) for f in json.loads(check.stdout)["findings"]]
        assert check.returncode == 0 and found == [("security-log-off", path)], check.stdout
    finally:
        os.unlink(path)
        if created_dir:
            os.rmdir("/etc/moat")
