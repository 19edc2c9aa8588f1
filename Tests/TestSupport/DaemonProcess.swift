import Foundation

/// A `connvaultd` started for a test, in its own temporary directory, with its log captured to a file.
public final class DaemonProcess: @unchecked Sendable {
    // @unchecked Sendable: `process` is only touched from the test that owns this instance.
    public let directory: TemporaryDirectory
    public let arguments: [String]
    public let logPath: String
    private var process: ChildProcess?

    /// The `--dev` layout: state, key and sockets in `<directory>/.connvault/`.
    public var stateDirectory: String { "\(self.directory.path)/.connvault" }
    public var adminSocket: String { "\(self.stateDirectory)/admin.sock" }
    public var appSocket: String { "\(self.stateDirectory)/app.sock" }
    public var databasePath: String { "\(self.stateDirectory)/vault.sqlite3" }
    public var keyFile: String { "\(self.stateDirectory)/master.key" }

    /// The environment `connvaultctl` needs to find this daemon.
    public var clientEnvironment: [String: String] {
        ["CONNVAULT_ADMIN_SOCKET": self.adminSocket, "CONNVAULT_APP_SOCKET": self.appSocket]
    }

    public var pid: Int32? { self.process?.pid }

    /// - Parameters:
    ///   - directory: where it runs (its working directory, since `--dev` keeps state in `./.connvault`).
    ///   - arguments: defaults to `--dev --log-level debug`.
    public init(directory: TemporaryDirectory, arguments: [String] = ["--dev", "--log-level", "debug"]) {
        self.directory = directory
        self.arguments = arguments
        self.logPath = directory.file("connvaultd.log")
    }

    /// Starts the daemon and waits until its admin socket answers `GET /v1/health`.
    /// - Parameter environment: added to (and overriding) this process's environment for the daemon.
    public func start(environment: [String: String] = [:], timeout: Duration = .seconds(30)) throws {
        let process = try ChildProcess(
            Binaries.daemon,
            self.arguments,
            environment: ProcessInfo.processInfo.environment.merging(environment) { _, new in new },
            directory: self.directory.path,
            standardOutput: .file(self.logPath),
            standardError: .standardOutput
        )
        self.process = process
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard process.isRunning else {
                throw TestSupportError(
                    "connvaultd ended (\(process.termination.map { "\($0)" } ?? "?")) during start-up:\n\(self.log())"
                )
            }
            if let response = try? RawHTTP.request(
                socket: self.adminSocket,
                "GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n"
            ),
                response.status == 200
            {
                return
            }
            usleep(20_000)
        }
        throw TestSupportError("connvaultd did not answer on \(self.adminSocket) within \(timeout):\n\(self.log())")
    }

    /// Sends `signal` and waits for the process to end.
    @discardableResult
    public func stop(signal: Int32 = SIGTERM, timeout: Duration = .seconds(20)) -> Int32 {
        guard let process = self.process else { return 0 }
        process.signal(signal)
        let termination = process.waitForExit(timeout: timeout)
        self.process = nil
        return termination.status
    }

    public var isRunning: Bool { self.process?.isRunning ?? false }

    /// Everything the daemon has logged so far.
    public func log() -> String {
        (try? String(contentsOfFile: self.logPath, encoding: .utf8)) ?? ""
    }

    /// Runs `connvaultctl` against this daemon.
    public func ctl(
        _ arguments: [String],
        stdin: String? = nil,
        environment: [String: String] = [:]
    ) throws -> CommandResult {
        try Command.run(
            Binaries.control,
            arguments,
            stdin: stdin,
            environment: self.clientEnvironment.merging(environment) { _, new in new },
            directory: self.directory.path
        )
    }

    deinit {
        self.process?.killGroup()
        _ = self.process?.waitForExit(timeout: .seconds(10))
    }
}

extension DaemonProcess {
    /// Opens the temporary directory and the state directory to other uids (mode 0755), so that a caller of another
    /// uid reaches the sockets through the file system; each socket's own mode still decides who may connect.
    public func openToOtherUIDs() {
        chmod(self.directory.path, 0o755)
        chmod(self.stateDirectory, 0o755)
    }
}
