import Foundation

/// Where the built `connvaultd` and `connvaultctl` are: `$CONNVAULT_BIN_DIR` (set by `make test`), else the
/// package's `.build/debug`.
public enum Binaries {
    public static var directory: String {
        if let directory = ProcessInfo.processInfo.environment["CONNVAULT_BIN_DIR"], !directory.isEmpty {
            return directory
        }
        // Tests/TestSupport/Binaries.swift → package root.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug").path
    }

    public static var daemon: String { "\(Self.directory)/connvaultd" }
    public static var control: String { "\(Self.directory)/connvaultctl" }

    /// Whether both binaries are built (end-to-end tests need them).
    public static var areBuilt: Bool {
        FileManager.default.isExecutableFile(atPath: Self.daemon)
            && FileManager.default.isExecutableFile(atPath: Self.control)
    }
}

/// What a finished command printed and how it ended.
public struct CommandResult: Sendable, CustomStringConvertible {
    public var status: Int32
    public var stdout: String
    public var stderr: String

    public var description: String { "exit \(self.status)\nstdout: \(self.stdout)\nstderr: \(self.stderr)" }
}

/// Runs programs as a user would from a shell: arguments, standard input, environment.
public enum Command {
    /// Runs `executable` to completion.
    /// - Parameters:
    ///   - stdin: bytes written to its standard input, which is then closed (nil: /dev/null).
    ///   - environment: added to (and overriding) this process's environment.
    ///   - timeout: the process is killed after this long and the test fails.
    public static func run(
        _ executable: String,
        _ arguments: [String],
        stdin: String? = nil,
        environment: [String: String] = [:],
        directory: String? = nil,
        timeout: Duration = .seconds(60)
    ) throws -> CommandResult {
        let process = try ChildProcess(
            executable,
            arguments,
            environment: ProcessInfo.processInfo.environment.merging(environment) { _, new in new },
            directory: directory,
            standardInput: stdin.map { .bytes(Array($0.utf8)) } ?? .null,
            standardOutput: .capture,
            standardError: .capture
        )
        let termination = process.waitForExit(timeout: timeout)
        guard !termination.timedOut else {
            throw TestSupportError(
                "\(executable) \(arguments) did not finish within \(timeout)\nstderr: \(process.standardError(timeout: .seconds(1)))"
            )
        }
        return CommandResult(
            status: termination.status,
            stdout: process.standardOutput(),
            stderr: process.standardError()
        )
    }
}
