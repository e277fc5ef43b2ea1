import MoatEngine
import Testing

/// Meta-command transcripts; the expected bytes are memcached 1.6.18's (CAS values aside).
@Suite struct SessionMetaTests {
    @Test func setThenGetWithFlagsInRequestOrder() {
        var t = Transcript()
        #expect(t.reply("ms foo 3 T0 F5 k O123\r\nbar\r\n") == "HD kfoo O123\r\n")
        #expect(t.reply("mg foo s v f t k O1 h l\r\n") == "VA 3 s3 f5 t-1 kfoo O1 h0 l0\r\nbar\r\n")
        #expect(t.reply("mg foo h\r\n") == "HD h1\r\n")
        #expect(t.reply("mg foo\r\n") == "HD\r\n")
    }

    @Test func quietModeHidesOnlyNominalReplies() {
        var t = Transcript()
        #expect(t.reply("ms k 1 q\r\na\r\nmg k q\r\nmg miss q v\r\nmn\r\n") == "HD\r\nMN\r\n")
        #expect(t.reply("md k q\r\nmd k q O7 k\r\nmn\r\n") == "NF O7 kk\r\nMN\r\n")
        #expect(t.reply("ma n q\r\nma n q N0 J4\r\nma n q\r\nmg n v\r\n") == "NF\r\nHD\r\nVA 1\r\n5\r\n")
        #expect(t.reply("mg k q zz\r\n") == "CLIENT_ERROR invalid flag\r\n")
    }

    @Test func missEchoesOpaqueAndKey() {
        var t = Transcript()
        #expect(t.reply("mg miss k O9 v\r\n") == "EN kmiss O9\r\n")
        #expect(t.reply("ma miss O1 k\r\n") == "NF O1 kmiss\r\n")
        #expect(t.reply("me miss\r\n") == "EN\r\n")
    }

    @Test func casFlowWithCompareAndExplicitCAS() {
        var t = Transcript()
        #expect(t.reply("ms k 1 E500 c\r\na\r\n") == "HD c500\r\n")
        #expect(t.reply("ms k 1 C1 c\r\nb\r\n") == "EX c0\r\n")
        #expect(t.reply("ms k 1 C500 c E600\r\nb\r\n") == "HD c600\r\n")
        #expect(t.reply("ms nope 1 C1\r\nb\r\n") == "NF\r\n")
        #expect(t.reply("md k C1\r\n") == "EX\r\n")
        #expect(t.reply("mg k c v\r\n") == "VA 1 c600\r\nb\r\n")
    }

    @Test func setModes() {
        var t = Transcript()
        #expect(t.reply("ms k 1 MR\r\na\r\n") == "NS\r\n")
        #expect(t.reply("ms k 1 ME\r\na\r\n") == "HD\r\n")
        #expect(t.reply("ms k 1 ME\r\nb\r\n") == "NS\r\n")
        #expect(t.reply("ms k 1 MA\r\nz\r\nms k 1 MP\r\n_\r\nms k 1 MS F3\r\nq\r\n") == "HD\r\nHD\r\nHD\r\n")
        #expect(t.reply("mg k v f\r\n") == "VA 1 f3\r\nq\r\n")
        #expect(t.reply("ms m 1 MA\r\nz\r\n") == "NS\r\n")
    }

    @Test func vivifyRecacheAndStale() {
        var t = Transcript()
        #expect(t.reply("mg vv N30 v t\r\n") == "VA 0 t30 W\r\n\r\n")
        #expect(t.reply("mg vv N30 v t\r\n") == "VA 0 t30 Z\r\n\r\n")
        #expect(t.reply("ms vv 3 T100\r\nnew\r\n") == "HD\r\n")
        #expect(t.reply("mg vv R30 t\r\nmg vv R200 t\r\nmg vv R200 t\r\n") == "HD t100\r\nHD t100 W\r\nHD t100 Z\r\n")
        #expect(t.reply("md vv I T30\r\n") == "HD\r\n")
        #expect(t.reply("mg vv v t\r\n") == "VA 3 t30 X W\r\nnew\r\n")
        #expect(t.reply("mg vv t\r\n") == "HD t30 Z X\r\n")
        #expect(t.reply("md vv x\r\nmg vv s\r\n") == "HD\r\nHD s0 Z X\r\n")
    }

