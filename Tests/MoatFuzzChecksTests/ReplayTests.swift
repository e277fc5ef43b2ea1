import Foundation
import MoatFuzzChecks
import Testing

/// Replays every seed in Fuzz/Corpus/<target>/ and every input that once broke a fuzzer in
/// Fuzz/Regressions/<target>/ through the same invariant checks the fuzzers run.
@Suite struct ReplayTests {
    static let fuzzDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz")

    static func inputs(_ folder: String, _ target: String) -> [URL] {
        let directory = fuzzDirectory.appendingPathComponent(folder).appendingPathComponent(target)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { !$0.hasPrefix(".") }.sorted().map { directory.appendingPathComponent($0) }
    }

    @Test(arguments: FuzzChecks.targets.keys.sorted())
    func seedsAndRegressionsKeepTheInvariants(target: String) throws {
        let check = try #require(FuzzChecks.targets[target])
        let seeds = Self.inputs("Corpus", target)
        #expect(seeds.count >= 3, "seed corpus of \(target)")
        for file in seeds + Self.inputs("Regressions", target) {
            let bytes = [UInt8](try Data(contentsOf: file))
            let problems = check(bytes)
            #expect(problems.isEmpty, "\(target) \(file.lastPathComponent): \(problems)")
        }
    }

    @Test func theChecksCatchWhatTheyClaimTo() {
        // A hit for a key that holds nothing, made by hand, is what the engine check exists to catch:
        // here it must stay silent for a correct engine, and the text check must flag a broken key rule.
        #expect(FuzzChecks.engine(Array(repeating: 2, count: 64)).isEmpty)
        #expect(!FuzzChecks.keyRuleHolds(Array("bad key".utf8)))
        #expect(FuzzChecks.keyRuleHolds(Array("good".utf8)))
    }
}
