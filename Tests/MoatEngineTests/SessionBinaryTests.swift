import MoatEngine
import MoatProtocol
import MoatStorage
import NIOCore
import Testing

/// A binary request: header, then extras, key and value.
func request(
    _ opcode: UInt8, key: String = "", extras: [UInt8] = [], value: [UInt8] = [], opaque: UInt32 = 0, cas: UInt64 = 0,
    bodyLength: UInt32? = nil
) -> [UInt8] {
    let k = Array(key.utf8)
    var out: [UInt8] = [0x80, opcode, UInt8(k.count >> 8), UInt8(k.count & 0xff), UInt8(extras.count), 0, 0, 0]
    out += be(bodyLength ?? UInt32(extras.count + k.count + value.count))
    out += be(opaque)
    out += be(cas)
    return out + extras + k + value
}

func be<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.bigEndian, Array.init) }
func setExtras(flags: UInt32 = 0, exptime: UInt32 = 0) -> [UInt8] { be(flags) + be(exptime) }
private func incrExtras(_ delta: UInt64, initial: UInt64 = 0, exptime: UInt32 = 0) -> [UInt8] {
    be(delta) + be(initial) + be(exptime)
}

/// A decoded response.
struct Response: Equatable {
    var opcode: UInt8
    var status: UInt16
    var opaque: UInt32
    var cas: UInt64
    var extras: [UInt8]
    var key: [UInt8]
    var value: [UInt8]
    var text: String { String(decoding: value, as: UTF8.self) }
}

func parse(_ bytes: [UInt8]) -> [Response] {
    var responses: [Response] = []
    var i = 0
    func int<T: FixedWidthInteger>(_ at: Int, _: T.Type) -> T {
        bytes[at..<(at + MemoryLayout<T>.size)].reduce(T(0)) { ($0 << 8) | T($1) }
    }
    while i + 24 <= bytes.count {
        precondition(bytes[i] == 0x81, "bad response magic")
        let keyLength = Int(int(i + 2, UInt16.self))
        let extrasLength = Int(bytes[i + 4])
        let bodyLength = Int(int(i + 8, UInt32.self))
        let body = Array(bytes[(i + 24)..<(i + 24 + bodyLength)])
        responses.append(
            Response(
                opcode: bytes[i + 1], status: int(i + 6, UInt16.self), opaque: int(i + 12, UInt32.self),
                cas: int(i + 16, UInt64.self),
                extras: Array(body[0..<extrasLength]), key: Array(body[extrasLength..<(extrasLength + keyLength)]),
                value: Array(body[(extrasLength + keyLength)...])))
        i += 24 + bodyLength
    }
    precondition(i == bytes.count, "trailing bytes")
    return responses
}

private struct BinaryTranscript {
    var session: Session
    let engine: Engine

    init(settings: EngineSettings = EngineSettings(), maxItemSize: Int = 1024 * 1024) {
        var settings = settings
        settings.limits.maxItemSize = maxItemSize
        let cache = Cache(configuration: CacheConfiguration(memoryLimit: 8 * 1024 * 1024, maxItemSize: maxItemSize))
        engine = Engine(cache: cache, settings: settings)
        session = engine.makeSession()
    }

    mutating func send(_ bytes: [UInt8], chunk: Int = 0) -> ([UInt8], SessionAction) {
        let result = drive(&session, bytes, chunk: chunk)
        return (result.replies, result.action)
    }

    mutating func responses(_ bytes: [UInt8], chunk: Int = 0) -> [Response] { parse(send(bytes, chunk: chunk).0) }
    mutating func one(_ bytes: [UInt8]) -> Response {
        let all = responses(bytes)
        precondition(all.count == 1, "expected one response, got \(all.count)")
        return all[0]
    }
}

