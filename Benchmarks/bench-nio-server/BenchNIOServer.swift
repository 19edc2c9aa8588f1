import ArgumentParser

/// A bare SwiftNIO HTTP/1.1 server on a Unix socket that answers every request with one fixed JSON body: the
/// baseline `connvault-bench` compares the vault's app socket against.
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

    func run() throws {
        try FixedResponseServer(socketPath: self.socket, body: self.body, threads: self.threads).run()
    }
}
