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
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let input = Pipe()
        process.standardInput = stdin == nil ? FileHandle.nullDevice : input
        try process.run()
        if let stdin {
            input.fileHandleForWriting.write(Data(stdin.utf8))
            try input.fileHandleForWriting.close()
        }
        // Read both pipes fully before waiting so a chatty child cannot block on a full pipe.
        let group = DispatchGroup()
        nonisolated(unsafe) var outData = Data()
        nonisolated(unsafe) var errData = Data()
        group.enter()
        DispatchQueue.global().async {
            outData = out.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        group.enter()
        DispatchQueue.global().async {
            errData = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let seconds = Double(timeout.components.seconds)
        if group.wait(timeout: .now() + seconds) == .timedOut {
            process.terminate()
            throw TestSupportError("\(executable) \(arguments) did not finish within \(seconds) s")
        }
        process.waitUntilExit()
        return CommandResult(
            status: process.terminationStatus,
            stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self)
        )
    }
}
