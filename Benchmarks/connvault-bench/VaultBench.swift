import Glibc
import PersonioStandIn
import TestSupport

/// The vault's side of the run: the Personio stand-in as its upstream, the daemon with a warm connection for the
/// load generator, and the cold paths (first token of a connection, many simultaneous first callers).
final class VaultBench {
    /// The connection whose cached token route the load generator measures.
    static let hotConnection = "bench"

    let daemon: VaultDaemon
    let upstream: PersonioStandIn
    /// The size of the vault's token response body, which nginx and bare NIO then return too.
    let tokenBodySize: Int

    private init(daemon: VaultDaemon, upstream: PersonioStandIn, tokenBodySize: Int) {
        self.daemon = daemon
        self.upstream = upstream
        self.tokenBodySize = tokenBodySize
    }

    /// Starts the stand-in and the daemon, adds the hot connection and fetches its first token, so the measured
    /// route serves from the cache.
    /// - Throws: `BenchError` when something is missing, and with a clear message when the token route is not
    ///   there yet (404).
    static func start(binDirectory: String, directory: TemporaryDirectory) async throws -> VaultBench {
        let upstream = try await PersonioStandIn.start()
        do {
            let daemon = try VaultDaemon(
                binDirectory: binDirectory,
                directory: directory,
                connection: Self.hotConnection
            )
            do {
                try Self.addConnection(Self.hotConnection, daemon: daemon, upstream: upstream)
                let connection = try BlockingHTTPConnection(socketPath: daemon.socketPath)
                defer { connection.close() }
                let first = try connection.get(daemon.requestPath)
                guard first.status != 404 else {
                    throw BenchError(
                        "the app socket answers 404 to GET \(daemon.requestPath): the token route is not wired yet"
                    )
                }
                guard first.status == 200 else {
                    throw BenchError(
                        "GET \(daemon.requestPath) answered \(first.status): \(String(decoding: first.body, as: UTF8.self))"
                    )
                }
                // The second answer comes from the cache: the measured path.
                let cached = try connection.get(daemon.requestPath)
                guard cached.status == 200 else { throw BenchError("cached token request answered \(cached.status)") }
                return VaultBench(daemon: daemon, upstream: upstream, tokenBodySize: cached.bodyLength)
            } catch {
                daemon.stop()
                throw error
            }
        } catch {
            try? await upstream.shutdown()
            throw error
        }
    }

    func stop() async {
        self.daemon.stop()
        try? await self.upstream.shutdown()
    }

    // MARK: - Cold paths

    /// Cold token latency at each upstream latency, then the upstream calls made for many simultaneous first
    /// callers of one connection.
    func measureColdPaths(configuration: BenchConfiguration, fileLimit: Int, report: BenchReport) {
        report.say("cold token requests (a fresh connection each, so nothing is cached; one request's wall time):")
        for latency in configuration.coldUpstreamLatencies {
            do {
                let summary = try self.measureColdLatency(
                    upstreamMilliseconds: latency,
                    samples: configuration.coldSamples
                )
                report.say(
                    "  upstream latency \(latency) ms: p50 \(TextTable.fixed(summary.p50Microseconds / 1000, 2)) ms, "
                        + "p99 \(TextTable.fixed(summary.p99Microseconds / 1000, 2)) ms over \(summary.count) requests"
                )
            } catch {
                report.say("  upstream latency \(latency) ms: failed — \(error)")
            }
        }
        self.upstream.setLatency(.zero)

        // Each caller holds a socket here and one in the daemon; keep room for everything else.
        let callers = min(configuration.herdSize, max(fileLimit - 64, 1))
        do {
            let herd = try self.measureHerd(callers: callers, upstreamMilliseconds: 50)
            report.say()
            report.say(
                "single flight: \(herd.callers) simultaneous cold callers (stand-in latency 50 ms) → "
                    + "\(herd.upstreamCalls) upstream token call(s) (must be 1: \(herd.upstreamCalls == 1 ? "yes" : "NO")), "
                    + "\(herd.succeeded)/\(herd.callers) answered 200, all answered within "
                    + "\(TextTable.fixed(herd.seconds * 1000, 1)) ms"
            )
            if callers < configuration.herdSize {
                report.say(
                    "  (the open-file limit allowed \(callers) of the \(configuration.herdSize) callers asked for)"
                )
            }
        } catch {
            report.say("single flight: failed — \(error)")
        }
        self.upstream.setLatency(.zero)
    }

