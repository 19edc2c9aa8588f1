import Glibc

/// A server the load generator measures: a process listening on a Unix socket, answering `GET requestPath` with a
/// 200 and a JSON body.
protocol ServerUnderTest: AnyObject {
    /// The name in the results table.
    var name: String { get }
    var socketPath: String { get }
    var requestPath: String { get }
    /// The process whose CPU time is the server's.
    var pid: pid_t { get }
    /// The process this server forwards to (the proxy case's upstream), whose CPU time is read in the same window
    /// and which is pinned with the server; `nil` for a server that answers by itself.
    var upstreamPID: pid_t? { get }
    /// Stops the process. Calling it again does nothing.
    func stop()
}

extension ServerUnderTest {
    var upstreamPID: pid_t? { nil }
}
