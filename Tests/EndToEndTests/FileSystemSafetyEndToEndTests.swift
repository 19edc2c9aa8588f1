import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Files and sockets the daemon trusts (issue 8, items 4 to 6), against the built binaries, as a local attacker or
/// a careless admin would try them. Needs root (CI runs as root) to act as uid 65534 with setpriv.
@Suite(
    "Files and sockets the daemon trusts, end to end",
    .offCooperativePool,
    .timeLimit(.minutes(5)),
    .enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"), "needs root")
)
struct FileSystemSafetyEndToEndTests {
    static let nobody: uid_t = 65534
    static let secret = "CANARY-FS-SAFETY-SECRET-0001"

    /// `connvaultd` with its state in `state` and both sockets beside it, run to completion (bounded).
    func runDaemon(state: String, _ extra: [String] = [], timeout: Duration = .seconds(30)) throws -> CommandResult {
        try Command.run(
            Binaries.daemon,
            ["--state-dir", state, "--app-socket", "\(state)/app.sock", "--admin-socket", "\(state)/admin.sock"]
                + extra,
            timeout: timeout
        )
    }

    /// Daemon starts raced (each binds two sockets).
    static let racedStarts = 200

    static func mode(_ path: String) -> mode_t? {
        var info = stat()
        return lstat(path, &info) == 0 ? info.st_mode & 0o7777 : nil
    }

    // MARK: - Item 4: socket files without a race

