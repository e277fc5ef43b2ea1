"""The shipped packaging: the systemd unit passes `systemd-analyze verify` and the default configuration
file starts a server with the settings it documents."""

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
                      "MemoryDenyWriteExecute=yes", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "User=moat"):
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