@Suite struct SessionBinaryTests {
    @Test func setGetRoundTripWithFlagsOpaqueAndCAS() {
        var t = BinaryTranscript()
        let stored = t.one(request(0x01, key: "k", extras: setExtras(flags: 7), value: Array("abc".utf8), opaque: 11))
        #expect(stored.status == 0 && stored.opaque == 11 && stored.cas != 0 && stored.value.isEmpty)
        let hit = t.one(request(0x00, key: "k", opaque: 12))
        #expect(hit.status == 0 && hit.opaque == 12 && hit.cas == stored.cas)
        #expect(hit.extras == be(UInt32(7)) && hit.key.isEmpty && hit.text == "abc")
        let withKey = t.one(request(0x0c, key: "k"))
        #expect(withKey.key == Array("k".utf8) && withKey.text == "abc")
        let miss = t.one(request(0x00, key: "nope"))
        #expect(miss.status == 1 && miss.text == "Not found")
        let missK = t.one(request(0x0c, key: "nope"))
        #expect(missK.status == 1 && missK.key == Array("nope".utf8))
        // The text protocol sees the same item.
        #expect(t.engine.cache.get(Array("k".utf8))?.value == Array("abc".utf8))
    }

    @Test func quietCommandsFollowMemcached() {
        var t = BinaryTranscript()
        let batch =
            request(0x11, key: "a", extras: setExtras(), value: [0x31], opaque: 1)  // setq: silent
            + request(0x09, key: "missing", opaque: 2)  // getq miss: silent
            + request(0x09, key: "a", opaque: 3)  // getq hit: answered
            + request(0x0d, key: "a", opaque: 4)  // getkq hit: answered with key
            + request(0x12, key: "a", extras: setExtras(), value: [0x32], opaque: 5)  // addq on existing: error sent
            + request(0x14, key: "missing", opaque: 6)  // deleteq miss: error sent
            + request(0x15, key: "a", extras: incrExtras(1), opaque: 7)  // incrq: silent
            + request(0x0a, opaque: 8)  // noop
        let replies = t.responses(batch)
        #expect(replies.map(\.opaque) == [3, 4, 5, 6, 8])
        #expect(replies.map(\.status) == [0, 0, 2, 1, 0])
        #expect(replies[1].key == Array("a".utf8))
        #expect(t.one(request(0x00, key: "a")).text == "2")
    }

    @Test func casIsHonoured() {
        var t = BinaryTranscript()
        let cas = t.one(request(0x01, key: "k", extras: setExtras(), value: [0x61])).cas
        #expect(t.one(request(0x01, key: "k", extras: setExtras(), value: [0x62], cas: cas + 1)).status == 2)
        let swapped = t.one(request(0x01, key: "k", extras: setExtras(), value: [0x63], cas: cas))
        #expect(swapped.status == 0 && swapped.cas != cas)
        #expect(t.one(request(0x01, key: "gone", extras: setExtras(), value: [0x63], cas: 5)).status == 1)
        #expect(t.one(request(0x03, key: "k", extras: setExtras(), value: [0x64], cas: cas)).status == 2)
        #expect(t.one(request(0x0e, key: "k", value: [0x2b], cas: cas)).status == 2)
        let appended = t.one(request(0x0e, key: "k", value: [0x2b], cas: swapped.cas))
        #expect(appended.status == 0)
        #expect(t.one(request(0x04, key: "k", cas: swapped.cas)).status == 2)
        #expect(t.one(request(0x04, key: "k", cas: appended.cas)).status == 0)
        _ = t.one(request(0x01, key: "n", extras: setExtras(), value: Array("10".utf8)))
        #expect(t.one(request(0x05, key: "n", extras: incrExtras(1), cas: 1)).status == 2)
    }

    @Test func storageStatusesMatchMemcached() {
        var t = BinaryTranscript()
        #expect(t.one(request(0x03, key: "k", extras: setExtras(), value: [0x61])).status == 1)  // replace missing
        #expect(t.one(request(0x02, key: "k", extras: setExtras(), value: [0x61])).status == 0)
        #expect(t.one(request(0x02, key: "k", extras: setExtras(), value: [0x61])).status == 2)  // add existing
        #expect(t.one(request(0x0e, key: "missing", value: [0x61])).status == 5)  // append missing
        _ = t.one(request(0x0f, key: "k", value: Array("<".utf8)))
        #expect(t.one(request(0x00, key: "k")).text == "<a")
    }

