import Glibc
import TestSupport

/// `bench-nio-server --proxy-upstream`: a bare SwiftNIO reverse proxy in front of ``NginxUpstream`` (NIO's HTTP/1.1
/// server pipeline, a per-event-loop pool of keep-alive upstream connections with NIO's HTTP/1.1 client codec), doing
/// what ``NginxProxy`` does: maps the vault's path to the upstream's, injects `Authorization`, drops hop-by-hop
/// headers, streams the answer back. It shows what Swift and NIO cost for a proxied request on this machine without
/// an HTTP client library or any of the vault's work. With `raw`, `bench-nio-server --raw`: the same on NIO's channels
/// with an HTTP/1.1 codec of its own instead of NIO's (`RawProxyServer`), what a Swift proxy could reach below NIO's
/// HTTP layer.
final class NIOBenchProxy: ServerUnderTest {
    static let name = "bare NIO proxy"
    static let rawName = "raw NIO proxy"

    let name: String
    let socketPath: String
    let requestPath: String
    let upstreamPID: pid_t?
    private let process: ServerProcess

    var pid: pid_t { self.process.pid }

    /// Starts `bench-nio-server` from `binDirectory` as a proxy to `upstream`.
    /// - Throws: `BenchError` when it is missing or does not start.
    init(
        binDirectory: String,
        directory: TemporaryDirectory,
        upstream: NginxUpstream,
        prefix: String,
        requestPath: String,
        raw: Bool = false
    ) throws {
        let executable = "\(binDirectory)/bench-nio-server"
        guard FileSystem.isExecutable(executable) else {
            throw BenchError(
                "\(executable) not found; build it with `swift build -c release --product bench-nio-server`"
            )
        }
        self.name = raw ? Self.rawName : Self.name
        self.socketPath = directory.file(raw ? "nio-raw-proxy.sock" : "nio-proxy.sock")
        self.requestPath = requestPath
        self.upstreamPID = upstream.pid
        self.process = try ServerProcess(
            executable: executable,
            arguments: [
                "--socket", self.socketPath, "--proxy-upstream", "127.0.0.1:\(upstream.port)", "--proxy-prefix",
                prefix, "--authorization", "Bearer \(NginxUpstream.accessToken)",
            ] + (raw ? ["--raw"] : []),
            logPath: directory.file(raw ? "bench-nio-raw-proxy.log" : "bench-nio-proxy.log")
        )
        do {
            try self.process.waitUntilAccepting(self.socketPath)
        } catch {
            self.stop()
            throw error
        }
    }

    func stop() {
        self.process.terminate()
    }

    deinit {
        self.stop()
    }
}