    private func measureColdLatency(upstreamMilliseconds: Int, samples: Int) throws -> LatencySummary {
        self.upstream.setLatency(.milliseconds(upstreamMilliseconds))
        var latencies: [UInt64] = []
        for sample in 0..<samples {
            let id = "cold-\(upstreamMilliseconds)ms-\(sample)"
            try Self.addConnection(id, daemon: self.daemon, upstream: self.upstream)
            let connection = try BlockingHTTPConnection(socketPath: self.daemon.socketPath)
            defer { connection.close() }
            let request = BlockingHTTPConnection.request(path: VaultDaemon.tokenPath(connection: id))
            let begin = MonotonicClock.now()
            try connection.send(request)
            let response = try connection.receive(keepBody: true)
            let end = MonotonicClock.now()
            guard response.status == 200 else {
                throw BenchError(
                    "GET token of \(id) answered \(response.status): \(String(decoding: response.body, as: UTF8.self))"
                )
            }
            latencies.append(end - begin)
        }
        return LatencySummary(nanoseconds: latencies)
    }

    private struct Herd {
        var callers: Int
        var succeeded: Int
        var upstreamCalls: Int
        var seconds: Double
    }

    /// Opens `callers` connections first, then sends one token request on each as fast as the loop goes, then reads
    /// every answer: all requests are in the daemon while the stand-in holds the first upstream call.
    private func measureHerd(callers: Int, upstreamMilliseconds: Int) throws -> Herd {
        let id = "herd"
        try Self.addConnection(id, daemon: self.daemon, upstream: self.upstream)
        self.upstream.setLatency(.milliseconds(upstreamMilliseconds))
        let connections = try (0..<callers).map { _ in try BlockingHTTPConnection(socketPath: self.daemon.socketPath) }
        defer {
            for connection in connections {
                connection.close()
            }
        }
        let callsBefore = self.upstream.calls(.v2Token)
        let request = BlockingHTTPConnection.request(path: VaultDaemon.tokenPath(connection: id))
        let begin = MonotonicClock.now()
        for connection in connections {
            try connection.send(request)
        }
        var succeeded = 0
        for connection in connections where try connection.receive().status == 200 {
            succeeded += 1
        }
        let end = MonotonicClock.now()
        let callsAfter = self.upstream.calls(.v2Token)
        return Herd(
            callers: callers,
            succeeded: succeeded,
            upstreamCalls: callsAfter - callsBefore,
            seconds: Double(end - begin) / 1e9
        )
    }

    // MARK: - Proxy case

    /// The connection of the proxy case: its API base URL is `upstream`, which answers every token exchange, so
    /// the credentials are made up.
    static let proxyConnection = "bench-proxy"

    /// The path prefix of the proxy route of ``proxyConnection``, which nginx's `proxy_pass` maps too.
    static var proxyPrefix: String { "/v1/connections/\(Self.proxyConnection)/proxy/" }

    /// Adds ``proxyConnection`` against `upstream` and returns its proxy route as a server under test. Its first
    /// request (the harness's probe) makes the one token exchange; every measured request is then served with the
    /// cached token.
    /// - Throws: `BenchError` with `connvaultctl`'s message when the connection cannot be added.
    func proxyRoute(upstream: NginxUpstream) throws -> VaultProxy {
        // A made-up credential; the upstream answers any with the same token.
        let secret = "bench-secret-proxy-\(UInt64.random(in: 0...UInt64.max))"
        try self.daemon.addConnection(
            id: Self.proxyConnection,
            clientID: Self.clientID(Self.proxyConnection),
            clientSecret: secret,
            apiBaseURL: upstream.baseURL
        )
        return VaultProxy(
            daemon: self.daemon,
            requestPath: Self.proxyPrefix + String(NginxUpstream.personsPath.dropFirst()),
            upstream: upstream
        )
    }

    // MARK: - Connections

    /// Each connection gets a client of its own at the stand-in, as separate integrations would at Personio.
    private static func clientID(_ connection: String) -> String {
        "bench-client-\(connection)"
    }

    private static func addConnection(_ id: String, daemon: VaultDaemon, upstream: PersonioStandIn) throws {
        // A made-up credential for the stand-in only; it exists for the length of this run.
        let secret = "bench-secret-\(id)-\(UInt64.random(in: 0...UInt64.max))"
        upstream.register(clientID: Self.clientID(id), clientSecret: secret)
        try daemon.addConnection(
            id: id,
            clientID: Self.clientID(id),
            clientSecret: secret,
            apiBaseURL: upstream.baseURL
        )
    }
}
