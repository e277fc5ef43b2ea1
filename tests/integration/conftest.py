"""pytest fixtures and hooks for Moat's integration tests (see moat_support.py for the environment variables)."""

import pytest

from moat_support import IS_MOAT, RUN_ALL, ServerFactory


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "moat_only: Moat-specific behaviour (skipped when MOAT_SERVER_CMD selects another server)",
    )


def pytest_collection_modifyitems(config, items):
    if IS_MOAT or RUN_ALL:
        return
    skip = pytest.mark.skip(reason="Moat-only behaviour; MOAT_SERVER_CMD selects another server")
    for item in items:
        if "moat_only" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for srv in getattr(item, "_moat_servers", []):
            rep.sections.append(
                ("server stderr: %s" % " ".join(srv.cmd), srv.stderr_text()[-8000:] or "(empty)")
            )


@pytest.fixture
def server_factory(request):
    f = ServerFactory(request)
    try:
        yield f
    finally:
        f.close()


@pytest.fixture
def server(server_factory):
    """A server with default flags on 127.0.0.1:<free port>."""
    return server_factory.start()
