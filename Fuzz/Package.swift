// swift-tools-version: 6.0
import PackageDescription

// libFuzzer targets, one per codec, one for the whole engine, one for warm-restart snapshots. Build with sanitizers:
//   swift build -c release --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address --disable-dead-strip
// (without --disable-dead-strip a release build loses its coverage counters and fuzzes blind), then run
//   SWIFT_BACKTRACE=enable=no .build/release/FuzzText -max_total_time=60 Corpus/text
// scripts/fuzz.sh does both. The invariants live in the main package's MoatFuzzChecks, so that
// `swift test` replays Corpus/ and Regressions/ with the same checks.
let targets = ["Text", "Meta", "Binary", "SASL", "Config", "Engine", "Snapshot"]

let package = Package(
    name: "MoatFuzz",
    dependencies: [.package(name: "moat", path: "..")],
    targets: targets.map { name in
        .executableTarget(
            name: "Fuzz\(name)",
            dependencies: [.product(name: "MoatFuzzChecks", package: "moat")],
            path: "Sources/Fuzz\(name)")
    }
)
