"""libmemcached's protocol conformance checker (memccapable), ASCII protocol only."""

import shutil
import subprocess

import pytest


def test_memccapable_ascii(server):
    exe = shutil.which("memccapable") or shutil.which("memcapable")
    if exe is None:
        pytest.fail("memccapable not installed (Debian package libmemcached-tools)")
    res = subprocess.run(
        [exe, "-a", "-t", "5", "-h", "127.0.0.1", "-p", str(server.port)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        timeout=120,
    )
    out = res.stdout.decode("utf-8", "replace")
    failed = [l for l in out.splitlines() if "fail" in l.lower() and "All tests passed" not in l]
    passed = [l for l in out.splitlines() if l.rstrip().endswith("[pass]")]
    assert res.returncode == 0, "memccapable rc=%d\n%s" % (res.returncode, out)
    assert not failed, "memccapable failures:\n%s" % "\n".join(failed)
    assert len(passed) >= 20, out
    assert "All tests passed" in out, out
