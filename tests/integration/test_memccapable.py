"""libmemcached's protocol conformance checker (memccapable), one run per protocol."""

import shutil
import subprocess

import pytest


def run_memccapable(server, protocol_flag, minimum_passes):
    """Runs memccapable with `-a` (ASCII) or `-b` (binary) and asserts that every test passed."""
    exe = shutil.which("memccapable") or shutil.which("memcapable")
    if exe is None:
        pytest.fail("memccapable not installed (Debian package libmemcached-tools)")
    res = subprocess.run(
        [exe, protocol_flag, "-t", "5", "-h", "127.0.0.1", "-p", str(server.port)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        timeout=120,
    )
    out = res.stdout.decode("utf-8", "replace")
    failed = [l for l in out.splitlines() if "fail" in l.lower() and "All tests passed" not in l]
    passed = [l for l in out.splitlines() if l.rstrip().endswith("[pass]")]
    assert res.returncode == 0, "memccapable rc=%d\n%s" % (res.returncode, out)
    assert not failed, "memccapable failures:\n%s" % "\n".join(failed)
    assert len(passed) >= minimum_passes, out
    assert "All tests passed" in out, out


def test_memccapable_ascii(server):
    run_memccapable(server, "-a", 20)


def test_memccapable_binary(server):
    run_memccapable(server, "-b", 25)
