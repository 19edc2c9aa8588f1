import Foundation
import TestSupport
import Testing
import VaultAPI

#if canImport(Glibc)
import Glibc
#endif

/// The caller's executable (DESIGN §10's `exe` and `exe_sha256`), as the running daemon reads it at accept: seen in
/// its debug log, whose request lines carry the connection's `peer.exe` and `peer.exe_sha256`.
///
/// The "granted" executable is a copy of Python's interpreter in a directory of the test's, so that its path and hash
/// are its own. The attacks: a caller that connects and exits, its pid then taken by a process running the copy, must
/// not be read as the copy (the pidfd confirmation); a caller that connects, is accepted, then executes the copy on
/// the same connection keeps the executable it had at accept (identity is read once per connection). Each is played
/// twice: as the daemon logs the caller, and against an `exe` grant rule (403 for the attacker, 200 for the granted
/// program itself, so that the refusal is the identity check's).
@Suite(
    "Caller executable end to end",
    .offCooperativePool,
    .serialized,
    .timeLimit(.minutes(3)),
    .enabled(if: getuid() == 0, "needs root for setpriv and ns_last_pid"),
    .enabled(if: ScriptProcess.isAvailable, "needs /usr/bin/python3 for the helper scripts"),
    .enabled(if: PidSteering.isAvailable, "needs a writable /proc/sys/kernel/ns_last_pid")
)
struct CallerExecutableEndToEndTests {
    /// A copy of the interpreter with a few bytes appended, executable by nobody, and what it hashes to.
    struct Copy {
        var directory: TemporaryDirectory
        var path: String
        var sha256: String
    }

    static func makeCopy() throws -> Copy {
        let directory = try TemporaryDirectory(prefix: "cvx")
        chmod(directory.path, 0o755)
        let source = try #require(realpath(ScriptProcess.python, nil))
        defer { free(source) }
        let path = directory.file("granted-py")
        // Bytes after the ELF image change nothing about how it runs, but make its hash its own.
        try ExecutableFile.copy(
            String(cString: source),
            to: path,
            appending: Array("CANARY-executable-copy-\(getpid())\n".utf8)
        )
        let resolved = try #require(realpath(path, nil))
        defer { free(resolved) }
        return Copy(directory: directory, path: String(cString: resolved), sha256: try Self.sha256sum(path))
    }

    /// Runs `body` with a fresh copy of the interpreter and a daemon whose sockets nobody can reach; removes the copy
    /// afterwards.
    static func withCopy(_ body: (Copy, BrokerFixture) async throws -> Void) async throws {
        let copy = try Self.makeCopy()
        defer { copy.directory.remove() }
        try await BrokerFixture.run { fixture in
            fixture.daemon.openToOtherUIDs()
            try await body(copy, fixture)
        }
    }

    /// The debug log's request lines for connections of `pid`, in order.
    static func requestLines(_ daemon: DaemonProcess, pid: Int32) -> [String] {
        daemon.log().split(separator: "\n").map(String.init).filter {
            $0.contains(": request ") && $0.contains(" peer.pid=\(pid) ")
        }
    }

    /// Waits (bounded) until the log has `count` request lines of `pid`: a line is written after its answer is sent.
    static func waitForRequestLines(_ daemon: DaemonProcess, pid: Int32, count: Int) -> [String] {
        let deadline = ContinuousClock.now + .seconds(10)
        var lines = Self.requestLines(daemon, pid: pid)
        while lines.count < count && ContinuousClock.now < deadline {
            usleep(20_000)
            lines = Self.requestLines(daemon, pid: pid)
        }
        return lines
    }

