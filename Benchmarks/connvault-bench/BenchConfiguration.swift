/// What `connvault-bench` runs, from its command line.
struct BenchConfiguration: Sendable {
    /// Where `connvaultd`, `connvaultctl` and `bench-nio-server` are (the release build).
    var binDirectory: String
    var warmUpSeconds: Double
    var durationSeconds: Double
    /// How many times each server is measured, the servers taking turns.
    var rounds: Int
    /// Connection counts to measure; a count of 1 runs pinned to `pinCPU`.
    var connectionCounts: [Int]
    /// The CPU for pinned runs; the last CPU this process may use when `nil`.
    var pinCPU: Int?
    /// The nginx binary; `/usr/sbin/nginx` or `nginx` on `PATH` when `nil`.
    var nginxPath: String?
    /// The body size for nginx and bare NIO when the vault's token response cannot be measured.
    var fallbackBodySize: Int
    var includeVault: Bool
    /// The token path: nginx, bare NIO and the vault's cached token route, then the cold paths.
    var includeTokenPath: Bool
    /// The proxy case: nginx's `proxy_pass` and the vault's proxy route in front of one nginx upstream.
    var includeProxy: Bool
    /// Cold token requests per upstream latency.
    var coldSamples: Int
    /// Upstream latencies (milliseconds) of the stand-in for the cold token measurements.
    var coldUpstreamLatencies: [Int]
    /// Simultaneous callers for the single-flight check.
    var herdSize: Int
    var resultsFile: String
}
