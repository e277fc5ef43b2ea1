import MoatStorage
import MoatTestSupport
import Testing

/// Random operations against a dictionary model. Evictions may drop keys at any time, so the model
/// learns about misses from the cache; what must hold is that every hit returns exactly the last
/// value stored for that key, no key comes back from the dead, and the budget is never exceeded.
@Suite struct ModelTests {
    struct Scenario: Sendable, CustomStringConvertible {
        var seed: UInt64
        var memoryLimit: Int
        var maxItemSize: Int
        var shards: Int?
        var segmentSize: Int?
        var evictions: Bool
        var description: String {
            "seed \(seed) limit \(memoryLimit) max \(maxItemSize) shards \(shards.map(String.init) ?? "auto") "
                + "segment \(segmentSize.map(String.init) ?? "auto") evictions \(evictions)"
        }
    }

    /// Small segments so that a few thousand operations evict and compact a lot (40 keys of up to
    /// `maxItemSize` bytes do not fit in any of these limits);
    /// `maxItemSize` above the segment size mixes in items allocated on their own.
    static let scenarios: [Scenario] = [
        Scenario(seed: 1, memoryLimit: 6_144, maxItemSize: 300, shards: 1, segmentSize: 1024, evictions: true),
        Scenario(seed: 2, memoryLimit: 8_192, maxItemSize: 300, shards: 4, segmentSize: 1024, evictions: true),
        Scenario(seed: 3, memoryLimit: 6_000, maxItemSize: 300, shards: nil, segmentSize: 1024, evictions: true),
        Scenario(seed: 4, memoryLimit: 8_192, maxItemSize: 300, shards: 2, segmentSize: 1024, evictions: false),
        Scenario(seed: 5, memoryLimit: 1_000_000, maxItemSize: 300, shards: 8, segmentSize: nil, evictions: true),
        Scenario(seed: 6, memoryLimit: 8_192, maxItemSize: 300, shards: 1, segmentSize: 4096, evictions: true),
        Scenario(seed: 7, memoryLimit: 8_192, maxItemSize: 1_500, shards: 1, segmentSize: 1024, evictions: true),
        Scenario(seed: 8, memoryLimit: 8_000, maxItemSize: 1_500, shards: 1, segmentSize: 1024, evictions: false),
        Scenario(seed: 9, memoryLimit: 16_384, maxItemSize: 5_000, shards: 2, segmentSize: 4096, evictions: true),
        Scenario(seed: 10, memoryLimit: 3_000, maxItemSize: 1_500, shards: 1, segmentSize: 1024, evictions: true),
    ]

    static func parseCounter(_ bytes: [UInt8]) -> UInt64? {
        var text = String(decoding: bytes, as: UTF8.self)
        while text.hasSuffix(" ") { text.removeLast() }
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return UInt64(text)
    }

