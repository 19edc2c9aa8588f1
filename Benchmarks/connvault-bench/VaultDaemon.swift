import Glibc
import TestSupport

/// `connvaultd --dev` from the release build, in a directory of its own, driven with `connvaultctl` as an admin
/// would; the load generator measures its app socket's cached token route.
final class VaultDaemon: ServerUnderTest {
    let name = "vault"
    let directory: String
    let requestPath: String
    private let binDirectory: String
    private let process: ServerProcess

    var pid: pid_t { self.process.pid }
    /// `--dev` keeps state and sockets in `./.connvault/` of its working directory.
    var socketPath: String { "\(self.directory)/.connvault/app.sock" }
    var adminSocketPath: String { "\(self.directory)/.connvault/admin.sock" }

    /// The route of the benchmark's hot path: a cached token.
    static func tokenPath(connection: String) -> String {
        "/v1/connections/\(connection)/token"
    }

    /// Starts the daemon and waits until both sockets accept connections.
    /// - Parameters:
    ///   - binDirectory: where `connvaultd` and `connvaultctl` are.
    ///   - directory: the daemon's working directory; its state goes to `.connvault/` inside.
    ///   - connection: the connection id whose token route is the measured path.
    /// - Throws: `BenchError` when a binary is missing or the daemon does not start.
    init(binDirectory: String, directory: TemporaryDirectory, connection: String) throws {
        for binary in ["connvaultd", "connvaultctl"] where !FileSystem.isExecutable("\(binDirectory)/\(binary)") {
            throw BenchError(
                "\(binDirectory)/\(binary) not found; build it with `swift build -c release --product \(binary)`"
            )
        }
        self.binDirectory = binDirectory
        self.directory = directory.file("vault")
        self.requestPath = Self.tokenPath(connection: connection)
        try FileSystem.makeDirectories(self.directory)
        self.process = try ServerProcess(
            executable: "\(binDirectory)/connvaultd",
            arguments: ["--dev", "--log-level", "warning"],
            directory: self.directory,
            logPath: "\(self.directory)/connvaultd.log"
        )
        do {
            try self.process.waitUntilAccepting(self.adminSocketPath)
            try self.process.waitUntilAccepting(self.socketPath)
        } catch {
            self.stop()
            throw error
        }
    }

    /// `connvaultctl add ID --provider personio-v2 … --secret-stdin --allow-uid <own uid>`.
    /// - Throws: `BenchError` with `connvaultctl`'s message when it fails.
    func addConnection(id: String, clientID: String, clientSecret: String, apiBaseURL: String) throws {
        try self.control(
            [
                "add", id, "--provider", "personio-v2", "--client-id", clientID, "--secret-stdin",
                "--api-base-url", apiBaseURL, "--allow-uid", String(getuid()),
            ],
            input: "\(clientSecret)\n"
        )
    }

    /// Runs `connvaultctl` against this daemon's admin socket.
    @discardableResult
    func control(_ arguments: [String], input: String? = nil) throws -> String {
        let (status, output) = try ServerProcess.run(
            executable: "\(self.binDirectory)/connvaultctl",
            arguments: arguments,
            environment: ["CONNVAULT_ADMIN_SOCKET": self.adminSocketPath, "CONNVAULT_APP_SOCKET": self.socketPath],
            input: input
        )
        guard status == 0 else {
            throw BenchError(
                "connvaultctl \(arguments.prefix(2).joined(separator: " ")) exited with \(status): \(output)"
            )
        }
        return output
    }

    /// The end of the daemon's log, for error messages.
    func logTail() -> String {
        self.process.logTail()
    }

    func stop() {
        self.process.terminate()
    }

    deinit {
        self.stop()
    }
}
