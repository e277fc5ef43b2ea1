"""Alerting rules (packaging/prometheus/moat-alerts.yml): valid for Debian's promtool, each proven by
promtool's unit tests to fire on its case and stay quiet otherwise, every rule covered by those tests,
and every series and event they read served by the real server's metrics endpoint."""
import os
import re
import subprocess
import urllib.request

from moat_support import Conn, free_port

HERE = os.path.dirname(os.path.abspath(__file__))
RULES_DIR = os.path.join(HERE, "..", "..", "packaging", "prometheus")
RULES = os.path.join(RULES_DIR, "moat-alerts.yml")
TESTS = os.path.join(RULES_DIR, "moat-alerts.test.yml")


def promtool(*args):
    return subprocess.run(["promtool", *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=120)


def test_rules_are_valid():
    run = promtool("check", "rules", RULES)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS: 7 rules found" in run.stdout


def test_every_rule_fires_on_its_case_and_not_otherwise():
    run = promtool("test", "rules", TESTS)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def test_every_rule_has_a_firing_and_a_quiet_case():
    rules = set(re.findall(r"^\s+- alert: (\w+)$", open(RULES).read(), re.M))
    assert len(rules) == 7
    text = open(TESTS).read()
    # Each alert_rule_test entry: its alert name and whether it expects alerts.
    cases = re.findall(r"alertname: (\w+)\n\s+exp_alerts:( \[\])?", text)
    firing = {name for name, empty in cases if not empty}
    quiet = {name for name, empty in cases if empty}
    assert rules == firing, rules ^ firing
    assert rules == quiet, rules ^ quiet


def test_the_series_the_rules_read_are_served(server_factory):
    metrics_port = free_port()
    srv = server_factory.start(args=["-o", "metrics_port=%d" % metrics_port])
    with Conn.to(srv) as c:
        assert c.store(b"set", b"k", b"v") == b"STORED"
        c.get(b"k")
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics_port, timeout=10) as response:
        served = response.read().decode()
    rules = open(RULES).read()
    names = set(re.findall(r"\b((?:moat|memcached)_[a-z_]+)\b", rules))
    assert {"moat_security_events_total", "memcached_current_bytes", "moat_get_commands_total"} <= names
    for name in names:
        assert re.search(r"^%s[{ ]" % name, served, re.M), name
    for event in set(re.findall(r'event="(\w+)"', rules)):
        assert 'moat_security_events_total{event="%s"}' % event in served, event
    assert re.search(r'^memcached_commands_total\{command="get",status="hit"\} 1', served, re.M)
