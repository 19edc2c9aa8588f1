import Foundation
import Logging
import TestSupport
import VaultAPI
import VaultLocks
import VaultStore

#if canImport(Glibc)
import Glibc
#endif

/// The fault injector of `Tests/FaultShim/faultshim.c`, compiled once per test run with the system C compiler into
/// a shared object that `connvaultd` loads with `LD_PRELOAD`.
enum FaultShim {
    private static let built = Locked<Result<String, TestSupportError>?>(nil)

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
final class FaultyDaemon: Sendable {
    let daemon: DaemonProcess
    let control: FaultControl

    var directory: TemporaryDirectory { self.daemon.directory }
    var logPath: String { self.daemon.logPath }
    var stateDirectory: String { self.daemon.stateDirectory }
    var adminSocket: String { self.daemon.adminSocket }
    var appSocket: String { self.daemon.appSocket }
    var databasePath: String { self.daemon.databasePath }
    var keyFile: String { self.daemon.keyFile }
    var isRunning: Bool { self.daemon.isRunning }
    var pid: Int32? { self.daemon.pid }

    init(directory: TemporaryDirectory, arguments: [String] = ["--dev", "--log-level", "info"]) {
        self.daemon = DaemonProcess(directory: directory, arguments: arguments)
        self.control = FaultControl(directory: directory)
    }

    /// Starts the daemon with the shim and waits until its admin socket answers `GET /v1/health`.
    func start(preload: Bool = true, timeout: Duration = .seconds(30)) throws {
        var environment: [String: String] = [:]
        if preload {
            environment["LD_PRELOAD"] = try FaultShim.library()
            environment.merge(self.control.environment) { _, new in new }
        }
        try self.daemon.start(environment: environment, timeout: timeout)
    }

    /// Sends `signal` and waits for the process to end.
    @discardableResult
    func stop(signal: Int32 = SIGTERM, timeout: Duration = .seconds(20)) -> Int32 {
        self.daemon.stop(signal: signal, timeout: timeout)
    }

    func log() -> String { self.daemon.log() }

    func ctl(_ arguments: [String], stdin: String? = nil) throws -> CommandResult {
        try self.daemon.ctl(arguments, stdin: stdin)
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
