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
    /// Stops the process. Calling it again does nothing.
    func stop()
}
