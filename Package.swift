// swift-tools-version:6.1
import PackageDescription

/// One list of settings for every target (house style): strict existentials and explicit imports.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let nioCore: Target.Dependency = .product(name: "NIOCore", package: "swift-nio")
let nioPosix: Target.Dependency = .product(name: "NIOPosix", package: "swift-nio")
let nioHTTP1: Target.Dependency = .product(name: "NIOHTTP1", package: "swift-nio")
let logging: Target.Dependency = .product(name: "Logging", package: "swift-log")
let serviceLifecycle: Target.Dependency = .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")
let argumentParser: Target.Dependency = .product(name: "ArgumentParser", package: "swift-argument-parser")

let package = Package(
    name: "ConnectionVault",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "connvaultd", targets: ["connvaultd"]),
        .executable(name: "connvaultctl", targets: ["connvaultctl"]),
        .executable(name: "connvault-bench", targets: ["connvault-bench"]),
        .executable(name: "bench-nio-server", targets: ["bench-nio-server"]),
        .executable(name: "connvault-scale", targets: ["connvault-scale"]),
        .library(name: "VaultClient", targets: ["VaultClient"]),
        .library(name: "VaultAPI", targets: ["VaultAPI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    ],
    targets: [
        // MARK: - C libraries
        .systemLibrary(
            name: "CSodium",
            pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"])]
        ),
        .target(name: "CVaultShims"),

        // MARK: - Libraries
        /// The project's one lock (`Locked`, a pthread mutex), which ThreadSanitizer sees, unlike Synchronization's `Mutex`.
        .target(name: "VaultLocks", swiftSettings: swiftSettings),
        .target(name: "VaultCrypto", dependencies: ["CSodium"], swiftSettings: swiftSettings),
        .target(
            name: "VaultStore",
            dependencies: [.product(name: "GRDB", package: "GRDB.swift"), logging],
            swiftSettings: swiftSettings
        ),
        .target(name: "VaultAPI", swiftSettings: swiftSettings),
        .target(
            name: "VaultCore",
            dependencies: ["VaultCrypto", "VaultStore", "VaultAPI", "VaultLocks", logging],
            swiftSettings: swiftSettings
        ),
        /// The broker's counters as swift-metrics series, created from a factory the daemon hands in.
        .target(
            name: "VaultMetrics",
            dependencies: ["VaultLocks", .product(name: "CoreMetrics", package: "swift-metrics")],
            swiftSettings: swiftSettings
        ),
        /// The zeroing ByteBuffer allocator for buffers that hold a secret, written once for every module that sends one.
        .target(
            name: "ZeroedBuffers",
            dependencies: ["CVaultShims", "VaultLocks", nioCore],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "TokenBroker",
            dependencies: [
                "VaultCore", "VaultAPI", "VaultCrypto", "PersonioClient", "VaultMetrics", "CVaultShims", "VaultLocks",
                logging, nioCore,
            ],
            swiftSettings: swiftSettings
        ),
        /// HTTP/1.1 on the wire, as the vault's own parsers read it: byte classes, header lines and message bodies,
        /// shared by the server's request parser and the proxy's upstream answer parser.
        .target(name: "HTTP1Wire", dependencies: [nioCore], swiftSettings: swiftSettings),
        .target(
            name: "PersonioClient",
            dependencies: [
                "HTTP1Wire", "VaultCrypto", "ZeroedBuffers", "VaultLocks", nioCore, nioPosix, nioHTTP1, logging,
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "VaultServer",
            dependencies: [
                "VaultCore", "TokenBroker", "VaultAPI", "PersonioClient", "HTTP1Wire", "CVaultShims", "ZeroedBuffers",
                "VaultCrypto", "VaultLocks", nioCore, nioPosix, nioHTTP1, logging, serviceLifecycle,
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                "VaultMetrics", .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "VaultClient",
            dependencies: [
                "VaultAPI", "CVaultShims", "ZeroedBuffers", "VaultLocks", nioCore, nioHTTP1,
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: swiftSettings
        ),
        /// connvaultctl's argument preprocessing (secret flags refused, global options hoisted): pure, so that the fuzz
        /// harness can drive it too.
        .target(name: "ConnVaultCtlSupport", swiftSettings: swiftSettings),
        /// A faithful stand-in for Personio's auth API, for tests and benchmarks (loopback only).
        .target(
            name: "PersonioStandIn",
            dependencies: ["VaultLocks", nioCore, nioPosix, nioHTTP1],
            swiftSettings: swiftSettings
        ),

        // MARK: - Executables
        .executableTarget(
            name: "connvaultd",
            dependencies: ["VaultServer", "VaultCore", argumentParser, logging],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "connvaultctl",
            dependencies: ["VaultAPI", "CVaultShims", "ConnVaultCtlSupport", argumentParser],
            swiftSettings: swiftSettings
        ),

        // MARK: - Benchmarks
        /// The cost of the request and broker counters, against the hand-written counters they replaced.
        .executableTarget(
            name: "metrics-bench",
            dependencies: ["VaultMetrics", "VaultAPI", .product(name: "Prometheus", package: "swift-prometheus")],
            path: "Benchmarks/metrics-bench",
            swiftSettings: swiftSettings
        ),
        /// `make bench`: load generator and harness measuring the token path beside nginx and a bare NIO server.
        .executableTarget(
            name: "connvault-bench",
            dependencies: ["TestSupport", "PersonioStandIn", "CVaultShims", argumentParser],
            path: "Benchmarks/connvault-bench",
            swiftSettings: swiftSettings
        ),
        /// The bare SwiftNIO baseline: a fixed JSON body for every request on a Unix socket.
        .executableTarget(
            name: "bench-nio-server",
            dependencies: [nioCore, nioPosix, nioHTTP1, argumentParser],
            path: "Benchmarks/bench-nio-server",
            swiftSettings: swiftSettings
        ),
        /// `make scale`: a vault of 100,000 connections and a million audit rows (seeded through VaultCore), measured
        /// through the release daemon and CLI.
        .executableTarget(
            name: "connvault-scale",
            dependencies: ["TestSupport", "PersonioStandIn", "VaultCore", "VaultAPI", logging, argumentParser],
            path: "Benchmarks/connvault-scale",
            swiftSettings: swiftSettings
        ),

        // MARK: - Fuzzing
        /// `make fuzz`: every libFuzzer target in one executable, built with `-sanitize=fuzzer,address` into
        /// .build-fuzz (see Fuzz/README.md); in a plain build it replays inputs through the same targets.
        .executableTarget(
            name: "connvault-fuzz",
            dependencies: [
                "VaultServer", "VaultCore", "VaultStore", "VaultAPI", "VaultCrypto", "PersonioClient",
                "ConnVaultCtlSupport", "CLibFuzzer", logging, nioCore,
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            path: "Fuzz/Sources",
            swiftSettings: swiftSettings
        ),
        /// The declaration of libFuzzer's driver, which connvault-fuzz calls in the instrumented build only.
        .target(name: "CLibFuzzer", path: "Fuzz/CLibFuzzer"),

        // MARK: - Tests
        /// posix_spawn's glibc extensions (working directory, closefrom) for TestSupport's child processes.
        .target(name: "CTestSupport", path: "Tests/CTestSupport"),
        .target(
            name: "TestSupport",
            dependencies: [
                "VaultAPI", "PersonioStandIn", "CTestSupport", "CVaultShims", "CSodium", "VaultLocks", logging,
            ],
            path: "Tests/TestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "VaultCryptoTests",
            dependencies: ["VaultCrypto", "TestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "VaultStoreTests",
            dependencies: ["VaultStore", "TestSupport", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        /// The C helpers of CVaultShims on real sockets and the real group database.
        .testTarget(
            name: "CVaultShimsTests",
            dependencies: ["CVaultShims", "TestSupport"],
            swiftSettings: swiftSettings
        ),
        /// A vault on a real SQLite file and key file, shared by the domain and broker tests.
        .target(
            name: "VaultTestSupport",
            dependencies: [
                "VaultCore", "VaultCrypto", "VaultStore", "VaultAPI", "TestSupport", "TokenBroker", "PersonioClient",
                "PersonioStandIn", logging,
            ],
            path: "Tests/VaultTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "VaultCoreTests",
            dependencies: [
                "VaultCore", "VaultCrypto", "VaultStore", "VaultAPI", "VaultTestSupport", "TestSupport",
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TokenBrokerTests",
            dependencies: [
                "TokenBroker", "VaultCore", "VaultStore", "VaultAPI", "PersonioClient", "PersonioStandIn",
                "VaultTestSupport", "TestSupport", "VaultLocks", logging, nioCore,
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PersonioClientTests",
            dependencies: [
                "PersonioClient", "PersonioStandIn", "HTTP1Wire", "VaultCrypto", "TestSupport", "VaultLocks", logging,
                nioCore, nioHTTP1, nioPosix, .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "VaultServerTests",
            dependencies: [
                "VaultServer", "VaultCore", "TokenBroker", "VaultClient", "VaultAPI", "TestSupport", "PersonioStandIn",
                "VaultLocks", logging, nioCore, nioHTTP1,
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "VaultClientTests",
            dependencies: ["VaultClient", "VaultAPI", "TestSupport", nioCore, nioPosix],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ConnVaultCtlTests",
            dependencies: ["connvaultctl", "ConnVaultCtlSupport", "VaultAPI", "TestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SystemdTests",
            dependencies: ["TestSupport", "PersonioStandIn"],
            swiftSettings: swiftSettings
        ),
        /// The module graph of docs/architecture.md against the sources' imports and Package.swift.
        .testTarget(name: "ArchitectureTests", swiftSettings: swiftSettings),
        .testTarget(name: "VaultLocksTests", dependencies: ["VaultLocks"], swiftSettings: swiftSettings),
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "VaultClient", "VaultAPI", "VaultStore", "TestSupport", "PersonioStandIn", "VaultLocks", logging,
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
