// swift-tools-version: 6.1
import PackageDescription

// Microbenchmarks of Moat's request path (ordo-one/benchmark): parse, encode, storage, engine.
// A separate package so the root package and CI do not pull the benchmark toolchain into `swift build`.
// Run: `swift package --package-path Benchmarks benchmark --no-progress` (see README.md).
let package = Package(
    name: "MoatBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        // Named explicitly: a path dependency is otherwise identified by its directory name, which differs per checkout.
        .package(name: "moat", path: ".."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        // The trait selects malloc-interposer for malloc counting (the default wants a package we cannot fetch).
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "MoatBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "MoatCore", package: "moat"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "MoatBenchmarks",
            // Built like Moat's own release modules (root Package.swift), since the encoder's @inlinable code
            // is inlined here as it is into MoatEngine. (NIO's ByteBuffer keeps its own exclusivity checks,
            // serialized with NIOCore, here as in the server.)
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    ]
)
