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
    /// Responses whose status was not 200.
    var unexpectedStatuses: Int

    var requestsPerSecond: Double { Double(self.requests) / self.seconds }
    var serverCPUPerRequest: Double { self.serverCPUMicroseconds / Double(max(self.requests, 1)) }
    var clientCPUPerRequest: Double { self.clientCPUMicroseconds / Double(max(self.requests, 1)) }
}
