"""`moat firewall`: the generated rules are accepted by the kernel tools (`nft -c -f`,
`iptables-restore --test`, `ip6tables-restore --test`, firewalld's own rich-rule parser), and the
nftables rules work: in two network namespaces made here (a veth pair, 198.18.0.0/15 benchmarking
addresses, no route out), Moat serves 198.18.0.1 with an allow list naming 198.18.0.2; once the rules
are loaded, 198.18.0.2 still connects over TCP and UDP while 198.18.0.3's packets are dropped by the
kernel (no SYN-ACK, the drop counters move) where before Moat itself had to accept and close. The
iptables output is applied there too and removed with the commands its header gives."""

import contextlib
import json
import shutil
import subprocess
import textwrap

import pytest

from moat_support import EXTRA_ARGS, moat_bin, run_ok, veth_pair, wait_until

pytestmark = pytest.mark.moat_only

SERVER, ALLOWED, OTHER = "198.18.0.1", "198.18.0.2", "198.18.0.3"
TCP_PORT, UDP_PORT = 11211, 11212
FLAGS = ["--no-config", "-l", SERVER, "-p", str(TCP_PORT), "-o", "allow=%s" % ALLOWED, "-U", str(UDP_PORT)]


def firewall(fmt, *flags):
    r = subprocess.run([moat_bin(), "firewall", "--format", fmt, *flags], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode()


CONFIGURATIONS = [
    FLAGS,
    ["--no-config"],
    ["--no-config", "-l", "0.0.0.0", "-l", "::", "-o", "allow=10.0.0.0/8,allow=fd00::/8,deny=10.9.0.0/16", "-U", "11300"],
    ["--no-config", "-l", "198.18.0.1", "-l", "[fd00::1]", "-o", "allow=198.18.0.0/24,allow=fd00::/64", "-o", "metrics_port=9150,metrics_listen=198.18.0.1"],
    ["--no-config", "-l", "localhost", "-o", "deny=127.0.0.9"],
]


@pytest.mark.parametrize("flags", CONFIGURATIONS, ids=range(len(CONFIGURATIONS)))
def test_rules_pass_the_kernel_tools_checks(flags):
    for tool in ("nft", "iptables-restore", "ip6tables-restore"):
        if not shutil.which(tool):
            pytest.fail("%s is not installed (scripts/test.sh installs nftables and iptables)" % tool)
    nft = firewall("nftables", *flags)
    run_ok(["nft", "-c", "-f", "-"], nft.encode())
    v4 = firewall("iptables", *flags)
    v6 = firewall("ip6tables", *flags)
    assert "*filter" in v4 or "*filter" in v6 or "nothing to filter" in v4, (v4, v6)
    if "*filter" in v4:
        run_ok(["iptables-restore", "--test", "--noflush"], v4.encode())
    if "*filter" in v6:
        run_ok(["ip6tables-restore", "--test", "--noflush"], v6.encode())


RICH_RULE_CHECK = textwrap.dedent("""
    import sys
    from firewall.core.rich import Rich_Rule
    for line in sys.stdin.read().splitlines():
        assert str(Rich_Rule(rule_str=line)) == line, line
    """)


@pytest.mark.parametrize("flags", CONFIGURATIONS, ids=range(len(CONFIGURATIONS)))
def test_firewalld_rich_rules_parse(flags):
    # firewalld's parser is Debian's python3-firewall, importable by the system Python only.
    system_python = "/usr/bin/python3"
    probe = subprocess.run([system_python, "-c", "import firewall.core.rich"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.fail("firewalld's rich-rule parser (Debian's python3-firewall) is not installed; scripts/test.sh installs it")
    text = firewall("firewalld", *flags)
    rich = [line.split("'")[1] for line in text.splitlines() if "--add-rich-rule=" in line]
    if not rich:
        assert "nothing to add: every listener is on loopback" in text, text
        return
    assert text.rstrip().endswith("firewall-cmd --reload"), text
    run_ok([system_python, "-c", RICH_RULE_CHECK], "\n".join(rich).encode())


# ---------------------------------------------------------------- network namespaces

CLIENT_SCRIPT = textwrap.dedent("""
    import json, socket, sys
    source, target, tcp_port, udp_port = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    result = {}
    s = socket.socket()
    s.settimeout(2)
    s.bind((source, 0))
    try:
        s.connect((target, tcp_port))
        result["tcp"] = "connected"
        try:
            s.sendall(b"version\\r\\n")
            result["reply"] = s.recv(100).decode()
        except OSError as e:
            result["reply"] = "error: %s" % e
    except socket.timeout:
        result["tcp"] = "timeout"
    except OSError as e:
        result["tcp"] = "error: %s" % e
    s.close()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(1)
    u.bind((source, 0))
    u.sendto(b"\\x00\\x01\\x00\\x00\\x00\\x01\\x00\\x00get k\\r\\n", (target, udp_port))
    try:
        result["udp"] = u.recv(2000)[8:].decode()
    except socket.timeout:
        result["udp"] = None
    print(json.dumps(result))
    """)


@pytest.fixture
def namespaces():
    with veth_pair("moatfw", "mf") as (server, client, veth_s, veth_c):
        for ns, dev, addresses in ((server, veth_s, [SERVER]), (client, veth_c, [ALLOWED, OTHER])):
            for address in addresses:
                run_ok(["ip", "-n", ns, "addr", "add", address + "/24", "dev", dev])
        yield server, client


def probe(client, source):
    r = run_ok(["ip", "netns", "exec", client, "python3", "-c", CLIENT_SCRIPT, source, SERVER, str(TCP_PORT), str(UDP_PORT)])
    return json.loads(r.stdout)


def drops(server):
    """The nft drop counters' packets, summed."""
    out = run_ok(["ip", "netns", "exec", server, "nft", "-j", "list", "table", "inet", "moat"]).stdout
    total = 0
    for item in json.loads(out)["nftables"]:
        for expr in item.get("rule", {}).get("expr", []):
            if "counter" in expr:
                total += expr["counter"]["packets"]
    return total


@contextlib.contextmanager
def moat_serving(server, client, tmp_path, flags, ready_from):
    """Moat in the server namespace until the block ends (stopped even when it fails); MOAT_EXTRA_ARGS picks the backend."""
    log = open(tmp_path / "moat.log", "wb")
    moat = subprocess.Popen(["ip", "netns", "exec", server, moat_bin(), "serve", *flags, *EXTRA_ARGS], stdout=log, stderr=log)
    try:
        assert wait_until(lambda: probe(client, ready_from)["tcp"] == "connected", 10), (tmp_path / "moat.log").read_text()
        yield
    finally:
        moat.terminate()
        try:
            moat.wait(15)
        except subprocess.TimeoutExpired:
            moat.kill()
            moat.wait(10)
        log.close()


def moat_in(server, client, tmp_path):
    """Moat serving FLAGS in the server namespace until the block ends."""
    return moat_serving(server, client, tmp_path, FLAGS, ALLOWED)


def test_nftables_rules_drop_what_moat_refuses_in_a_namespace(namespaces, tmp_path):
    server, client = namespaces
    with moat_in(server, client, tmp_path):
        # Without rules: Moat itself refuses 198.18.0.3, after the kernel has completed the handshake.
        before = probe(client, OTHER)
        assert before["tcp"] == "connected" and not before["reply"].startswith("VERSION"), before  # closed (or reset) unanswered
        assert before["udp"] is None  # Moat's UDP ignores sources off the allow list

        rules = tmp_path / "moat.nft"
        rules.write_text(firewall("nftables", *FLAGS))
        run_ok(["ip", "netns", "exec", server, "nft", "-f", str(rules)])

        allowed = probe(client, ALLOWED)
        assert allowed["tcp"] == "connected" and allowed["reply"].startswith("VERSION "), allowed
        assert allowed["udp"] == "END\r\n", allowed
        assert drops(server) == 0

        other = probe(client, OTHER)
        assert other == {"tcp": "timeout", "udp": None}, other
        assert drops(server) >= 2  # the SYN (and its retransmissions) and the datagram died in the kernel
        # Applying again replaces the table rather than adding a second copy.
        run_ok(["ip", "netns", "exec", server, "nft", "-f", str(rules)])
        out = run_ok(["ip", "netns", "exec", server, "nft", "list", "tables"]).stdout.decode()
        assert out.count("table inet moat") == 1
        assert probe(client, ALLOWED)["reply"].startswith("VERSION ")

        # The removal the header gives leaves Moat alone to refuse 198.18.0.3 again.
        run_ok(["ip", "netns", "exec", server, "nft", "delete", "table", "inet", "moat"])
        assert probe(client, OTHER)["tcp"] == "connected"


def test_iptables_rules_drop_what_moat_refuses_and_come_off_as_documented(namespaces, tmp_path):
    server, client = namespaces
    with moat_in(server, client, tmp_path):
        text = firewall("iptables", *FLAGS)
        run_ok(["ip", "netns", "exec", server, "iptables-restore", "--noflush"], text.encode())

        allowed = probe(client, ALLOWED)
        assert allowed["tcp"] == "connected" and allowed["reply"].startswith("VERSION "), allowed
        assert allowed["udp"] == "END\r\n", allowed
        other = probe(client, OTHER)
        assert other == {"tcp": "timeout", "udp": None}, other

        # Run the header's removal commands, as an operator would.
        removal = [line[len("#   "):] for line in text.splitlines() if line.startswith("#   iptables ")]
        assert removal and removal[-1] == "iptables -X MOAT-INPUT", text
        for command in removal:
            run_ok(["ip", "netns", "exec", server, *command.split()])
        listed = run_ok(["ip", "netns", "exec", server, "iptables", "-S"]).stdout.decode()
        assert "MOAT-INPUT" not in listed, listed
        assert probe(client, OTHER)["tcp"] == "connected"