    @Test("a racer swapping links into the socket directory during many daemon starts never changes a file's mode")
    func racerDuringStarts() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let target = directory.file("target")
        #expect(FileManager.default.createFile(atPath: target, contents: Data("CANARY-TARGET".utf8)))
        #expect(chmod(target, 0o600) == 0)
        let daemon = DaemonProcess(directory: directory)
        #expect(mkdir(daemon.stateDirectory, 0o700) == 0)
        // Two racing threads: the window between a bind and a chmod by path is a few microseconds.
        let racers = try (0..<2).map { _ in
            try SymlinkRacer(directory: daemon.stateDirectory, target: target, decoy: directory.file("decoy"))
        }
        for racer in racers { racer.start() }
        defer { for racer in racers { racer.stop() } }
        var served = 0
        // A start takes about 0.1 s. Against the old temporary name and path-based chmod the racers made the target
        // 0666 within the first three starts.
        let until = ContinuousClock.now + .seconds(90)
        for start in 0..<Self.racedStarts where ContinuousClock.now < until {
            // A start the racer defeats (it swapped the private directory before the daemon opened it) is refused
            // by the daemon; only the target's mode matters here.
            if (try? daemon.start(timeout: .seconds(10))) != nil { served += 1 }
            daemon.stop()
            #expect(Self.mode(target) == 0o600, "start \(start): the target's mode changed")
            // What the racer left at the final paths (a link, with the old code) would stop the next start.
            for socket in [daemon.adminSocket, daemon.appSocket] where Self.mode(socket) != nil {
                var info = stat()
                if lstat(socket, &info) == 0, info.st_mode & S_IFMT != S_IFSOCK { unlink(socket) }
            }
            if Self.mode(target) != 0o600 { break }
        }
        for racer in racers { racer.stop() }
        #expect(Self.mode(target) == 0o600)
        #expect(racers.map(\.swaps).reduce(0, +) > 0, "the racers never replaced anything")
        #expect(served > 0, "\(daemon.log())")
        // Without the racer the daemon starts and its sockets have their modes.
        try daemon.start()
        defer { daemon.stop() }
        #expect(Self.mode(daemon.appSocket) == 0o666)
        #expect(Self.mode(daemon.adminSocket) == 0o600)
    }

    // MARK: - Item 5: directories the daemon trusts

    @Test("a state directory owned by nobody is refused with a message naming it and the reason")
    func stateDirectoryOwnedByNobody() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let state = directory.file("state")
        #expect(mkdir(state, 0o700) == 0)
        #expect(chown(state, Self.nobody, Self.nobody) == 0)
        let result = try self.runDaemon(state: state, ["--key-file", directory.file("master.key")])
        #expect(result.status == 1, "\(result)")
        #expect(result.stderr.contains("connvaultd: state directory \(state) is owned by uid 65534"), "\(result)")
        #expect(Self.mode("\(state)/admin.sock") == nil, "no socket is bound there")
    }

    @Test("a root-owned state directory with mode 0777 is refused, and so is a socket directory with 1777")
    func sharedDirectories() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let state = directory.file("state")
        #expect(mkdir(state, 0o700) == 0)
        #expect(chmod(state, 0o777) == 0)
        let refused = try self.runDaemon(state: state)
        #expect(refused.status == 1, "\(refused)")
        #expect(
            refused.stderr.contains("state directory \(state) is writable by group and others (mode 777)"),
            "\(refused)"
        )

        #expect(chmod(state, 0o700) == 0)
        let initialised = try Command.run(Binaries.daemon, ["--init", "--state-dir", state])
        #expect(initialised.status == 0, "\(initialised)")
        let sockets = directory.file("run")
        #expect(mkdir(sockets, 0o700) == 0)
        #expect(chmod(sockets, 0o1777) == 0)
        let sticky = try Command.run(
            Binaries.daemon,
            ["--state-dir", state, "--app-socket", "\(sockets)/app.sock", "--admin-socket", "\(sockets)/admin.sock"],
            timeout: .seconds(30)
        )
        #expect(sticky.status == 1, "\(sticky)")
        #expect(sticky.stderr.contains("socket directory \(sockets) is writable by group and others"), "\(sticky)")

        // A parent that others can write (without the sticky bit) is refused as well.
        #expect(chmod(sockets, 0o700) == 0)
        #expect(chmod(directory.path, 0o777) == 0)
        defer { chmod(directory.path, 0o700) }
        let parent = try self.runDaemon(state: state)
        #expect(parent.status == 1, "\(parent)")
        #expect(parent.stderr.contains("its parent directory \(directory.path) is writable"), "\(parent)")
    }

    @Test(
        "connvaultctl run as root refuses an admin socket that nobody serves and sends it no byte (exit 3)",
        arguments: [false, true]
    )
    func fakeAdminSocket(stateDirectoryGivenToNobody: Bool) async throws {
        // nobody's own directory in /tmp, or a state directory root gave to nobody in a directory of root's (the
        // careless admin's /var/lib/connvault), where nobody binds a socket of its own that records what it receives.
        let directory = try TemporaryDirectory(prefix: "cvn")
        defer { directory.remove() }
        var owned = directory.path
        if stateDirectoryGivenToNobody {
            #expect(chmod(directory.path, 0o755) == 0)
            owned = directory.file("state")
            #expect(mkdir(owned, 0o700) == 0)
        }
        #expect(chown(owned, Self.nobody, Self.nobody) == 0)
        let socket = "\(owned)/admin.sock"
        let record = "\(owned)/received"
        let server = try ChildProcess(
            "/usr/bin/setpriv",
            [
                "--reuid", "65534", "--regid", "65534", "--clear-groups", "/usr/bin/python3", "-c",
                Self.recordingServer, socket, record,
            ],
            standardOutput: .inherit,
            standardError: .inherit
        )
        defer { server.killGroup() }
        let deadline = ContinuousClock.now + .seconds(20)
        while Self.mode(socket) == nil && server.isRunning && ContinuousClock.now < deadline { usleep(20_000) }
        try #require(Self.mode(socket) != nil, "the fake server did not bind \(socket)")

        let result = try Command.run(
            Binaries.control,
            [
                "add", "acme", "--provider", "personio-v2", "--client-id", "CANARY-FS-CLIENT", "--secret-stdin",
                "--admin-socket", socket,
            ],
            stdin: "\(Self.secret)\n",
            timeout: .seconds(30)
        )
        #expect(result.status == 3, "\(result)")
        #expect(result.stderr.contains("refusing to use \(socket): it is served by uid 65534"), "\(result)")
        #expect(result.stderr.split(separator: "\n").count == 1, "one line: \(result.stderr)")
        #expect(!result.stderr.contains(Self.secret))

        // The fake server writes what it received once the client has gone (or after 5 s of silence).
        server.waitForExit(timeout: .seconds(30))
        let received = try String(contentsOfFile: record, encoding: .utf8)
        #expect(received == "0:", "the fake server received: \(received)")
    }

    /// Accepts one connection on argv[1], reads until the client closes (or 5 s of silence), and writes
    /// "<count>:<bytes>" to argv[2].
    static let recordingServer = """
        import os, socket, sys
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(sys.argv[1])
        s.listen(8)
        s.settimeout(30)
        c, _ = s.accept()
        c.settimeout(5)
        data = b""
        try:
            while True:
                chunk = c.recv(65536)
                if not chunk: break
                data += chunk
        except socket.timeout:
            pass
        with open(sys.argv[2] + ".tmp", "wb") as f:
            f.write(str(len(data)).encode() + b":" + data)
        os.rename(sys.argv[2] + ".tmp", sys.argv[2])
        """

    // MARK: - Item 6: the key file

    @Test("a FIFO as the key file is refused at once, with the message for a file that is not a regular file")
    func fifoKeyFile() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let state = directory.file("state")
        #expect(mkdir(state, 0o700) == 0)
        let key = "\(state)/master.key"
        #expect(mkfifo(key, 0o600) == 0)
        let started = ContinuousClock.now
        // Bounded: a daemon that waits on the FIFO is killed after 20 s and the test fails.
        let result = try self.runDaemon(state: state, timeout: .seconds(20))
        let elapsed = ContinuousClock.now - started
        #expect(result.status == 1, "\(result)")
        #expect(
            result.stderr.contains("master key file \(key): it is not a regular file (it is a FIFO (named pipe))"),
            "\(result)"
        )
        #expect(elapsed < .seconds(15))
    }
}
