import CTestSupport
import Dispatch
import Foundation
import Synchronization
import VaultLocks

#if canImport(Glibc)
import Glibc
#endif

/// A program a test runs, started with `posix_spawn` and reaped by this type alone.
///
/// Why not Foundation's `Process`: its child reaper is shared by every process in the test run (one stuck `wait4`
/// held up every `waitUntilExit`), and a child could inherit a descriptor another test had just opened, so a daemon
/// one test started kept the write end of another test's output pipe open and that test never saw end-of-file.
/// Here the child holds standard input, output and error and the descriptors passed by name, nothing else: every
/// descriptor TestSupport opens is close-on-exec, and the last file action closes every descriptor above the
/// passed ones in the child, whatever another thread opened without `O_CLOEXEC`. Each child has a reaper thread of
/// its own (a blocking `waitpid` on its pid only), every wait has a deadline after which the child's process group
/// is killed with SIGKILL, and captured output is read on dedicated threads, so no wait blocks Swift's cooperative
/// pool.
public final class ChildProcess: Sendable {
    /// What the child reads on standard input.
    public enum Input: Sendable {
        /// `/dev/null`.
        case null
        /// These bytes, then end-of-file.
        case bytes([UInt8])
    }

    /// Where the child's standard output or error goes.
    public enum Output: Sendable {
        /// `/dev/null`.
        case null
        /// A pipe read to its end on a thread of its own: ``standardOutput`` / ``standardError``.
        case capture
        /// Appended to this file (created when missing).
        case file(String)
        /// Wherever this process's own goes.
        case inherit
        /// (Standard error only.) The same as standard output.
        case standardOutput
    }

    /// How the child ended.
    public struct Termination: Sendable, Equatable, CustomStringConvertible {
        /// The exit status, or the number of the signal that ended it (as Foundation's `terminationStatus`).
        public var status: Int32
        /// Whether a signal ended it.
        public var signaled: Bool
        /// Whether a deadline passed and this type killed it.
        public var timedOut: Bool

        public init(status: Int32, signaled: Bool, timedOut: Bool) {
            self.status = status
            self.signaled = signaled
            self.timedOut = timedOut
        }

        public var description: String {
            let how = self.signaled ? "signal \(self.status)" : "exit \(self.status)"
            return self.timedOut ? "\(how) (killed at its deadline)" : how
        }
    }

    /// The child's pid (its process group too).
    public let pid: pid_t
    public let executable: String
    public let arguments: [String]
    /// What the reaper thread shares with this instance (not the instance itself, so a forgotten child is still
    /// killed in `deinit`).
    private let reaped = Reaped()
    private var exited: DispatchGroup { self.reaped.exited }
    private let outputs: [OutputReader]

    private final class Reaped: Sendable {
        struct State {
            var termination: Termination?
            var killedAtDeadline = false
        }
        let state = Locked(State())
        let exited = DispatchGroup()
    }

