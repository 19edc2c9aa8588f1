import Glibc

/// A process started with `posix_spawn`, its standard output and error appended to a log file.
///
/// Children stay in the harness's process group, so an interrupt from the terminal stops them together with it.
final class ChildProcess {
    let pid: pid_t
    let executable: String
    let logPath: String
    private var exitStatus: Int32?

    /// - Parameters:
    ///   - executable: absolute path of the program.
    ///   - arguments: arguments after the program name.
    ///   - environment: added to (or replacing entries of) this process's environment.
    ///   - workingDirectory: the child's working directory; this process's when `nil`.
    ///   - logPath: receives the child's standard output and standard error.
    ///   - input: written to the child's standard input, which is then closed; `/dev/null` when `nil`.
    /// - Throws: `BenchError` when the program cannot be started.
    init(
        executable: String,
        arguments: [String],
        environment: [String: String] = [:],
        workingDirectory: String? = nil,
        logPath: String,
        input: String? = nil
    ) throws {
        self.executable = executable
        self.logPath = logPath

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }

        // The harness ignores SIGPIPE; an ignored signal would stay ignored across exec.
        var defaultSignals = sigset_t()
        sigemptyset(&defaultSignals)
        sigaddset(&defaultSignals, SIGPIPE)
        posix_spawnattr_setsigdefault(&attributes, &defaultSignals)
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        var pipeEnds: [Int32] = [-1, -1]
        if input != nil {
            guard pipe(&pipeEnds) == 0 else { throw BenchError.posix("pipe") }
            _ = fcntl(pipeEnds[0], F_SETFD, FD_CLOEXEC)
            _ = fcntl(pipeEnds[1], F_SETFD, FD_CLOEXEC)
            posix_spawn_file_actions_adddup2(&actions, pipeEnds[0], STDIN_FILENO)
        } else {
            posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO)
        if let workingDirectory {
            guard let addChdir = GlibcExtensions.spawnAddChdir else {
                throw BenchError("posix_spawn_file_actions_addchdir_np is not available (glibc 2.29 or later needed)")
            }
            _ = addChdir(&actions, workingDirectory)
        }

        var variables: [String: String] = [:]
        var entry = environ
        while let pointer = entry.pointee {
            let line = String(cString: pointer)
            if let equals = line.firstIndex(of: "=") {
                variables[String(line[..<equals])] = String(line[line.index(after: equals)...])
            }
            entry += 1
        }
        variables.merge(environment) { _, new in new }

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv + envp {
                free(pointer)
            }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        if input != nil { close(pipeEnds[0]) }
        guard result == 0 else {
            if input != nil { close(pipeEnds[1]) }
            throw BenchError("cannot start \(executable): \(String(cString: strerror(result)))")
        }
        self.pid = pid

        if let input {
            var bytes = Array(input.utf8)
            _ = bytes.withUnsafeMutableBytes { write(pipeEnds[1], $0.baseAddress, $0.count) }
            close(pipeEnds[1])
        }
    }

    /// Runs a program to its end.
    /// - Returns: its exit code (128 + signal number when a signal ended it) and what it wrote.
    static func run(
        executable: String,
        arguments: [String],
        environment: [String: String] = [:],
        logPath: String,
        input: String? = nil
    ) throws -> (status: Int32, output: String) {
        _ = unlink(logPath)
        let child = try ChildProcess(
            executable: executable,
            arguments: arguments,
            environment: environment,
            logPath: logPath,
            input: input
        )
        let status = child.waitForExit()
        return (status, (try? FileSystem.readText(logPath)) ?? "")
    }

    /// Whether the process still runs; reaps it when it has ended.
    var isRunning: Bool {
        guard self.exitStatus == nil else { return false }
        var status: Int32 = 0
        let result = waitpid(self.pid, &status, WNOHANG)
        if result == self.pid {
            self.exitStatus = Self.decode(status)
            return false
        }
        return result == 0
    }

    /// Waits for the process to end.
    /// - Returns: its exit code, or 128 + the signal number.
    @discardableResult
    func waitForExit() -> Int32 {
        if let exitStatus { return exitStatus }
        var status: Int32 = 0
        while waitpid(self.pid, &status, 0) == -1 && errno == EINTR {}
        let decoded = Self.decode(status)
        self.exitStatus = decoded
        return decoded
    }

    /// SIGTERM, then SIGKILL if the process has not ended after `timeout` seconds.
    func terminate(timeout: Double = 10) {
        guard self.isRunning else { return }
        kill(self.pid, SIGTERM)
        let deadline = MonotonicClock.now() + UInt64(timeout * 1e9)
        while self.isRunning && MonotonicClock.now() < deadline {
            MonotonicClock.sleep(seconds: 0.01)
        }
        if self.isRunning {
            kill(self.pid, SIGKILL)
            self.waitForExit()
        }
    }

    /// The end of the log, for error messages.
    func logTail(lines: Int = 20) -> String {
        let text = (try? FileSystem.readText(self.logPath)) ?? ""
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    deinit {
        assert(self.exitStatus != nil, "\(self.executable) (pid \(self.pid)) was neither waited for nor terminated")
    }

    private static func decode(_ status: Int32) -> Int32 {
        // WIFEXITED / WEXITSTATUS / WTERMSIG are macros Swift does not import.
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }
}
