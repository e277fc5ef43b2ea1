import Benchmark
import MoatEngine
import MoatProtocol
import MoatStorage
import NIOCore

// Microbenchmarks of the request path, one layer at a time. Every benchmark runs `scaledIterations`
// (1000, `scalingFactor: .kilo`) operations per sample and prepares its buffers before
// `startMeasurement()`, so that the numbers are per operation and allocation counts are the hot path's
// own (with `.kilo` the harness's fixed ~16 mallocs per sample round away; see
// docs/toolchain-notes row 3). The buffers are reused: a steady-state request should allocate nothing.

/// A 16-byte key: `moat:` and 11 digits.
func key(_ n: Int) -> [UInt8] {
    let digits = String(n)
    return Array("moat:".utf8) + Array(repeating: UInt8(ascii: "0"), count: 11 - digits.utf8.count) + Array(digits.utf8)
}

func buffer(_ bytes: [UInt8]) -> ByteBuffer {
    var buffer = ByteBufferAllocator().buffer(capacity: bytes.count)
    buffer.writeBytes(bytes)
    return buffer
}

let value32 = [UInt8](repeating: UInt8(ascii: "v"), count: 32)

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        scalingFactor: .kilo,
        maxDuration: .seconds(1),
        maxIterations: 10_000
    )

    // MARK: control: proves malloc counting is live (expect exactly 1 per iteration)

    Benchmark("control/one malloc") { benchmark in
        for n in benchmark.scaledIterations {
            blackHole([Int](repeating: n, count: 4))
        }
    }

    // MARK: parse (TextDecoder.decode on a buffer already in memory)

    func parse(_ name: String, _ input: [UInt8]) {
        let template = buffer(input)
        Benchmark("parse/\(name)") { benchmark in
            var decoder = TextDecoder()
            var input = template  // shares storage; moving the reader index never copies it
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                input.moveReaderIndex(to: 0)
                let result = decoder.decode(&input) { request -> Int in
                    switch request.operation {
                    case .getMany(let keys, _):
                        var count = 0
                        for key in TokenList(keys) { count &+= key.count }
                        return count
                    case .store(let key, let value, _):
                        return key.count &+ value.count
                    default:
                        return -1
                    }
                }
                if result == nil || result! < 0 { benchmark.error("\(name): not decoded as expected") }
                blackHole(result)
            }
        }
    }
    parse("get", Array("get ".utf8) + key(1) + Array("\r\n".utf8))
    parse("get 16 keys", Array("get".utf8) + (0..<16).flatMap { [UInt8(ascii: " ")] + key($0) } + Array("\r\n".utf8))
    parse("set 32B", Array("set ".utf8) + key(1) + Array(" 0 0 32\r\n".utf8) + value32 + Array("\r\n".utf8))

    // MARK: encode (TextEncoder.writeValue straight from memory into a reused buffer)

    Benchmark("encode/value 32B") { benchmark in
        let k = key(1)
        var output = ByteBufferAllocator().buffer(capacity: 4096)
        k.withUnsafeBytes { k in
            value32.withUnsafeBytes { v in
                benchmark.startMeasurement()
                for _ in benchmark.scaledIterations {
                    output.clear()
                    TextEncoder.writeValue(key: k, flags: 0, data: v, cas: nil, into: &output)
                    blackHole(output.readableBytes)
                }
            }
        }
    }

    // MARK: storage (Cache on raw pointers)

    let cache = Cache(configuration: CacheConfiguration(memoryLimit: 64 << 20))
    let hitKey = key(1)
    let missKey = key(2)
    hitKey.withUnsafeBytes { k in
        value32.withUnsafeBytes { v in _ = cache.store(.set, key: k, value: v, flags: 0, exptime: 0) }
    }

    Benchmark("storage/lookup hit") { benchmark in
        hitKey.withUnsafeBytes { k in
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                let count = cache.lookup(k, LookupOptions()) { $0.value.count }
                if count != 32 { benchmark.error("lookup hit: missed") }
                blackHole(count)
            }
        }
    }

    Benchmark("storage/lookup miss") { benchmark in
        missKey.withUnsafeBytes { k in
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                let count = cache.lookup(k, LookupOptions()) { $0.value.count }
                if count != nil { benchmark.error("lookup miss: hit") }
                blackHole(count)
            }
        }
    }

    Benchmark("storage/set overwrite") { benchmark in
        hitKey.withUnsafeBytes { k in
            value32.withUnsafeBytes { v in
                benchmark.startMeasurement()
                for _ in benchmark.scaledIterations {
                    let outcome = cache.store(.set, key: k, value: v, flags: 0, exptime: 0)
                    if outcome != .stored { benchmark.error("set overwrite: \(outcome)") }
                    blackHole(outcome)
                }
            }
        }
    }

    // 4 MiB in one shard holds ~50k items of this size; cycling through 128k distinct keys makes every
    // set (after the first pass, done before measuring) a new item, for which the oldest segment is
    // compacted and its items evicted whenever the open one is full.
    let evictingCache = Cache(configuration: CacheConfiguration(memoryLimit: 4 << 20, shardCount: 1))
    let keyCount = 1 << 17
    let keys: [UInt8] = (0..<keyCount).flatMap { key($0) }
    var nextKey = 0
    var filled = false

    Benchmark("storage/set evicting") { benchmark in
        keys.withUnsafeBytes { keys in
            value32.withUnsafeBytes { v in
                var index = nextKey
                func setNext() -> StoreOutcome {
                    let k = UnsafeRawBufferPointer(rebasing: keys[(index &* 16)..<(index &* 16 &+ 16)])
                    index = (index &+ 1) & (keyCount - 1)
                    return evictingCache.store(.set, key: k, value: v, flags: 0, exptime: 0)
                }
                if !filled {
                    for _ in 0..<keyCount { _ = setNext() }
                    filled = true
                }
                let before = evictingCache.counters()
                benchmark.startMeasurement()
                for _ in benchmark.scaledIterations {
                    let outcome = setNext()
                    if outcome != .stored { benchmark.error("set evicting: \(outcome)") }
                    blackHole(outcome)
                }
                benchmark.stopMeasurement()
                // Evictions come a segment at a time, so a sample may see none; but every set must have
                // been of a key no longer there: each one either evicted or grew the item count.
                let after = evictingCache.counters()
                let grown = after.currentItems - before.currentItems
                if Int(after.evictions &- before.evictions) + grown != benchmark.scaledIterations.count {
                    benchmark.error("set evicting: a set found its key still cached")
                }
                nextKey = index
            }
        }
    }

    // MARK: engine (one Session.process round trip: decode, read, encode)

    let engine = Engine(cache: cache, settings: EngineSettings())

    /// One request per iteration through `Session.process`, the reply's length checked: the same executor
    /// serves every dialect, so each is measured for allocations.
    func engineRoundTrip(_ name: String, _ request: [UInt8], replyLength: Int) {
        let template = buffer(request)
        Benchmark("engine/\(name)") { benchmark in
            var session = engine.makeSession()
            var input = template
            var output = ByteBufferAllocator().buffer(capacity: 4096)
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                input.moveReaderIndex(to: 0)
                output.clear()
                let action = session.process(&input, into: &output)
                if action != .needInput || output.readableBytes != replyLength {
                    benchmark.error("\(name): \(action), \(output.readableBytes) bytes")
                }
                blackHole(output.readableBytes)
            }
        }
    }
    engineRoundTrip("get hit", Array("get ".utf8) + hitKey + Array("\r\n".utf8), replyLength: 29 + 32 + 2 + 5)
    engineRoundTrip(
        "set 32B", Array("set ".utf8) + hitKey + Array(" 0 0 32\r\n".utf8) + value32 + Array("\r\n".utf8),
        replyLength: 8)
    engineRoundTrip("mg hit", Array("mg ".utf8) + hitKey + Array(" v f\r\n".utf8), replyLength: 10 + 32 + 2)
    // A binary get (opcode 0x00) of the same key: 24-byte header, 4 bytes of flags, the value.
    let binaryGet: [UInt8] =
        [0x80, 0x00, 0x00, UInt8(hitKey.count), 0, 0, 0, 0, 0, 0, 0, UInt8(hitKey.count)]
        + [UInt8](repeating: 0, count: 12)
        + hitKey
    engineRoundTrip("binary get hit", binaryGet, replyLength: 24 + 4 + 32)
}
