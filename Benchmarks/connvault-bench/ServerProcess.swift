import Dispatch
import Synchronization
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A program the harness starts — a server under test, or `connvaultctl` and `nginx -v` run to their end — through
/// the tests' `ChildProcess`: close-on-exec descriptors, its own reaper, a deadline on every wait, and a process
/// group of its own.
///
/// That process group means an interrupt from the terminal reaches only the harness, so the harness ends its
/// children itself: ``endChildrenOnInterrupt(removing:)`` turns SIGINT and SIGTERM into a `terminate()` of every
/// server still running, then removes the run's directory and exits.
final class ServerProcess: Sendable {
    let executable: String
    let logPath: String
    private let child: ChildProcess

    var pid: pid_t { self.child.pid }
    var isRunning: Bool { self.child.isRunning }

    /// The servers still running, by pid, for ``endChildrenOnInterrupt(removing:)``.
    private static let running = Mutex<[pid_t: ServerProcess]>([:])

    /// Starts `executable` with its standard output and error appended to `logPath`.
    /// - Parameters:
    ///   - environment: Added to (or replacing entries of) this process's environment.
    ///   - directory: Its working directory; this process's when `nil`.
    /// - Throws: `TestSupportError` when it cannot be started.
    init(
        executable: String,
        arguments: [String],
        environment: [String: String] = [:],
        directory: String? = nil,
        logPath: String
    ) throws {
        self.executable = executable
        self.logPath = logPath
        self.child = try ChildProcess(
            executable,
            arguments,
            environment: Self.environment(adding: environment),
            directory: directory,
            standardOutput: .file(logPath),
            standardError: .standardOutput
        )
        Self.running.withLock { $0[self.child.pid] = self }
    }

    /// Waits until the server accepts on `socketPath`, or fails early when it has ended.
    /// - Throws: `BenchError` with the end of its log.
    func waitUntilAccepting(_ socketPath: String, timeout: Duration = .seconds(30)) throws {
        do {
            try BlockingHTTPConnection.waitUntilAccepting(socketPath: socketPath, timeout: timeout) {
                self.child.isRunning
            }
        } catch {
            let how = self.child.termination.map { "exited (\($0))" } ?? "did not accept within \(timeout)"
            throw BenchError("\(self.executable) \(how) on \(socketPath):\n\(self.logTail())")
        }
    }

    /// SIGTERM, then SIGKILL to its process group if it has not ended after `timeout`. Calling it again does nothing.
    func terminate(timeout: Duration = .seconds(10)) {
        self.child.signal(SIGTERM)
        self.child.waitForExit(timeout: timeout)
        Self.running.withLock { $0[self.child.pid] = nil }
    }

    /// The end of the log, for error messages.
    func logTail(lines: Int = 20) -> String {
        let text = (try? FileSystem.readText(self.logPath)) ?? ""
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    /// Runs a program to its end (at most `timeout`, then it is killed).
    /// - Parameter input: Written to its standard input, which is then closed; `/dev/null` when `nil`.
    /// - Returns: Its exit status (128 + the signal number when a signal ended it) and what it wrote to standard
    ///   output and error.
    static func run(
        executable: String,
        arguments: [String],
        environment: [String: String] = [:],
        input: String? = nil,
        timeout: Duration = .seconds(60)
    ) throws -> (status: Int32, output: String) {
        let child = try ChildProcess(
            executable,
            arguments,
            environment: Self.environment(adding: environment),
            standardInput: input.map { .bytes(Array($0.utf8)) } ?? .null,
            standardOutput: .capture,
            standardError: .standardOutput
        )
        let termination = child.waitForExit(timeout: timeout)
        return (termination.signaled ? 128 + termination.status : termination.status, child.standardOutput())
    }

    /// Makes SIGINT and SIGTERM end every server still running, remove `directory`, and end the harness with 128 +
    /// the signal number. Call once, before starting servers.
    static func endChildrenOnInterrupt(removing directory: TemporaryDirectory) {
        // A signal source sees a signal only while its default action (ending the process) is off.
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        for number in [SIGINT, SIGTERM] {
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                for server in Self.running.withLock({ $0.values }) {
                    server.terminate()
                }
                directory.remove()
                exit(128 + number)
            }
            source.resume()
            Self.signalSources.append(source)
        }
    }

    /// Kept alive for the life of the process. `nonisolated(unsafe)`: written only by
    /// ``endChildrenOnInterrupt(removing:)``, which the harness calls once before it starts any thread, and never
    /// read.
    nonisolated(unsafe) private static var signalSources: [any DispatchSourceSignal] = []

    private static func environment(adding extra: [String: String]) -> [String: String] {
        var variables: [String: String] = [:]
        var entry = environ
        while let pointer = entry.pointee {
            let line = String(cString: pointer)
            if let equals = line.firstIndex(of: "=") {
                variables[String(line[..<equals])] = String(line[line.index(after: equals)...])
            }
            entry += 1
        }
        return variables.merging(extra) { _, new in new }
    }
}
