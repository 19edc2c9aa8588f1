/// The figures of one measured window: one server, one number of connections.
struct LoadResult: Sendable {
    var server: String
    var connections: Int
    /// Which round of the run this window belongs to, from 1.
    var round = 1
    /// The CPUs client and server were pinned to, or `nil` when the scheduler placed them.
    var pinnedTo: CPUSet?
    var requests: Int
    var seconds: Double
    var latency: LatencySummary
    /// CPU time the server process used in the window, all threads.
    var serverCPUMicroseconds: Double
    /// CPU time the load generator's own process used in the window.
    var clientCPUMicroseconds: Double
    /// CPU time the server's upstream used in the window (the proxy case); `nil` for a server without one.
    var upstreamCPUMicroseconds: Double?
    /// Responses whose status was not 200.
    var unexpectedStatuses: Int

    var requestsPerSecond: Double { Double(self.requests) / self.seconds }
    var serverCPUPerRequest: Double { self.serverCPUMicroseconds / Double(max(self.requests, 1)) }
    var clientCPUPerRequest: Double { self.clientCPUMicroseconds / Double(max(self.requests, 1)) }
    /// The upstream's CPU time per request, or NaN (printed as `-`) for a server without one.
    var upstreamCPUPerRequest: Double {
        (self.upstreamCPUMicroseconds ?? .nan) / Double(max(self.requests, 1))
    }
    /// The share of one CPU the upstream was busy in the window (1 = one CPU all the time), or NaN: a server of one
    /// process and one event loop, as nginx with `master_process off` is, cannot go past 1.
    var upstreamCPULoad: Double { (self.upstreamCPUMicroseconds ?? .nan) / (self.seconds * 1_000_000) }
    /// The server's and its upstream's CPU time per request together.
    var serverAndUpstreamCPUPerRequest: Double { self.serverCPUPerRequest + self.upstreamCPUPerRequest }
}