    @Test("a caller's executable is its path and the SHA-256 of its contents, for every connection of it")
    func readAtAccept() async throws {
        try await Self.withCopy { copy, fixture in
            let daemon = fixture.daemon
            let (pid, lines) = try await Blocking.run {
                let process = try ScriptProcess(
                    script: Scripts.requester,
                    arguments: [daemon.appSocket, Routes.connections],
                    interpreter: copy.path
                )
                defer { process.kill() }
                let pid = try process.readPID()
                for _ in 0..<2 {
                    process.send("go")
                    guard process.readLine(timeout: .seconds(15)) == "200" else {
                        throw TestSupportError("the caller was not served")
                    }
                }
                return (pid, Self.waitForRequestLines(daemon, pid: pid, count: 2))
            }
            #expect(lines.count == 2, "\(daemon.log())")
            for line in lines {
                #expect(line.contains(" peer.exe=\(copy.path) "), "\(line)")
                #expect(line.contains(" peer.exe_sha256=\(copy.sha256)"), "\(line)")
                #expect(line.contains(" peer.uid=65534 "), "\(line)")
            }
            _ = pid
        }
    }

    @Test("a pid reused by a process running the granted executable lends it to nobody's connection")
    func pidReuse() async throws {
        try await Self.withCopy { copy, fixture in
            let daemon = fixture.daemon
            let result = try await Blocking.run { () -> (pid: Int32, borrowed: String?, own: String?) in
                for _ in 0..<4 {
                    if let result = try Self.borrowPID(daemon: daemon, copy: copy) { return result }
                }
                throw TestSupportError("could not steer a freed pid to the reusing process in four attacks")
            }
            #expect(result.borrowed == "200", "nobody's connection got \(result.borrowed ?? "nothing")")
            #expect(result.own == "200", "the reusing process got \(result.own ?? "nothing")")
            let lines = Self.waitForRequestLines(daemon, pid: result.pid, count: 2)
            try #require(lines.count == 2, "\(daemon.log())")
            // Nobody's connection, answered first: its process was gone at accept, so no executable at all.
            #expect(!lines[0].contains("peer.exe"), "\(lines[0])")
            // The reusing process's own connection is read as the copy: the refusal above is the check's.
            #expect(lines[1].contains(" peer.exe=\(copy.path) "), "\(lines[1])")
            #expect(lines[1].contains(" peer.exe_sha256=\(copy.sha256)"), "\(lines[1])")
        }
    }

    @Test("a caller that executes the granted executable after it was accepted keeps its first identity")
    func execAfterAccept() async throws {
        let python = try #require(realpath(ScriptProcess.python, nil))
        let original = String(cString: python)
        free(python)
        try await Self.withCopy { copy, fixture in
            let daemon = fixture.daemon
            let (pid, statuses) = try await Blocking.run { () -> (Int32, [String?]) in
                let process = try ScriptProcess(
                    script: Self.connectThenExec,
                    arguments: [daemon.appSocket, Routes.connections, copy.path]
                )
                defer { process.kill() }
                let pid = try process.readPID()
                let first = process.readLine(timeout: .seconds(15))
                process.send("exec")
                // The program after exec reports its pid again: the same process.
                guard try process.readPID() == pid else { throw TestSupportError("exec changed the pid") }
                let second = process.readLine(timeout: .seconds(15))
                return (pid, [first, second])
            }
            let lines = Self.waitForRequestLines(daemon, pid: pid, count: 2)
            #expect(statuses == ["200", "200"], "\(lines)")
            try #require(lines.count == 2, "\(daemon.log())")
            for line in lines {
                #expect(line.contains(" peer.exe=\(original) "), "\(line)")
                #expect(!line.contains(copy.path), "\(line)")
                #expect(!line.contains(copy.sha256), "\(line)")
            }
        }
    }

    /// Adds connection `id`, granted to no uid, then to `rule` only.
    static func addGranted(_ fixture: BrokerFixture, _ id: String, rule: String) async throws {
        _ = try await fixture.addV2(
            id,
            clientID: "fake-client-id-\(id)",
            secret: "fake-secret-CANARY-\(id)",
            allowUID: nil
        )
        let granted = try await fixture.ctl(["grant", id, "--rule", rule])
        guard granted.status == 0 else { throw TestSupportError("grant failed: \(granted)") }
    }

