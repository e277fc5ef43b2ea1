// swift-tools-version: 6.0
import PackageDescription

// Layout (see docs/architecture.md): pure modules below, one module that does I/O (MoatServer).
//   MoatStorage   cache engine: shards, LRU, memory budget, TTL, CAS (no networking)
//   MoatProtocol  wire codecs: text and meta, binary, UDP frames, base64 (pure: bytes in, requests out)
//   MoatAccess    who may use the cache: credential store, SASL (PLAIN, SCRAM), guessing throttle (no networking)
//   MoatEngine    per-connection session: request -> storage -> reply bytes; stats, security log (no sockets)
//   MoatTLS       TLS as a transform over OpenSSL 3 (CMoatTLS): records in, plaintext out (no sockets)
//   MoatConfig    memcached-compatible flags -> one validated configuration with safe defaults
//   MoatSnapshot  warm restarts: the cache's items to a file and back (chunked, AES-GCM with a key)
//   MoatServer    epoll loops, the connection core, listeners (TCP, unix, TLS, UDP), limits, privilege drop
//   MoatAudit     `moat audit` (scan for exposed memcached-protocol services) and `moat check` (static):
//                 findings with severities, reported as a table, JSON or SARIF; `moat top` (live `stats` view)
//   MoatMetrics   `stats` figures as Prometheus metrics (swift-metrics with swift-prometheus; no networking)
//   MoatFirewall  `moat firewall`: nftables, iptables and firewalld rules from a configuration (pure)
//   MoatCLI       the `moat` executable
// Release builds of Moat's own modules: optimise across module boundaries (the codec, engine and
// storage calls on the request path are generic or small) and skip dynamic exclusivity checks, whose
// bookkeeping showed up at ~5% of a request in `perf record` (docs/performance.md).
let fast: [SwiftSetting] = [
    .unsafeFlags(["-cross-module-optimization", "-enforce-exclusivity=unchecked"], .when(configuration: .release))
]

let package = Package(
    name: "moat",
    products: [
        .executable(name: "moat", targets: ["MoatCLI"]),
        // The pure request path, for the separate Benchmarks/ package (ordo-one/benchmark).
        .library(name: "MoatCore", targets: ["MoatStorage", "MoatProtocol", "MoatAccess", "MoatEngine"]),
        // For the fuzzers in Fuzz/ (libFuzzer; their own package, built with sanitizers).
        .library(name: "MoatFuzzChecks", targets: ["MoatFuzzChecks"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        .target(name: "MoatStorage", swiftSettings: fast),
        // <sys/epoll.h> for MoatServer's epoll loops.
        .target(name: "CEpoll"),
        // OpenSSL 3 (Debian's libssl-dev) behind a small C interface: the TLS listeners' records.
        .target(name: "CMoatTLS", linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]),
        // TLS as a transform with no socket (TLSStream, TLSContext), for the server and `moat audit`'s probe.
        .target(name: "MoatTLS", dependencies: ["CMoatTLS", .product(name: "NIOCore", package: "swift-nio")]),
        .target(
            name: "MoatProtocol",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: fast
        ),
        .target(
            name: "MoatAccess",
            dependencies: [
                "MoatProtocol",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ]
        ),
        .target(
            name: "MoatEngine",
            dependencies: [
                "MoatStorage", "MoatProtocol", "MoatAccess",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: fast
        ),
        .target(
            name: "MoatSnapshot",
            dependencies: ["MoatStorage", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: fast
        ),
        .target(
            name: "MoatConfig",
            dependencies: [
                "MoatAccess", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .target(
            name: "MoatServer",
            dependencies: [
                "MoatEngine", "MoatConfig", "MoatStorage", "MoatProtocol", "MoatMetrics", "CEpoll", "MoatTLS",
                "MoatSnapshot",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: fast
        ),
        .target(
            name: "MoatAudit",
            dependencies: [
                "MoatConfig", "MoatAccess", "MoatProtocol", "MoatTLS",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .target(
            name: "MoatMetrics",
            dependencies: [
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .target(name: "MoatFirewall", dependencies: ["MoatConfig", "MoatAccess"]),
        // The invariants the fuzzers (Fuzz/, its own package) check and `swift test` replays.
        .target(
            name: "MoatFuzzChecks",
            dependencies: [
                "MoatProtocol", "MoatEngine", "MoatAccess", "MoatConfig", "MoatStorage", "MoatSnapshot",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "MoatCLI",
            dependencies: [
                "MoatServer", "MoatConfig", "MoatAccess", "MoatAudit", "MoatFirewall", "MoatSnapshot", "MoatTLS",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Clocks moved by hand, a seeded generator and byte helpers, shared by the test targets.
        .target(name: "MoatTestSupport", dependencies: ["MoatStorage"], path: "Tests/MoatTestSupport"),
        .testTarget(name: "MoatStorageTests", dependencies: ["MoatStorage", "MoatTestSupport"]),
        .testTarget(name: "MoatSnapshotTests", dependencies: ["MoatSnapshot", "MoatStorage", "MoatTestSupport"]),
        .testTarget(
            name: "MoatProtocolTests",
            dependencies: ["MoatProtocol", "MoatTestSupport", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .testTarget(
            name: "MoatEngineTests",
            dependencies: [
                "MoatEngine", "MoatStorage", "MoatProtocol", "MoatAccess", "MoatTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "MoatConfigTests", dependencies: ["MoatConfig", "MoatAccess"]),
        .testTarget(name: "MoatAccessTests", dependencies: ["MoatAccess", "MoatTestSupport"]),
        .testTarget(name: "MoatAuditTests", dependencies: ["MoatAudit", "MoatConfig", "MoatAccess"]),
        .testTarget(name: "MoatMetricsTests", dependencies: ["MoatMetrics"]),
        .testTarget(name: "MoatFirewallTests", dependencies: ["MoatFirewall", "MoatConfig", "MoatAccess"]),
        .testTarget(name: "MoatFuzzChecksTests", dependencies: ["MoatFuzzChecks"]),
        .testTarget(
            name: "MoatServerTests",
            dependencies: [
                "MoatServer", "CEpoll", "MoatTLS", "MoatConfig", "MoatEngine", "MoatAccess", "MoatStorage",
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ]
)
