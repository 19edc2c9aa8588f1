import ArgumentParser

/// A bare SwiftNIO HTTP/1.1 server on a Unix socket that answers every request with one fixed JSON body: the
/// baseline `connvault-bench` compares the vault's app socket against. With `--proxy-upstream` it is instead a bare
/// NIO reverse proxy to that upstream (``ProxyServer``), the baseline of the proxy route.
@main
struct BenchNIOServer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-nio-server",
        abstract: "Answer every HTTP/1.1 request on a Unix socket with a fixed JSON body (benchmark baseline)."
    )

    @Option(help: "Path of the Unix socket to listen on (replaced if it exists).")
    var socket: String

    @Option(help: "The response body, sent as application/json.")
    var body: String = #"{"ok":true}"#

    @Option(help: "Event loop threads (default: one per core).")
    var threads: Int?

    @Option(help: "Proxy to this upstream (HOST:PORT, HTTP/1.1 over TCP) instead of answering with --body.")
    var proxyUpstream: String?

    @Option(help: "With --proxy-upstream: the path prefix mapped to the upstream's root.")
    var proxyPrefix: String = "/"

    @Option(help: "With --proxy-upstream: the Authorization header sent upstream instead of the caller's.")
    var authorization: String = ""

    @Flag(help: "With --proxy-upstream: proxy with an HTTP/1.1 codec of its own instead of NIO's (a reference).")
    var raw = false

    func run() throws {
        if let upstream = self.proxyUpstream {
            guard let colon = upstream.lastIndex(of: ":"), let port = Int(upstream[upstream.index(after: colon)...])
            else {
                throw ValidationError("--proxy-upstream must be HOST:PORT")
            }
            let settings = ProxyServer.Settings(
                prefix: self.proxyPrefix,
                upstreamHost: String(upstream[..<colon]),
                upstreamPort: port,
                hostHeader: upstream,
                authorization: self.authorization
            )
            if self.raw {
                try RawProxyServer(socketPath: self.socket, settings: settings, threads: self.threads).run()
            } else {
                try ProxyServer(socketPath: self.socket, settings: settings, threads: self.threads).run()
            }
            return
        }
        try FixedResponseServer(socketPath: self.socket, body: self.body, threads: self.threads).run()
    }
}