    /// The status of `GET path` on the app socket, asked by uid nobody running `interpreter`.
    static func status(_ daemon: DaemonProcess, _ path: String, interpreter: String) throws -> String? {
        let process = try ScriptProcess(
            script: Scripts.requester,
            arguments: [daemon.appSocket, path],
            interpreter: interpreter
        )
        defer { process.kill() }
        _ = try process.readPID()
        process.send("go")
        return process.readLine(timeout: .seconds(15))
    }

    @Test("an exe rule and an exe_sha256 rule hand the token to the program they name, not to another of the same uid")
    func rulesMatchTheProgram() async throws {
        try await Self.withCopy { copy, fixture in
            let daemon = fixture.daemon
            try await Self.addGranted(fixture, "bypath", rule: "uid=65534,exe=\(copy.path)")
            try await Self.addGranted(fixture, "byhash", rule: "exe_sha256=\(copy.sha256)")
            let statuses = try await Blocking.run {
                try ["bypath", "byhash"].flatMap { id in
                    [
                        try Self.status(daemon, Routes.token(id), interpreter: copy.path),
                        try Self.status(daemon, Routes.token(id), interpreter: ScriptProcess.python),
                    ]
                }
            }
            #expect(statuses == ["200", "403", "200", "403"])
        }
    }

    @Test("a pid reused by the granted program lends nobody's connection no token under an exe rule")
    func pidReuseAgainstRule() async throws {
        try await Self.withCopy { copy, fixture in
            let daemon = fixture.daemon
            try await Self.addGranted(fixture, "payroll", rule: "exe=\(copy.path)")
            let result = try await Blocking.run { () -> (pid: Int32, borrowed: String?, own: String?) in
                for _ in 0..<4 {
                    if let result = try Self.borrowPID(daemon: daemon, copy: copy, target: Routes.token("payroll")) {
                        return result
                    }
                }
                throw TestSupportError("could not steer a freed pid to the reusing process in four attacks")
            }
            #expect(result.borrowed == "403", "nobody's connection got \(result.borrowed ?? "nothing")")
            #expect(result.own == "200", "the granted program itself got \(result.own ?? "nothing")")
        }
    }

    @Test("a caller that executes the granted program after it was accepted still gets no token under an exe rule")
    func execAfterAcceptAgainstRule() async throws {
        try await Self.withCopy { copy, fixture in
            let daemon = fixture.daemon
            try await Self.addGranted(fixture, "payroll", rule: "exe=\(copy.path)")
            let (statuses, own) = try await Blocking.run { () -> ([String?], String?) in
                let process = try ScriptProcess(
                    script: Self.connectThenExec,
                    arguments: [daemon.appSocket, Routes.token("payroll"), copy.path]
                )
                defer { process.kill() }
                let pid = try process.readPID()
                let first = process.readLine(timeout: .seconds(15))
                process.send("exec")
                guard try process.readPID() == pid else { throw TestSupportError("exec changed the pid") }
                let second = process.readLine(timeout: .seconds(15))
                return ([first, second], try Self.status(daemon, Routes.token("payroll"), interpreter: copy.path))
            }
            #expect(statuses == ["403", "403"])
            #expect(own == "200", "the granted program on a connection of its own got \(own ?? "nothing")")
        }
    }

    @Test("GET /v1/status says whether executable selectors can match every caller (root here: they can)")
    func statusSaysExe() async throws {
        try await BrokerFixture.run { fixture in
            let response = try await fixture.admin("GET", Routes.status)
            #expect(response.status == 200, "\(response.raw)")
            let status = try VaultJSON.decoder().decode(StatusView.self, from: Data(response.body.utf8))
            #expect(status.peerPidfd == true)
            #expect(status.peerExe == true, "\(response.body)")
        }
    }

    // MARK: - Helpers