    @Test func incrementDecrementAndCreation() {
        var t = BinaryTranscript()
        // Missing with exptime 0xffffffff: not found, nothing created.
        #expect(t.one(request(0x05, key: "n", extras: incrExtras(1, initial: 5, exptime: 0xffff_ffff))).status == 1)
        // Missing otherwise: created with the initial value.
        let created = t.one(request(0x05, key: "n", extras: incrExtras(1, initial: 5)))
        #expect(created.status == 0 && created.value == be(UInt64(5)) && created.cas != 0)
        #expect(t.one(request(0x05, key: "n", extras: incrExtras(10))).value == be(UInt64(15)))
        #expect(t.one(request(0x06, key: "n", extras: incrExtras(100))).value == be(UInt64(0)))
        _ = t.one(request(0x01, key: "s", extras: setExtras(), value: Array("abc".utf8)))
        #expect(t.one(request(0x05, key: "s", extras: incrExtras(1))).status == 6)
    }

    @Test func countersFollowMemcached() {
        var t = BinaryTranscript()
        // A counter created on a miss is neither a hit nor a miss; a delete whose CAS differs is no miss.
        _ = t.one(request(0x05, key: "n", extras: incrExtras(1, initial: 5)))
        _ = t.one(request(0x05, key: "n", extras: incrExtras(1)))
        _ = t.one(request(0x05, key: "gone", extras: incrExtras(1, exptime: 0xffff_ffff)))
        let cas = t.one(request(0x01, key: "k", extras: setExtras(), value: [0x61])).cas
        #expect(t.one(request(0x04, key: "k", cas: cas + 1)).status == 2)
        _ = t.one(request(0x04, key: "gone"))
        // A gat counts as a get and a touch; a CAS store counts as a CAS.
        _ = t.one(request(0x1d, key: "k", extras: be(UInt32(100))))
        _ = t.one(request(0x01, key: "k", extras: setExtras(), value: [0x62], cas: cas))
        let stats = t.responses(request(0x10))
        func stat(_ name: String) -> String? { stats.first { $0.key == Array(name.utf8) }?.text }
        #expect(stat("incr_hits") == "1" && stat("incr_misses") == "1")
        #expect(stat("delete_misses") == "1" && stat("delete_hits") == "0")
        #expect(stat("cmd_get") == "1" && stat("get_hits") == "1" && stat("cmd_touch") == "1")
        #expect(stat("touch_hits") == "1" && stat("cas_hits") == "1" && stat("cmd_set") == "2")
    }

    @Test func touchGatFlushVersionStatAndVerbosity() {
        var t = BinaryTranscript()
        _ = t.one(request(0x01, key: "k", extras: setExtras(flags: 3), value: [0x61]))
        let touched = t.one(request(0x1c, key: "k", extras: be(UInt32(100))))
        #expect(touched.status == 0 && touched.extras == be(UInt32(3)) && touched.value.isEmpty)
        #expect(t.one(request(0x1c, key: "nope", extras: be(UInt32(100)))).status == 1)
        let gat = t.one(request(0x23, key: "k", extras: be(UInt32(100))))
        #expect(gat.key == Array("k".utf8) && gat.text == "a")
        #expect(t.responses(request(0x1e, key: "nope", extras: be(UInt32(1)))).isEmpty)
        #expect(t.one(request(0x0b)).text == t.engine.settings.version)
        let stats = t.responses(request(0x10, opaque: 9))
        #expect(stats.last == Response(opcode: 0x10, status: 0, opaque: 9, cas: 0, extras: [], key: [], value: []))
        #expect(stats.contains { $0.key == Array("cmd_get".utf8) && $0.text == "2" })
        #expect(stats.contains { $0.key == Array("get_hits".utf8) && $0.text == "1" })
        #expect(t.one(request(0x10, key: "cachedump")).status == 4)
        #expect(t.one(request(0x10, key: "conns")).status == 4)
        #expect(t.one(request(0x10, key: "bogus")).status == 1)
        #expect(t.one(request(0x1b, extras: be(UInt32(1)))).status == 0)
        #expect(t.one(request(0x08)).status == 0)
        #expect(t.one(request(0x00, key: "k")).status == 1)
        #expect(t.responses(request(0x18)).isEmpty)
    }

