import NIOCore
import NIOHTTP1
import NIOPosix

/// Listens on a Unix socket with the usual NIO HTTP/1.1 server pipeline (the one the vault's app socket uses) and a
/// `FixedResponseHandler` at its end; runs until the process is signalled.
struct FixedResponseServer {
    var socketPath: String
    var body: String
    /// Event loop threads; `System.coreCount` when `nil`, the layout NIO servers are normally deployed with.
    var threads: Int?

    func run() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: self.threads ?? System.coreCount)
        defer { try? group.syncShutdownGracefully() }
        let response = FixedResponseHandler.Response(body: self.body)
        let channel = try ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(FixedResponseHandler(response: response))
                }
            }
            .bind(unixDomainSocketPath: self.socketPath, cleanupExistingSocketFile: true)
            .wait()
        print("bench-nio-server listening on \(self.socketPath) with \(self.threads ?? System.coreCount) event loops")
        try channel.closeFuture.wait()
    }
}