    @Test(arguments: scenarios)
    func randomOperationsMatchModel(_ scenario: Scenario) {
        var rng = SeededGenerator(seed: scenario.seed)
        let clock = ManualClock()
        let cache = makeCache(
            memoryLimit: scenario.memoryLimit, maxItemSize: scenario.maxItemSize, evictions: scenario.evictions,
            shards: scenario.shards, segmentSize: scenario.segmentSize, clock: clock)
        var model: [[UInt8]: [UInt8]] = [:]
        let keys: [[UInt8]] = (0..<40).map { b("key-\($0)") }
        var failures = 0

        func randomValue() -> [UInt8] {
            if Int.random(in: 0..<4, using: &rng) == 0 {
                return b(String(UInt64.random(in: 0...UInt64.max, using: &rng) >> Int.random(in: 0..<64, using: &rng)))
            }
            let count = Int.random(in: 0...(scenario.maxItemSize + 20), using: &rng)
            return (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
        }

        func fail(_ message: @autoclosure () -> String) {
            failures += 1
            if failures <= 5 { Issue.record("\(scenario): \(message())") }
        }

        for step in 0..<4_000 {
            let key = keys[Int.random(in: 0..<keys.count, using: &rng)]
            let name = String(decoding: key, as: UTF8.self)
            switch Int.random(in: 0..<11, using: &rng) {
            case 0, 1:
                let value = randomValue()
                let outcome = cache.store(.set, key: key, value: value, flags: 0, exptime: 0)
                switch outcome {
                case .stored: model[key] = value
                case .tooLarge: if value.count <= scenario.maxItemSize { fail("step \(step) set \(name) tooLarge") }
                case .noMemory: if scenario.evictions { fail("step \(step) set noMemory with evictions") }
                default: fail("step \(step) set \(name) -> \(outcome)")
                }
            case 2:
                let value = randomValue()
                switch cache.store(.add, key: key, value: value, flags: 0, exptime: 0) {
                case .stored: model[key] = value
                case .notStored: if model[key] == nil { fail("step \(step) add \(name): phantom key") }
                case .tooLarge, .noMemory: break
                case let other: fail("step \(step) add -> \(other)")
                }
            case 3:
                let value = randomValue()
                switch cache.store(.replace, key: key, value: value, flags: 0, exptime: 0) {
                case .stored:
                    if model[key] == nil { fail("step \(step) replace \(name): phantom key") }
                    model[key] = value
                case .notStored: model[key] = nil
                case .tooLarge, .noMemory: break
                case let other: fail("step \(step) replace -> \(other)")
                }
            case 4:
                let value = Array(randomValue().prefix(40))
                let append = Bool.random(using: &rng)
                switch cache.store(append ? .append : .prepend, key: key, value: value, flags: 0, exptime: 0) {
                case .stored:
                    guard let old = model[key] else {
                        fail("step \(step) append \(name): phantom key")
                        break
                    }
                    model[key] = append ? old + value : value + old
                case .notStored: model[key] = nil
                case .tooLarge, .noMemory: break
                case let other: fail("step \(step) append -> \(other)")
                }
            case 5:
                switch cache.delete(key) {
                case .deleted: if model[key] == nil { fail("step \(step) delete \(name): phantom key") }
                case .notFound: break
                case .exists: fail("step \(step) delete reported a CAS mismatch without a CAS")
                }
                model[key] = nil
            case 6:
                // Counters: grow by at most a few digits, which needs a new place.
                let delta = UInt64.random(in: 0...1000, using: &rng)
                let increment = Bool.random(using: &rng)
                let outcome = increment ? cache.increment(key, by: delta) : cache.decrement(key, by: delta)
                switch outcome {
                case .value(let result):
                    guard let old = model[key], let current = Self.parseCounter(old) else {
                        fail(
                            """
                            step \(step) arithmetic on \(name) model \
                            \(model[key].map { String(decoding: $0, as: UTF8.self) } ?? "nil")
                            """
                        )
                        break
                    }
                    let expected = increment ? current &+ delta : (delta > current ? 0 : current - delta)
                    if result != expected { fail("step \(step) arithmetic \(result) != \(expected)") }
                    model[key] = b(String(result))
                case .notFound: model[key] = nil
                case .nonNumeric:
                    if let old = model[key], Self.parseCounter(old) != nil {
                        fail("step \(step) numeric value reported non-numeric")
                    }
                case .noMemory:
                    // Only without evictions, and the old value must stay as it was (checked by the next hit).
                    if scenario.evictions { fail("step \(step) arithmetic out of memory with evictions on") }
                case .exists:
                    fail("step \(step) arithmetic reported a CAS mismatch without a CAS")
                }
            case 7:
                guard let hit = cache.get(key) else {
                    model[key] = nil
                    break
                }
                let useCurrent = Bool.random(using: &rng)
                let value = randomValue()
                let unique = useCurrent ? hit.cas : hit.cas &+ 1
                switch cache.store(.cas(unique), key: key, value: value, flags: 0, exptime: 0) {
                case .stored:
                    if !useCurrent { fail("step \(step) stale cas stored") }
                    model[key] = value
                case .exists: if useCurrent { fail("step \(step) fresh cas refused") }
                case .notFound: model[key] = nil
                case .tooLarge, .noMemory: break
                case let other: fail("step \(step) cas -> \(other)")
                }
            default:
                if let hit = cache.get(key) {
                    if hit.value != model[key] {
                        fail("step \(step) get \(name) returned a value that is not the last stored")
                    }
                } else {
                    model[key] = nil
                }
            }
            let counters = cache.counters()
            if counters.mallocedBytes > scenario.memoryLimit {
                fail("step \(step) mallocedBytes \(counters.mallocedBytes) > \(scenario.memoryLimit)")
            }
            if counters.bytes > counters.mallocedBytes {
                fail("step \(step) bytes \(counters.bytes) > mallocedBytes \(counters.mallocedBytes)")
            }
        }

        // Final sweep: everything the cache still has agrees with the model.
        for key in keys {
            if let hit = cache.get(key) {
                #expect(hit.value == model[key])
            } else {
                model[key] = nil
            }
        }
        let counters = cache.counters()
        #expect(counters.currentItems == model.count)
        #expect(counters.bytes == model.reduce(0) { $0 + charge(key: $1.key.count, value: $1.value.count) })
        #expect(counters.bytes <= counters.mallocedBytes)
        #expect(counters.mallocedBytes <= scenario.memoryLimit)
        #expect(failures == 0)
        if scenario.memoryLimit < 100_000 && scenario.evictions { #expect(counters.evictions > 0) }
    }
}