    /// Starts `executable`.
    ///
    /// - Parameters:
    ///   - executable: An absolute path (no `PATH` search).
    ///   - arguments: Its arguments, without the program name.
    ///   - environment: Its whole environment (default: this process's).
    ///   - directory: Its working directory (default: this process's).
    ///   - standardInput: What it reads.
    ///   - standardOutput: Where its output goes.
    ///   - standardError: Where its errors go.
    ///   - passing: Further descriptors it gets, keyed by the number it sees them under (e.g. `[3: listener]` for
    ///     systemd's `LISTEN_FDS`); the values are this process's descriptors and stay open here.
    /// - Throws: `TestSupportError` when a pipe cannot be made or `posix_spawn` fails.
    public init(
        _ executable: String,
        _ arguments: [String] = [],
        environment: [String: String] = ProcessInfo.processInfo.environment,
        directory: String? = nil,
        standardInput: Input = .null,
        standardOutput: Output = .null,
        standardError: Output = .null,
        passing: [Int32: Int32] = [:]
    ) throws {
        self.executable = executable
        self.arguments = arguments
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // Descriptors to close here once the child has its copies.
        var parentCloses: [Int32] = []
        var readers: [(fd: Int32, stream: String)] = []
        var inputWriter: (fd: Int32, bytes: [UInt8])?
        defer { for fd in parentCloses { close(fd) } }
        do {
            if let directory { cts_spawn_file_actions_addchdir(&actions, directory) }
            switch standardInput {
            case .null:
                posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            case .bytes(let bytes):
                let pipe = try Self.makePipe()
                posix_spawn_file_actions_adddup2(&actions, pipe.read, 0)
                parentCloses.append(pipe.read)
                inputWriter = (pipe.write, bytes)
            }
            for (target, output) in [(Int32(1), standardOutput), (Int32(2), standardError)] {
                switch output {
                case .null:
                    posix_spawn_file_actions_addopen(&actions, target, "/dev/null", O_WRONLY, 0)
                case .capture:
                    let pipe = try Self.makePipe()
                    posix_spawn_file_actions_adddup2(&actions, pipe.write, target)
                    parentCloses.append(pipe.write)
                    readers.append((pipe.read, target == 1 ? "stdout" : "stderr"))
                case .file(let path):
                    posix_spawn_file_actions_addopen(&actions, target, path, O_WRONLY | O_APPEND | O_CREAT, 0o644)
                case .inherit:
                    break
                case .standardOutput:
                    posix_spawn_file_actions_adddup2(&actions, 1, target)
                }
            }
            // Copied above every target first, so that no dup2 overwrites a source another one still needs, and a
            // source already at its target still loses close-on-exec in the child.
            for (target, source) in passing.sorted(by: { $0.key < $1.key }) {
                let copy = fcntl(source, F_DUPFD_CLOEXEC, 64)
                guard copy >= 0 else { throw TestSupportError("dup \(source): \(Self.lastError())") }
                parentCloses.append(copy)
                posix_spawn_file_actions_adddup2(&actions, copy, target)
            }
            cts_spawn_file_actions_addclosefrom(&actions, (passing.keys.max() ?? 2) + 1)
        } catch {
            for reader in readers { close(reader.fd) }
            if let inputWriter { close(inputWriter.fd) }
            throw error
        }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Default dispositions and an empty mask: a test process that ignores SIGHUP or SIGTERM (a signal sequence
        // of an in-process daemon) must not hand that on. Its own process group, so a deadline kills the tree.
        var all = sigset_t()
        sigfillset(&all)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(
            &attributes,
            Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP)
        )

        let argv = ([executable] + arguments).map { strdup($0) }
        let envp = environment.map { strdup("\($0.key)=\($0.value)") }
        defer {
            for pointer in argv + envp { free(pointer) }
        }
        var pid: pid_t = 0
        // ETXTBSY: a test that has just written the executable (a copy of a program) shares the process with tests
        // that spawn children; a child forked while the copy's descriptor was open holds it until its exec closes it
        // (or, for a descriptor without close-on-exec, until the child exits). The kernel refuses to run a file open
        // for writing, so the spawn is tried again for a bounded time, as Go's os/exec does. (Programs the tests write
        // go through `ExecutableFile`, which leaves no such descriptor anywhere; this stays for anything else, and
        // cannot help a program that a child execs itself, such as `setpriv`.)
        let busyDeadline = ContinuousClock.now + .seconds(10)
        var result: Int32
        repeat {
            result = (argv + [nil]).withUnsafeBufferPointer { argvBuffer in
                (envp + [nil]).withUnsafeBufferPointer { envpBuffer in
                    posix_spawn(
                        &pid,
                        executable,
                        &actions,
                        &attributes,
                        UnsafeMutablePointer(mutating: argvBuffer.baseAddress!),
                        UnsafeMutablePointer(mutating: envpBuffer.baseAddress!)
                    )
                }
            }
            if result == ETXTBSY { usleep(10_000) }
        } while result == ETXTBSY && ContinuousClock.now < busyDeadline
        guard result == 0 else {
            for reader in readers { close(reader.fd) }
            if let inputWriter { close(inputWriter.fd) }
            throw TestSupportError("posix_spawn \(executable): \(String(cString: strerror(result)))")
        }
        self.pid = pid
        self.outputs = readers.map { OutputReader(fd: $0.fd, name: "\(executable) \($0.stream)") }
        if let inputWriter {
            Self.thread("stdin of \(executable)") {
                var sent = 0
                while sent < inputWriter.bytes.count {
                    let count = inputWriter.bytes[sent...].withUnsafeBytes {
                        write(inputWriter.fd, $0.baseAddress, $0.count)
                    }
                    if count < 0 && errno == EINTR { continue }
                    if count <= 0 { break }
                    sent += count
                }
                close(inputWriter.fd)
            }
        }
        self.exited.enter()
        Self.thread("reaper of \(pid)") { [pid = self.pid, reaped = self.reaped] in
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            // WIFSIGNALED / WTERMSIG / WEXITSTATUS are macros Swift does not import.
            let signal = status & 0x7f
            reaped.state.withLock {
                $0.termination = Termination(
                    status: signal == 0 ? (status >> 8) & 0xff : signal,
                    signaled: signal != 0,
                    timedOut: $0.killedAtDeadline
                )
            }
            reaped.exited.leave()
        }
    }