    @Test func flushRefusedWithDashF() {
        var settings = EngineSettings()
        settings.flushEnabled = false
        var t = BinaryTranscript(settings: settings)
        #expect(t.one(request(0x08)).status == 0x20)
    }

    @Test func errorsAndClosing() {
        var t = BinaryTranscript()
        // Unknown opcodes (and SASL when authentication is off): 0x81, connection stays.
        #expect(t.one(request(0x21, key: "PLAIN", value: [0, 0x75, 0, 0x70])).status == 0x81)
        #expect(t.one(request(0x55, value: [1, 2, 3])).status == 0x81)
        // Inconsistent lengths: 0x04, then close.
        let (bytes, action) = t.send(request(0x00, key: "k", extras: [1, 2, 3, 4]))
        #expect(action == .close)
        #expect(parse(bytes).map(\.status) == [4])
        // A garbage header: close with no reply.
        var g = BinaryTranscript()
        let (garbage, closed) = g.send(request(0x0a) + [0x00, 0x01, 0x02])
        #expect(closed == .close)
        #expect(parse(garbage).count == 1)
        // quit answers then closes; quitq closes silently.
        var q = BinaryTranscript()
        #expect(q.send(request(0x07)).1 == .close)
        var qq = BinaryTranscript()
        #expect(qq.send(request(0x17)) == ([], .close))
    }

    @Test func tooLargeValueIsRefusedAndConnectionContinues() {
        var t = BinaryTranscript(maxItemSize: 1024)
        _ = t.one(request(0x01, key: "k", extras: setExtras(), value: [0x61]))
        let big = request(0x01, key: "k", extras: setExtras(), value: [UInt8](repeating: 0x7a, count: 4000))
        let replies = t.responses(big + request(0x00, key: "k"), chunk: 333)
        #expect(replies.map(\.status) == [3, 1])  // refused, and the old value is gone (as memcached)
    }

    @Test func dripFedRequestsAnswerTheSame() {
        var t = BinaryTranscript()
        let stream =
            request(0x01, key: "k", extras: setExtras(), value: Array("hello".utf8)) + request(0x00, key: "k")
            + request(0x0a)
        let replies = t.responses(stream, chunk: 1)
        #expect(replies.map(\.status) == [0, 0, 0])
        #expect(replies[1].text == "hello")
    }

    @Test func protocolModes() {
        var binaryOnly = EngineSettings()
        binaryOnly.protocolMode = .binary
        var b = BinaryTranscript(settings: binaryOnly)
        #expect(b.send(Array("get k\r\n".utf8)) == ([], .close))
        var b2 = BinaryTranscript(settings: binaryOnly)
        #expect(b2.one(request(0x0a)).status == 0)
        var asciiOnly = EngineSettings()
        asciiOnly.protocolMode = .ascii
        var a = BinaryTranscript(settings: asciiOnly)
        // Read as text: not a binary reply.
        let (bytes, _) = a.send(request(0x0a) + Array("\r\n".utf8))
        #expect(bytes.first != 0x81)
        // In auto mode a text connection stays text.
        var auto = BinaryTranscript()
        #expect(String(decoding: auto.send(Array("version\r\n".utf8)).0, as: UTF8.self).hasPrefix("VERSION "))
    }
}
