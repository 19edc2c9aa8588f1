import ArgumentParser

/// `make bench`: the token path of `connvaultd` measured beside nginx and a bare SwiftNIO server, and its proxy route
/// beside nginx's `proxy_pass` in front of one upstream, with one load generator; prints figures, asserts nothing.
@main
struct ConnvaultBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "connvault-bench",
        abstract: "Measure the vault's cached token route and its proxy route beside nginx and a bare SwiftNIO server.",
        discussion: """
            Every server answers GET over HTTP/1.1 keep-alive on a Unix socket with a JSON body of the size of the \
            vault's token response. Reports requests/s, p50/p99 latency, and CPU time per request of the server \
            (/proc/PID/stat) and of the load generator itself (getrusage), then the vault's cold token latency \
            against the Personio stand-in and the upstream calls made for many simultaneous cold callers. The proxy \
            case, in the same rounds, puts nginx's proxy_pass and the vault's proxy route in front of one nginx on \
            127.0.0.1 that answers like Personio (a 2 KB GET /v2/persons), and reads that upstream's CPU time too.
            """
    )

    @Option(help: "Directory with the release builds of connvaultd, connvaultctl and bench-nio-server.")
    var binDir: String

    @Option(help: "Seconds of warm-up before each measured window.")
    var warmUp: Double = 1

    @Option(help: "Seconds measured per server and connection count.")
    var duration: Double = 5

    @Option(help: "Rounds: every server is measured once per round, in turn; the summary gives medians.")
    var rounds: Int = 5

    @Option(name: .customLong("connections"), help: "Connection counts to measure (repeatable; 1 runs pinned).")
    var connectionCounts: [Int] = [1, 16]

    @Option(help: "CPU for the pinned 1-connection runs (default: the last CPU this process may use).")
    var pinCPU: Int?

    @Option(help: "The nginx binary (default: /usr/sbin/nginx, else nginx on PATH).")
    var nginx: String?

    @Option(help: "Body size for nginx and bare NIO when the vault's token response cannot be measured.")
    var bodySize: Int = 512

    @Flag(help: "Measure nginx and bare NIO only (and nginx's proxy_pass in the proxy case).")
    var skipVault = false

    @Flag(help: "Leave out the proxy case (nginx proxy_pass and the vault's proxy route in front of one upstream).")
    var skipProxy = false

    @Flag(help: "Measure the proxy case only: no token path, no cold paths.")
    var proxyOnly = false

    @Option(help: "Cold token requests per upstream latency.")
    var coldSamples: Int = 20

    @Option(name: .customLong("cold-upstream-latency"), help: "Stand-in latency in ms for cold requests (repeatable).")
    var coldUpstreamLatencies: [Int] = [0, 50]

    @Option(help: "Simultaneous cold callers for the single-flight check (bounded by the open-file limit).")
    var herd: Int = 1000

    @Option(help: "Where to write the results as well.")
    var resultsFile: String = "bench-results/latest.txt"

    func validate() throws {
        guard self.duration > 0, self.warmUp >= 0 else {
            throw ValidationError("--duration must be > 0, --warm-up ≥ 0")
        }
        guard self.rounds > 0 else {
            throw ValidationError("--rounds must be positive")
        }
        guard !self.connectionCounts.isEmpty, self.connectionCounts.allSatisfy({ $0 > 0 }) else {
            throw ValidationError("--connections must be positive")
        }
        guard !(self.skipProxy && self.proxyOnly) else {
            throw ValidationError("--skip-proxy and --proxy-only exclude each other")
        }
        guard self.bodySize >= ResponseBody.minimumSize else {
            throw ValidationError("--body-size must be at least \(ResponseBody.minimumSize)")
        }
    }

    func run() async throws {
        let configuration = BenchConfiguration(
            binDirectory: self.binDir,
            warmUpSeconds: self.warmUp,
            durationSeconds: self.duration,
            rounds: self.rounds,
            connectionCounts: self.connectionCounts,
            pinCPU: self.pinCPU,
            nginxPath: self.nginx,
            fallbackBodySize: self.bodySize,
            includeVault: !self.skipVault,
            includeTokenPath: !self.proxyOnly,
            includeProxy: !self.skipProxy,
            coldSamples: self.coldSamples,
            coldUpstreamLatencies: self.coldUpstreamLatencies,
            herdSize: self.herd,
            resultsFile: self.resultsFile
        )
        try await Benchmark(configuration: configuration).run()
    }
}