    /// Whether it has not ended yet.
    public var isRunning: Bool { self.reaped.state.withLock { $0.termination == nil } }

    /// How it ended, once it has.
    public var termination: Termination? { self.reaped.state.withLock { $0.termination } }

    /// Sends `signal` to the child (not its process group), unless it has been reaped already.
    public func signal(_ signal: Int32) {
        // Under the lock, so that a reaped pid another process may now hold is never signalled.
        self.reaped.state.withLock {
            if $0.termination == nil { _ = kill(self.pid, signal) }
        }
    }

    /// Kills the child's process group with SIGKILL, unless it has been reaped already.
    public func killGroup() {
        self.reaped.state.withLock {
            guard $0.termination == nil else { return }
            $0.killedAtDeadline = true
            _ = kill(-self.pid, SIGKILL)
            _ = kill(self.pid, SIGKILL)
        }
    }

    /// Waits up to `timeout` for the child to end; past it, kills its process group and reaps it.
    ///
    /// Blocks the calling thread: call it from a synchronous test or ``Blocking/run(_:)``, or use
    /// ``exit(timeout:)`` from async code.
    @discardableResult
    public func waitForExit(timeout: Duration = .seconds(60)) -> Termination {
        if self.exited.wait(timeout: .now() + Self.interval(timeout)) == .timedOut {
            self.killGroup()
            // SIGKILL cannot be caught; the bound only guards against a process stuck in the kernel.
            _ = self.exited.wait(timeout: .now() + 30)
        }
        return self.termination ?? Termination(status: SIGKILL, signaled: true, timedOut: true)
    }

