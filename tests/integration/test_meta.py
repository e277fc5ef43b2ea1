"""Meta commands (mg ms md ma mn me) over a real socket. The parity tests pass against memcached
1.6.18 too (MOAT_SERVER_CMD); CAS values differ between servers, so they are read, not assumed."""

import re

import pytest

from moat_support import Conn


def exchange(c, request, lines):
    """Send `request`, read `lines` reply lines."""
    c.send(request)
    return [c.readline() for _ in range(lines)]


def test_set_get_with_flags_in_order(server):
    with Conn.to(server) as c:
        assert c.cmd(b"ms foo 3 T0 F5 k O123\r\nbar") == b"HD kfoo O123"
        # l: seconds since the last access; the server's one-second clock may tick between the two requests.
        assert exchange(c, b"mg foo s v f t k O1 h l\r\n", 2) in (
            [b"VA 3 s3 f5 t-1 kfoo O1 h0 l0", b"bar"], [b"VA 3 s3 f5 t-1 kfoo O1 h0 l1", b"bar"])
        assert c.cmd(b"mg foo h") == b"HD h1"
        assert c.cmd(b"mg miss k O9 v") == b"EN kmiss O9"


def test_quiet_batch_ends_with_mn(server):
    with Conn.to(server) as c:
        c.send(b"ms k 1 q\r\na\r\nmg k q\r\nmg miss q v\r\nmd miss q O7 k\r\nmd k q\r\nmn\r\n")
        assert [c.readline() for _ in range(3)] == [b"HD", b"NF O7 kmiss", b"MN"]


def test_cas_compare(server):
    with Conn.to(server) as c:
        reply = c.cmd(b"ms k 1 c\r\na")
        cas = int(re.match(rb"HD c(\d+)$", reply).group(1))
        assert c.cmd(b"ms k 1 C%d\r\nb" % (cas + 1000)) == b"EX"
        assert c.cmd(b"ms k 1 C%d\r\nb" % cas) == b"HD"
        assert c.cmd(b"ms nope 1 C1\r\nb") == b"NF"
        assert c.cmd(b"md k C1") == b"EX"
        assert c.cmd(b"md k") == b"HD"
        assert c.cmd(b"md k") == b"NF"


def test_set_modes(server):
    with Conn.to(server) as c:
        assert c.cmd(b"ms k 1 MR\r\na") == b"NS"
        assert c.cmd(b"ms k 1 ME\r\na") == b"HD"
        assert c.cmd(b"ms k 1 ME\r\nb") == b"NS"
        assert c.cmd(b"ms k 1 MA\r\nz") == b"HD"
        assert c.cmd(b"ms k 1 MP\r\n_") == b"HD"
        assert exchange(c, b"mg k v\r\n", 2) == [b"VA 3", b"_az"]
        assert c.cmd(b"ms k 1 MX\r\na") == b"CLIENT_ERROR invalid mode for ms M token"
        assert c.cmd(b"mn") == b"MN"


def test_arithmetic(server):
    with Conn.to(server) as c:
        assert c.cmd(b"ma cnt") == b"NF"
        assert exchange(c, b"ma cnt N0 J10 v\r\n", 2) == [b"VA 2", b"10"]
        assert exchange(c, b"ma cnt v t k O5\r\n", 2) == [b"VA 2 t-1 kcnt O5", b"11"]
        assert exchange(c, b"ma cnt MD D3 v\r\n", 2) == [b"VA 1", b"8"]
        assert exchange(c, b"ma cnt M- D100 v\r\n", 2) == [b"VA 1", b"0"]
        assert c.cmd(b"ma cnt C999999 v") == b"EX"
        assert c.cmd(b"ma cnt MX") == b"CLIENT_ERROR invalid mode for ma M token"
        assert c.cmd(b"ms txt 3\r\nabc") == b"HD"
        assert c.cmd(b"ma txt") == b"CLIENT_ERROR cannot increment or decrement non-numeric value"


def ticked(reply):
    """Remaining TTLs read one second later than set (the server's clock ticks once a second) count
    as on time: t29 is t30 and t99 is t100 here."""
    fix = lambda line: re.sub(rb" t(29|99)(?= |$)", lambda m: b" t%d" % (int(m.group(1)) + 1), line)
    return [fix(reply[0])] + reply[1:] if isinstance(reply, list) else fix(reply)


def test_vivify_recache_and_stale(server):
    with Conn.to(server) as c:
        assert ticked(exchange(c, b"mg vv N30 v t\r\n", 2)) == [b"VA 0 t30 W", b""]
        assert ticked(exchange(c, b"mg vv N30 v t\r\n", 2)) == [b"VA 0 t30 Z", b""]
        assert c.cmd(b"ms vv 3 T100\r\nnew") == b"HD"
        assert ticked(c.cmd(b"mg vv R30 t")) == b"HD t100"
        assert ticked(c.cmd(b"mg vv R200 t")) == b"HD t100 W"
        assert ticked(c.cmd(b"mg vv R200 t")) == b"HD t100 Z"
        assert c.cmd(b"md vv I T30") == b"HD"
        assert ticked(exchange(c, b"mg vv v t\r\n", 2)) == [b"VA 3 t30 X W", b"new"]
        assert ticked(c.cmd(b"mg vv t")) == b"HD t30 Z X"


