import Foundation
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A helper process for the caller-identity and connection-limit tests: a short Python script run under `setpriv` as
/// another uid, driven line by line over its standard input and output. Python, because the attack needs what no
/// shell tool does portably: connect to a Unix socket, fork, and let the connecting process exit while its child
/// keeps the socket.
final class ScriptProcess: @unchecked Sendable {
    // @unchecked Sendable: used only by the test that started it.
    static let python = "/usr/bin/python3"
    static var isAvailable: Bool { FileManager.default.isExecutableFile(atPath: Self.python) }

    let pid: pid_t
    private let inputFD: Int32
    private let outputFD: Int32
    private var reaped = false
    private var buffered: [UInt8] = []
    /// Every pid the script reported (its own, and its child's when it forks), to kill at the end.
    private var reportedPIDs: [Int32] = []

    /// Starts `script` as `uid`:`gid` with the supplementary `groups` (none when empty), run by `interpreter` (a
    /// copy of Python's, for the executable-identity tests).
    ///
    /// Spawned with `posix_spawn` directly rather than through Foundation: everything is prepared first, so that
    /// `beforeSpawn` (the pid steering) runs immediately before the one `clone` that takes a pid.
    init(
        script: String,
        arguments: [String],
        uid: UInt32 = 65534,
        gid: UInt32 = 65534,
        groups: [UInt32] = [],
        interpreter: String = ScriptProcess.python,
        beforeSpawn: () throws -> Void = {}
    ) throws {
        let groupArguments =
            groups.isEmpty ? ["--clear-groups"] : ["--groups", groups.map(String.init).joined(separator: ",")]
        let argv =
            ["/usr/bin/setpriv", "--reuid", String(uid), "--regid", String(gid)] + groupArguments
            + [interpreter, "-c", script] + arguments
        let inputPipe = try ChildProcess.makePipe()
        let outputPipe: (read: Int32, write: Int32)
        do {
            outputPipe = try ChildProcess.makePipe()
        } catch {
            close(inputPipe.read)
            close(inputPipe.write)
            throw error
        }
        let input = [inputPipe.read, inputPipe.write]
        let output = [outputPipe.read, outputPipe.write]
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, input[0], 0)
        posix_spawn_file_actions_adddup2(&actions, output[1], 1)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        // Nothing else of the test process's: a script holding another test's descriptor could keep that test's
        // file busy (see `ExecutableFile`), or its socket open.
        ChildProcess.closeInheritedDescriptors(&actions)
        let cArguments = argv.map { strdup($0) } + [nil]
        defer { for pointer in cArguments { free(pointer) } }
        var pid: pid_t = 0
        let result: Int32
        do {
            try beforeSpawn()
            result = posix_spawn(&pid, argv[0], &actions, nil, cArguments, environ)
        } catch {
            for fd in input + output { close(fd) }
            throw error
        }
        close(input[0])
        close(output[1])
        guard result == 0 else {
            close(input[1])
            close(output[0])
            throw TestSupportError("posix_spawn: \(String(cString: strerror(result)))")
        }
        self.pid = pid
        self.inputFD = input[1]
        self.outputFD = output[0]
    }

    /// One line of the script's output, or nil when it ended or `timeout` passed.
    func readLine(timeout: Duration = .seconds(10)) -> String? {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let newline = self.buffered.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: self.buffered[..<newline], as: UTF8.self)
                self.buffered.removeSubrange(...newline)
                return line
            }
            let left = deadline - ContinuousClock.now
            guard left > .zero else { return nil }
            var poller = pollfd(fd: self.outputFD, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(min(left.components.seconds * 1000 + 1, 1000))
            guard poll(&poller, 1, milliseconds) >= 0 else { return nil }
            guard poller.revents != 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = chunk.withUnsafeMutableBytes { read(self.outputFD, $0.baseAddress, $0.count) }
            guard count > 0 else {
                guard !self.buffered.isEmpty else { return nil }
                let line = String(decoding: self.buffered, as: UTF8.self)
                self.buffered = []
                return line
            }
            self.buffered.append(contentsOf: chunk[0..<count])
        }
    }

    /// Reads a line that is a pid and remembers it.
    func readPID(timeout: Duration = .seconds(10)) throws -> Int32 {
        guard let line = self.readLine(timeout: timeout), let pid = Int32(line) else {
            throw TestSupportError("the helper script reported no pid (\(self.exitStatus()))")
        }
        self.reportedPIDs.append(pid)
        return pid
    }

    /// How the started process ended, for an error text: reaps it when it has.
    private func exitStatus() -> String {
        guard !self.reaped else { return "reaped" }
        var status: Int32 = 0
        guard waitpid(self.pid, &status, WNOHANG) == self.pid else { return "still running" }
        self.reaped = true
        let signal = status & 0x7f
        return signal == 0 ? "exit \((status >> 8) & 0xff)" : "signal \(signal)"
    }

    /// Writes one line to the script's standard input.
    func send(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(self.inputFD, $0.baseAddress, $0.count) }
    }

    /// Waits up to `timeout` for the started process (not a child it forked) to exit, and reaps it: its pid is free
    /// once this returns true.
    func waitForExit(timeout: Duration = .seconds(10)) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !self.reaped {
            var status: Int32 = 0
            if waitpid(self.pid, &status, WNOHANG) == self.pid {
                self.reaped = true
                break
            }
            guard ContinuousClock.now < deadline else { return false }
            usleep(2_000)
        }
        return true
    }

    /// Ends the script and every process it reported.
    func kill() {
        for pid in self.reportedPIDs where pid > 0 && pid != self.pid { Glibc.kill(pid, SIGKILL) }
        if !self.reaped {
            Glibc.kill(self.pid, SIGKILL)
            var status: Int32 = 0
            waitpid(self.pid, &status, 0)
            self.reaped = true
        }
    }

    deinit {
        self.kill()
        close(self.inputFD)
        close(self.outputFD)
    }
}

