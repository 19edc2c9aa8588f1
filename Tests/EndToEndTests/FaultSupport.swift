import Foundation
import Logging
import Synchronization
import TestSupport
import VaultAPI
import VaultStore

#if canImport(Glibc)
import Glibc
#endif

/// The fault injector of `Tests/FaultShim/faultshim.c`, compiled once per test run with the system C compiler into
/// a shared object that `connvaultd` loads with `LD_PRELOAD`.
enum FaultShim {
    private static let built = Mutex<Result<String, TestSupportError>?>(nil)

    /// The shared object's path; compiled on first use.
    static func library() throws -> String {
        try Self.built.withLock { built in
            if built == nil { built = Self.compile() }
            return try built!.get()
        }
    }

    private static func compile() -> Result<String, TestSupportError> {
        // Tests/EndToEndTests/FaultSupport.swift → Tests/FaultShim/faultshim.c
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("FaultShim/faultshim.c").path
        let output = "/tmp/connvault-faultshim-\(getpid()).so"
        let compilers =
            ["/usr/bin/cc", "/usr/bin/gcc", "/usr/bin/clang", "/usr/local/bin/clang"]
            + (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map { "\($0)/clang" }
        guard let compiler = compilers.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            return .failure(TestSupportError("no C compiler (cc, gcc or clang) to build \(source)"))
        }
        do {
            let result = try Command.run(
                compiler,
                ["-shared", "-fPIC", "-O1", "-Wall", "-o", output, source, "-ldl"]
            )
            guard result.status == 0 else {
                return .failure(TestSupportError("cannot compile \(source):\n\(result)"))
            }
            atexit { unlink("/tmp/connvault-faultshim-\(getpid()).so") }
            return .success(output)
        } catch {
            return .failure(TestSupportError("cannot run \(compiler): \(error)"))
        }
    }
}

/// The shim's control file and hit counter for one daemon.
struct FaultControl: Sendable {
    let controlPath: String
    let hitsPath: String

    init(directory: TemporaryDirectory) {
        self.controlPath = directory.file("fault.control")
        self.hitsPath = directory.file("fault.hits")
        FileManager.default.createFile(atPath: self.controlPath, contents: Data())
    }

    /// Replaces the rules (`MODE OP TEXT`, see faultshim.c); takes effect at the daemon's next write or sync.
    func set(_ rules: [String]) throws {
        // Written to a temporary file and renamed, so the shim never reads half a rule.
        let temporary = self.controlPath + ".tmp"
        try Data((rules.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: temporary))
        guard Glibc.rename(temporary, self.controlPath) == 0 else {
            throw TestSupportError("cannot install \(self.controlPath): \(String(cString: strerror(errno)))")
        }
    }

    /// No rules; and no pause marker (a daemon killed while paused leaves its marker behind).
    func clear() throws {
        try self.set([])
        unlink(self.hitsPath + ".paused")
    }

    /// Calls the shim failed or paused so far.
    var hits: Int {
        Int(
            ((try? String(contentsOfFile: self.hitsPath, encoding: .utf8)) ?? "").trimmingCharacters(
                in: .whitespacesAndNewlines
            )
        )
            ?? 0
    }

    /// What the daemon is paused in (`OP PATH`), or nil when it is not paused.
    var paused: String? { try? String(contentsOfFile: self.hitsPath + ".paused", encoding: .utf8) }

    var environment: [String: String] {
        ["CONNVAULT_FAULT_CONTROL": self.controlPath, "CONNVAULT_FAULT_HITS": self.hitsPath]
    }
}

/// `connvaultd --dev` in a temporary directory, like `DaemonProcess`, with the fault shim preloaded and an
/// environment of its own.
final class FaultyDaemon: @unchecked Sendable {
    // @unchecked Sendable: `process` is only touched from the test that owns this instance.
    let directory: TemporaryDirectory
    let control: FaultControl
    let logPath: String
    private let arguments: [String]
    private var process: ChildProcess?

    var stateDirectory: String { "\(self.directory.path)/.connvault" }
    var adminSocket: String { "\(self.stateDirectory)/admin.sock" }
    var appSocket: String { "\(self.stateDirectory)/app.sock" }
    var databasePath: String { "\(self.stateDirectory)/vault.sqlite3" }
    var keyFile: String { "\(self.stateDirectory)/master.key" }
    var isRunning: Bool { self.process?.isRunning ?? false }
    var pid: Int32? { self.process?.pid }

    init(directory: TemporaryDirectory, arguments: [String] = ["--dev", "--log-level", "info"]) {
        self.directory = directory
        self.control = FaultControl(directory: directory)
        self.logPath = directory.file("connvaultd.log")
        self.arguments = arguments
    }

    /// Starts the daemon with the shim and waits until its admin socket answers `GET /v1/health`.
    func start(preload: Bool = true, timeout: Duration = .seconds(30)) throws {
        var environment = ProcessInfo.processInfo.environment
        if preload {
            environment["LD_PRELOAD"] = try FaultShim.library()
            environment.merge(self.control.environment) { _, new in new }
        }
        let log = open(self.logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        if log >= 0 { close(log) }
        let process = try ChildProcess(
            Binaries.daemon,
            self.arguments,
            environment: environment,
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
    func stop(signal: Int32 = SIGTERM, timeout: Duration = .seconds(20)) -> ChildProcess.Termination? {
        guard let process = self.process else { return nil }
        process.signal(signal)
        let termination = process.waitForExit(timeout: timeout)
        self.process = nil
        return termination
    }

    func log() -> String { (try? String(contentsOfFile: self.logPath, encoding: .utf8)) ?? "" }

    func ctl(_ arguments: [String], stdin: String? = nil) throws -> CommandResult {
        try Command.run(
            Binaries.control,
            arguments,
            stdin: stdin,
            environment: ["CONNVAULT_ADMIN_SOCKET": self.adminSocket, "CONNVAULT_APP_SOCKET": self.appSocket],
            directory: self.directory.path
        )
    }

    /// `connvaultctl ARGS --json`, decoded; throws unless it exits 0.
    func ctlJSON<T: Decodable>(_ type: T.Type, _ arguments: [String], stdin: String? = nil) throws -> T {
        let result = try self.ctl(arguments + ["--json"], stdin: stdin)
        guard result.status == 0 else { throw TestSupportError("connvaultctl \(arguments) failed:\n\(result)") }
        do {
            return try VaultJSON.decoder().decode(T.self, from: Data(result.stdout.utf8))
        } catch {
            throw TestSupportError("connvaultctl \(arguments): cannot decode \(T.self) (\(error)) from:\n\(result)")
        }
    }

    deinit {
        self.process?.killGroup()
        _ = self.process?.waitForExit(timeout: .seconds(10))
    }
}

/// What a restarted vault must still be: checked on the files while no daemon runs.
enum StoreCheck {
    /// `PRAGMA integrity_check` of the database file ("ok" when sound), opened by the store itself.
    static func integrity(of path: String) async throws -> String {
        let database = try VaultDatabase(path: path, chainHash: { $0 }, logger: Logger(label: "test"))
        defer { try? database.close() }
        return try await database.integrityCheck()
    }
}