    /// Waits up to `timeout` for the child to end without holding a thread; past it, kills its process group and
    /// reaps it.
    @discardableResult
    public func exit(timeout: Duration = .seconds(60)) async -> Termination {
        let deadline = DispatchWorkItem { [weak self] in self?.killGroup() }
        DispatchQueue.global().asyncAfter(deadline: .now() + Self.interval(timeout), execute: deadline)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            self.exited.notify(queue: .global()) { continuation.resume() }
        }
        deadline.cancel()
        return self.termination ?? Termination(status: SIGKILL, signaled: true, timedOut: true)
    }

    /// Whether the child ends within `timeout` (it is left running when not). Blocks the calling thread.
    public func hasExited(within timeout: Duration) -> Bool {
        self.exited.wait(timeout: .now() + Self.interval(timeout)) == .success
    }

    /// Whether the child ends within `timeout` (it is left running when not), without holding a thread.
    public func exited(within timeout: Duration) async -> Bool {
        let once = Once()
        return await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let resume = { @Sendable (exited: Bool) in
                if once.first() { continuation.resume(returning: exited) }
            }
            self.exited.notify(queue: .global()) { resume(true) }
            DispatchQueue.global().asyncAfter(deadline: .now() + Self.interval(timeout)) { resume(false) }
        }
    }

    /// Everything it wrote to a captured standard output, once that pipe is closed (at most `timeout` after the
    /// call: a grandchild may hold the pipe open).
    public func standardOutput(timeout: Duration = .seconds(10)) -> String {
        self.outputs.first { $0.name.hasSuffix("stdout") }?.text(timeout: timeout) ?? ""
    }

    /// Everything it wrote to a captured standard error (see ``standardOutput(timeout:)``).
    public func standardError(timeout: Duration = .seconds(10)) -> String {
        self.outputs.first { $0.name.hasSuffix("stderr") }?.text(timeout: timeout) ?? ""
    }

    deinit {
        // A test that forgot its child must not leave it running: killed and reaped here.
        if self.isRunning {
            self.killGroup()
            _ = self.exited.wait(timeout: .now() + 30)
        }
        for output in self.outputs { output.stop() }
    }

    // MARK: - Helpers

    /// A pipe whose both ends are close-on-exec from the start (`pipe2(O_CLOEXEC)`).
    ///
    /// - Throws: `TestSupportError` when the pipe cannot be made.
    public static func makePipe() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        guard cts_pipe_cloexec(&fds) == 0 else { throw TestSupportError("pipe2: \(Self.lastError())") }
        return (fds[0], fds[1])
    }

    static func lastError() -> String { String(cString: strerror(errno)) }

    static func interval(_ duration: Duration) -> DispatchTimeInterval {
        let (seconds, attoseconds) = duration.components
        return .nanoseconds(Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000))
    }

    /// Runs `body` on a thread of its own (not a dispatch worker: these block for the child's whole life).
    static func thread(_ name: String, _ body: @escaping @Sendable () -> Void) {
        let thread = Thread(block: body)
        thread.name = name
        thread.start()
    }
}

/// True the first time only.
final class Once: Sendable {
    private let done = Atomic<Bool>(false)
    func first() -> Bool { !self.done.exchange(true, ordering: .acquiringAndReleasing) }
}

/// Reads one pipe to its end on a thread of its own.
final class OutputReader: Sendable {
    let name: String
    private let done = DispatchGroup()
    private let data = Locked<[UInt8]>([])
    private let stopped = Atomic<Bool>(false)

    init(fd: Int32, name: String) {
        self.name = name
        self.done.enter()
        // The thread keeps this reader alive until the pipe ends or reading is stopped.
        ChildProcess.thread(name) { [self] in
            defer {
                close(fd)
                self.done.leave()
            }
            var buffer = [UInt8](repeating: 0, count: 65536)
            // poll with a bound, so that a reader whose pipe a grandchild keeps open can still be stopped.
            while !self.stopped.load(ordering: .relaxed) {
                var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let ready = poll(&poller, 1, 200)
                if ready < 0 && errno == EINTR { continue }
                if ready < 0 { return }
                if ready == 0 { continue }
                let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { return }
                self.data.withLock { $0.append(contentsOf: buffer[0..<count]) }
            }
        }
    }

    /// What was read, after end-of-file or `timeout` (then reading stops).
    func text(timeout: Duration) -> String {
        if self.done.wait(timeout: .now() + ChildProcess.interval(timeout)) == .timedOut {
            self.stop()
            _ = self.done.wait(timeout: .now() + 1)
        }
        return String(decoding: self.data.withLock { $0 }, as: UTF8.self)
    }

    func stop() { self.stopped.store(true, ordering: .relaxed) }
}