/// The scripts the tests run.
enum Scripts {
    /// Python, run as the other caller: for each line read (a request target), `GET` it on a connection of its own
    /// and print the status and the milliseconds the whole answer took (status 0: no answer).
    static let timedRequests = """
        import socket, sys, time
        for line in sys.stdin:
            target = line.strip()
            start = time.monotonic()
            data = b""
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(15)
            try:
                s.connect(sys.argv[1])
                s.sendall(("GET %s HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n" % target).encode())
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            s.close()
            parts = data.split(b" ", 2)
            status = parts[1].decode() if len(parts) > 1 else "0"
            print("%s %d" % (status, int((time.monotonic() - start) * 1000)), flush=True)
        """

    /// The statuses of one `GET` per target on `socket`, each on a connection of its own, asked by `uid` (its gid the
    /// same) through `timedRequests` (0: no answer within 20 s).
    static func statuses(socket: String, uid: UInt32, _ targets: [String]) async throws -> [Int] {
        let script = try await Blocking.run {
            try ScriptProcess(script: Scripts.timedRequests, arguments: [socket], uid: uid, gid: uid)
        }
        defer { script.kill() }
        var statuses: [Int] = []
        for target in targets {
            script.send(target)
            let answer = try await Blocking.run { Scripts.timedAnswer(script.readLine(timeout: .seconds(20))) }
            statuses.append(answer?.status ?? 0)
        }
        return statuses
    }

    /// A line of `timedRequests`.
    static func timedAnswer(_ line: String?) -> (status: Int, elapsed: Duration)? {
        guard let fields = line?.split(separator: " "), fields.count == 2, let status = Int(fields[0]),
            let milliseconds = Int(fields[1])
        else { return nil }
        return (status, .milliseconds(milliseconds))
    }

