import Glibc
import TestSupport

/// `bench-nio-server`: a bare SwiftNIO HTTP/1.1 server with a fixed body, built from this package. The vault's app
/// socket runs on the same NIO pipeline, so the gap between the two is what the vault's own work costs.
final class NIOBenchServer: ServerUnderTest {
    let name = "bare NIO"
    let socketPath: String
    let requestPath: String
    private let process: ServerProcess

    var pid: pid_t { self.process.pid }

    /// Starts `bench-nio-server` from `binDirectory`.
    /// - Throws: `BenchError` when it is missing or does not start.
    init(binDirectory: String, directory: TemporaryDirectory, body: String, requestPath: String) throws {
        let executable = "\(binDirectory)/bench-nio-server"
        guard FileSystem.isExecutable(executable) else {
            throw BenchError(
                "\(executable) not found; build it with `swift build -c release --product bench-nio-server`"
            )
        }
        self.socketPath = directory.file("nio.sock")
        self.requestPath = requestPath
        self.process = try ServerProcess(
            executable: executable,
            arguments: ["--socket", self.socketPath, "--body", body],
            logPath: directory.file("bench-nio-server.log")
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