    /// One attack (as `CallerIdentityEndToEndTests` plays it): nobody connects while the daemon is stopped and exits,
    /// its child keeping the connection; the freed pid is steered to a process running the copy; the daemon resumes
    /// and nobody's child sends its request, then the reusing process sends one of its own. nil when the pid could
    /// not be steered.
    static func borrowPID(
        daemon: DaemonProcess,
        copy: Copy,
        target: String = Routes.connections
    ) throws -> (pid: Int32, borrowed: String?, own: String?)? {
        guard let daemonPID = daemon.pid else { throw TestSupportError("the daemon is not running") }
        kill(daemonPID, SIGSTOP)
        defer { kill(daemonPID, SIGCONT) }
        let attacker = try ScriptProcess(
            script: Scripts.connectAndExit,
            arguments: [daemon.appSocket, target]
        )
        defer { attacker.kill() }
        _ = try attacker.readPID()
        let connector = try attacker.readPID()
        guard connector == attacker.pid else { throw TestSupportError("the helper reported pid \(connector)") }
        guard attacker.waitForExit() else { throw TestSupportError("the connecting process did not exit") }
        let reuser = try PidSteering.start(withPID: connector) { steer in
            try ScriptProcess(
                script: Scripts.requester,
                arguments: [daemon.appSocket, target],
                interpreter: copy.path,
                beforeSpawn: steer
            )
        }
        guard let reuser else { return nil }
        defer { reuser.kill() }
        guard try reuser.readPID() == connector else { throw TestSupportError("the reusing process has another pid") }
        kill(daemonPID, SIGCONT)
        attacker.send("go")
        let borrowed = attacker.readLine(timeout: .seconds(15))
        reuser.send("go")
        let own = reuser.readLine(timeout: .seconds(15))
        return (connector, borrowed, own)
    }

    /// Python: connects to `argv[1]`, prints its pid and the status of `GET argv[2]` on a keep-alive connection, waits
    /// for a line, then executes `argv[3]` (another interpreter) with the connection inherited; that program prints
    /// its pid and the status of a second `GET argv[2]` on the same connection.
    static let connectThenExec = """
        import os, socket, sys
        \(Self.get)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sys.argv[1])
        print(os.getpid(), flush=True)
        print(get(s, sys.argv[2], False), flush=True)
        sys.stdin.readline()
        os.set_inheritable(s.fileno(), True)
        after = "import os, socket, sys\\n" + GET + "\\ns = socket.socket(fileno=int(sys.argv[1]))\\n" \\
            + "print(os.getpid(), flush=True)\\nprint(get(s, sys.argv[2], True), flush=True)\\n"
        os.execv(sys.argv[3], [sys.argv[3], "-c", after, str(s.fileno()), sys.argv[2]])
        """

    /// Python: `get(s, path, close)` sends `GET path` on `s` and reads the whole answer (by its Content-Length),
    /// returning its status code as text; also kept in `GET` as source for the program run after exec.
    private static let get = """
        GET = r'''
        def get(s, path, close):
            s.sendall(("GET %s HTTP/1.1\\r\\nHost: localhost\\r\\n%s\\r\\n" % (path, "Connection: close\\r\\n" if close else "")).encode())
            data = b""
            while b"\\r\\n\\r\\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    return "0"
                data += chunk
            head, _, body = data.partition(b"\\r\\n\\r\\n")
            length = 0
            for line in head.split(b"\\r\\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            while len(body) < length:
                chunk = s.recv(4096)
                if not chunk:
                    break
                body += chunk
            return head.split(b" ")[1].decode()
        '''
        exec(GET)
        """

    static func sha256sum(_ path: String) throws -> String {
        let process = try ChildProcess("/usr/bin/sha256sum", [path], standardOutput: .capture)
        guard process.waitForExit(timeout: .seconds(30)).status == 0 else { throw TestSupportError("sha256sum") }
        return String(process.standardOutput().prefix(64))
    }
}