    /// Python: `status(s, path)` sends `GET path` on the connected socket `s` and returns the answer's status code as
    /// text ("0" when there is none).
    private static let status = """
        def status(s, path):
            s.sendall(("GET %s HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n" % path).encode())
            data = b""
            while b"\\r\\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            parts = data.split(b" ")
            return parts[1].decode() if len(parts) > 1 else "0"
        """

    /// Connects to `argv[1]`, forks; the parent prints its pid (the one the kernel recorded for the connection) and
    /// exits at once. The child prints its own pid, waits for a line, sends `GET argv[2]` on the inherited
    /// connection and prints the status code.
    static let connectAndExit = """
        import os, socket, sys
        \(Self.status)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sys.argv[1])
        r, w = os.pipe()
        child = os.fork()
        if child != 0:
            os.close(w)
            os.read(r, 1)
            print(os.getpid(), flush=True)
            os._exit(0)
        os.close(r)
        # Keep nothing else the parent inherited: whoever started it may watch a descriptor to see it exit.
        for fd in range(3, 1024):
            if fd not in (s.fileno(), w):
                try:
                    os.close(fd)
                except OSError:
                    pass
        print(os.getpid(), flush=True)
        os.close(w)
        sys.stdin.readline()
        print(status(s, sys.argv[2]), flush=True)
        """

    /// Prints its pid, then for each line it reads: `GET argv[2]` on a fresh connection to `argv[1]`, printing the
    /// status code. Exits at end of input.
    static let requester = """
        import os, socket, sys
        \(Self.status)
        print(os.getpid(), flush=True)
        for line in sys.stdin:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(sys.argv[1])
            code = status(s, sys.argv[2])
            s.close()
            print(code, flush=True)
        """

    /// Opens `argv[2]` idle connections to `argv[1]` (as many as the daemon keeps), prints how many stayed open,
    /// then holds them until its input ends.
    static let holdConnections = """
        import socket, sys, time, select
        held = []
        for i in range(int(sys.argv[2])):
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(sys.argv[1])
                held.append(s)
            except OSError:
                break
        # Connections the daemon refused are closed by it as it accepts them: they read as end of file. A connect
        # succeeds once the connection is in the listen backlog, so a slow daemon (a loaded machine, a sanitizer)
        # may still be accepting: count until nothing has changed for 2 s (60 s at most), not after a fixed sleep.
        open_ = held
        settled = time.monotonic()
        deadline = settled + 60
        while time.monotonic() - settled < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            still = []
            for s in open_:
                r, _, _ = select.select([s], [], [], 0)
                if r and s.recv(1) == b"":
                    s.close()
                else:
                    still.append(s)
            if len(still) != len(open_):
                settled = time.monotonic()
            open_ = still
        print(len(open_), flush=True)
        sys.stdin.read()
        """
}

/// Pid steering through `/proc/sys/kernel/ns_last_pid` (root only): the next process forked gets `pid`.
enum PidSteering {
    static var isAvailable: Bool { access("/proc/sys/kernel/ns_last_pid", W_OK) == 0 }

    /// Runs `start` until the process it starts has pid `pid`, at most `attempts` times (another process on the
    /// machine may take the pid first); kills the ones that missed. `start` gets the steering to run right before it
    /// spawns.
    static func start(
        withPID pid: Int32,
        attempts: Int = 200,
        _ start: (_ beforeSpawn: () throws -> Void) throws -> ScriptProcess
    ) throws -> ScriptProcess? {
        let steer = {
            let fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else { throw TestSupportError("cannot open ns_last_pid") }
            defer { close(fd) }
            let text = Array(String(pid - 1).utf8)
            guard text.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == text.count else {
                throw TestSupportError("cannot write ns_last_pid")
            }
        }
        for _ in 0..<attempts {
            let process = try start(steer)
            if process.pid == pid { return process }
            process.kill()
        }
        return nil
    }
}