def test_a_classic_get_leaves_the_recache_token_to_mg(server):
    """A stale item (md I) is still served by get, but only mg hands out its win token: the first mg
    after a get wins it (memcached 1.6.18 alike)."""
    with Conn.to(server) as c:
        assert c.cmd(b"ms k 3 T100\r\nold") == b"HD"
        assert c.cmd(b"md k I") == b"HD"
        assert c.get(b"k") == b"old"
        assert c.cmd(b"mg k") == b"HD X W"
        assert c.cmd(b"mg k") == b"HD Z X"


def test_base64_keys(server):
    with Conn.to(server) as c:
        assert c.cmd(b"ms Zm9vYg== 2 b k\r\nhi") == b"HD kZm9vYg== b"
        assert exchange(c, b"mg Zm9vYg== b k v\r\n", 2) == [b"VA 2 kZm9vYg== b", b"hi"]
        assert exchange(c, b"mg foob v\r\n", 2) == [b"VA 2", b"hi"]
        assert c.cmd(b"mg Zm9v= b") == b"CLIENT_ERROR error decoding key"


def test_errors(server):
    with Conn.to(server) as c:
        assert c.cmd(b"mg") == b"ERROR"
        assert c.cmd(b"me") == b"CLIENT_ERROR bad command line format"
        assert c.cmd(b"mg foo zz") == b"CLIENT_ERROR invalid flag"
        assert c.cmd(b"mg foo v v") == b"CLIENT_ERROR duplicate flag"
        assert c.cmd(b"md foo zz") == b"CLIENT_ERROR invalid or duplicate flag"
        assert c.cmd(b"mg foo Tx") == b"CLIENT_ERROR bad token in command line format"
        assert c.cmd(b"mg foo O" + b"x" * 40) == b"CLIENT_ERROR opaque token too long"
        assert c.cmd(b"mg " + b"k" * 251 + b" v") == b"CLIENT_ERROR bad command line format"
        assert c.cmd(b"mg foo " + b" ".join([b"P"] * 18)) == b"CLIENT_ERROR options flags are too long"
        # A refused ms swallows its data block.
        assert c.cmd(b"ms foo 3 MEE\r\nmn ") == b"CLIENT_ERROR incorrect length for M token"
        assert c.cmd(b"mn") == b"MN"
        # An unreadable length hides the data block: the reply is the same, then Moat closes
        # (test_adversarial_frame.py; memcached reads the block as commands).
        assert c.cmd(b"ms foo x") == b"CLIENT_ERROR bad command line format"


def test_too_large_set(server):
    with Conn.to(server) as c:
        assert c.cmd(b"ms k 1\r\na") == b"HD"
        big = b"x" * (2 * 1024 * 1024)
        c.send(b"ms k %d\r\n" % len(big) + big + b"\r\n")
        assert c.readline() == b"SERVER_ERROR object too large for cache"
        assert c.cmd(b"mg k") == b"EN"


def test_debug_one_item(server):
    with Conn.to(server) as c:
        assert c.cmd(b"me nokey") == b"EN"
        assert c.cmd(b"ms k 3\r\nabc") == b"HD"
        line = c.cmd(b"me k")
        assert re.match(rb"ME k exp=-1 la=0 cas=\d+ fetch=no cls=\d+ size=\d+$", line), line


@pytest.mark.moat_only
def test_debug_exp_is_time_left(server):
    # memcached 1.6.18 prints the negated TTL here; later versions print the time left, as Moat does.
    with Conn.to(server) as c:
        assert c.cmd(b"ms k 3 T100\r\nabc") == b"HD"
        assert c.cmd(b"me k").startswith(b"ME k exp=100 ")


@pytest.mark.moat_only
def test_explicit_cas_and_value_removal(server):
    # E (explicit CAS) and md x came after memcached 1.6.18, which answers "invalid flag".
    with Conn.to(server) as c:
        assert c.cmd(b"ms k 3 E500 c\r\nabc") == b"HD c500"
        assert c.cmd(b"md k x") == b"HD"
        assert c.cmd(b"mg k s") == b"HD s0"


def test_stats_count_meta_commands(server):
    with Conn.to(server) as c:
        c.send(b"ms k 1\r\na\r\nmg k\r\nmg miss\r\nmd k\r\nmn\r\n")
        assert [c.readline() for _ in range(5)] == [b"HD", b"HD", b"EN", b"HD", b"MN"]
        stats = c.stats_dict()
        assert stats["cmd_get"] == "2" and stats["get_hits"] == "1" and stats["get_misses"] == "1"
        assert stats["cmd_set"] == "1" and stats["delete_hits"] == "1"