    @Test func classicAndBinaryGetsLeaveTheRecacheTokenToMetaReaders() {
        var t = Transcript()
        #expect(t.reply("ms k 3 T100\r\nold\r\nmd k I\r\n") == "HD\r\nHD\r\n")
        // A classic get sees the stale value but cannot be told it won: the first mg still wins.
        #expect(t.reply("get k\r\n") == "VALUE k 0 3\r\nold\r\nEND\r\n")
        #expect(t.reply("mg k\r\nmg k\r\n") == "HD X W\r\nHD Z X\r\n")
    }

    @Test func arithmetic() {
        var t = Transcript()
        #expect(t.reply("ma cnt\r\n") == "NF\r\n")
        #expect(t.reply("ma cnt N0 J10 v\r\n") == "VA 2\r\n10\r\n")
        #expect(t.reply("ma cnt v t k O5\r\n") == "VA 2 t-1 kcnt O5\r\n11\r\n")
        #expect(t.reply("ma cnt MD D3 v\r\nma cnt M- D100 v\r\n") == "VA 1\r\n8\r\nVA 1\r\n0\r\n")
        #expect(t.reply("ma cnt C999 v\r\n") == "EX\r\n")
        #expect(t.reply("ma cnt T100 t v\r\n") == "VA 1 t100\r\n1\r\n")
        #expect(
            t.reply("ms txt 3\r\nabc\r\nma txt\r\n")
                == "HD\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\n")
    }

    @Test func base64Keys() {
        var t = Transcript()
        #expect(t.reply("ms Zm9vYg== 2 b k\r\nhi\r\n") == "HD kZm9vYg== b\r\n")
        #expect(t.reply("mg Zm9vYg== b k v\r\n") == "VA 2 kZm9vYg== b\r\nhi\r\n")
        #expect(t.reply("mg foob v\r\n") == "VA 2\r\nhi\r\n")
        // A key of bytes no text key may hold.
        #expect(t.reply("ms AAEK 1 b\r\nx\r\nmg AAEK b v k\r\n") == "HD\r\nVA 1 kAAEK b\r\nx\r\n")
        #expect(t.reply("mg Zm9v= b\r\n") == "CLIENT_ERROR error decoding key\r\n")
    }

    @Test func debugShowsOneItem() {
        var t = Transcript()
        _ = t.reply("ms k 3 T100\r\nabc\r\n")
        let line = t.reply("me k\r\n")
        #expect(line.hasPrefix("ME k exp=100 la=0 cas="))
        #expect(line.contains(" fetch=no cls=") && line.hasSuffix("\r\n"))
        _ = t.reply("mg k\r\n")
        #expect(t.reply("me k\r\n").contains("fetch=yes"))
    }

    @Test func tooLargeSetIsRefusedAndDropsTheOldValue() {
        var t = Transcript()
        _ = t.reply("ms k 1\r\na\r\n")
        let big = String(repeating: "x", count: 2 * 1024 * 1024)
        #expect(
            t.reply("ms k \(big.utf8.count) q\r\n\(big)\r\nmn\r\n")
                == "SERVER_ERROR object too large for cache\r\nMN\r\n")
        #expect(t.reply("mg k\r\n") == "EN\r\n")
    }

    @Test func countersFollowMemcached() {
        var t = Transcript()
        _ = t.reply("ms k 1\r\na\r\nmg k\r\nmg miss\r\nmg k T10\r\nmd k\r\nmd k\r\nma n\r\n")
        let stats = t.reply("stats\r\n")
        for line in [
            "STAT cmd_get 2\r\n", "STAT get_hits 1\r\n", "STAT get_misses 1\r\n", "STAT cmd_set 1\r\n",
            "STAT cmd_touch 1\r\n",
            "STAT touch_hits 1\r\n", "STAT delete_hits 1\r\n", "STAT delete_misses 1\r\n", "STAT incr_misses 1\r\n",
        ] {
            #expect(stats.contains(line), "\(line)")
        }
    }
}
