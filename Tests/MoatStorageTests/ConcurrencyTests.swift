import Dispatch
import MoatStorage
import MoatTestSupport
import Synchronization
import Testing

@Suite struct ConcurrencyTests {
    @Test func threadsKeepPerKeyConsistency() {
        let cache = makeCache(memoryLimit: 64 * 1024 * 1024, shards: 8)
        let threads = 8
        let rounds = 2_000
        let failures = Mutex<[String]>([])
        cache.set("shared-counter", "0")

        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            var local: [String] = []
            for round in 0..<rounds {
                let key = b("t\(thread)-k\(round % 16)")
                let value = b("\(thread):\(round)")
                _ = cache.store(.set, key: key, value: value, flags: UInt32(thread), exptime: 0)
                if let hit = cache.get(key) {
                    if hit.value != value || hit.flags != UInt32(thread) {
                        local.append("thread \(thread) round \(round) read a foreign value")
                    }
                } else {
                    local.append("thread \(thread) lost its own key")
                }
                if case .value = cache.increment(b("shared-counter"), by: 1) {} else { local.append("incr failed") }
                // Contended keys: every write is a whole value from one writer.
                let contended = b("shared-\(round % 4)")
                _ = cache.store(
                    .set, key: contended, value: b(String(repeating: "\(thread)", count: 32)), flags: 0, exptime: 0)
                if let hit = cache.get(contended) {
                    if Set(hit.value).count != 1 || hit.value.count != 32 { local.append("torn value") }
                }
                if round % 100 == 0 {
                    _ = cache.counters()
                    _ = cache.reclaimExpired()
                }
                if round % 7 == 0 { _ = cache.delete(contended) }
            }
            if !local.isEmpty { failures.withLock { $0.append(contentsOf: local.prefix(3)) } }
        }

        #expect(failures.withLock { $0 } == [])
        #expect(cache.value("shared-counter") == String(threads * rounds))
        for thread in 0..<threads {
            for slot in 0..<16 {
                let last = (0..<rounds).last { $0 % 16 == slot }!
                #expect(cache.value("t\(thread)-k\(slot)") == "\(thread):\(last)")
            }
        }
    }

    @Test func concurrentCASAllowsExactlyOneWinnerPerRound() {
        let cache = makeCache(shards: 4)
        cache.set("k", "start")
        let winners = Atomic<Int>(0)
        let unique = cache.get(b("k"))!.cas
        DispatchQueue.concurrentPerform(iterations: 16) { thread in
            if cache.store(.cas(unique), key: b("k"), value: b("t\(thread)"), flags: 0, exptime: 0) == .stored {
                winners.add(1, ordering: .relaxed)
            }
        }
        #expect(winners.load(ordering: .relaxed) == 1)
    }

    @Test func concurrentEvictionStaysWithinBudget() {
        let limit = 32 * 1024
        // 8 pages of 1 KiB per shard; appends past a page make items allocated on their own.
        let cache = makeCache(memoryLimit: limit, maxItemSize: 1024, shards: 4, segmentSize: 1024)
        DispatchQueue.concurrentPerform(iterations: 8) { thread in
            var rng = SeededGenerator(seed: UInt64(thread))
            for i in 0..<3_000 {
                let key = b("k\(Int.random(in: 0..<500, using: &rng))")
                switch i % 4 {
                case 0, 1:
                    _ = cache.store(
                        .set, key: key, value: Array(repeating: 0x41, count: Int.random(in: 0...800, using: &rng)),
                        flags: 0, exptime: 0)
                case 2: _ = cache.get(key)
                default: _ = cache.store(.append, key: key, value: [0x41, 0x41], flags: 0, exptime: 0)
                }
            }
        }
        let counters = cache.counters()
        #expect(counters.mallocedBytes <= limit)
        #expect(counters.bytes <= counters.mallocedBytes)
        #expect(counters.evictions > 0)
    }
}
