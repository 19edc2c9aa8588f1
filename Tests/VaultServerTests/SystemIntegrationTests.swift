import Foundation
import Synchronization
import TestSupport
import Testing
import VaultAPI
import VaultLocks

@testable import VaultServer

/// The parts that meet the operating system: systemd notifications, socket activation and peer credentials of
/// another uid.
@Suite("System integration", .offCooperativePool, .timeLimit(.minutes(3)))
struct SystemIntegrationTests {
    /// A datagram socket standing in for systemd's notification socket, read on a thread of its own from the start,
    /// as systemd reads it: the watchdog sends every 50 ms, and a queue left unread fills (10 datagrams) and drops
    /// what follows.
    final class NotifySocket: Sendable {
        let descriptor: Int32
        let path: String
        private let state = Locked<(messages: [String], next: Int)>(([], 0))
        private let stopped = Atomic<Bool>(false)
        private let finished = DispatchSemaphore(value: 0)

        /// Binds a datagram socket at `path`, or in the abstract namespace when `path` starts with `@`.
        init(path: String) throws {
            self.path = path
            self.descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            let result = try UnixAddress.bind(self.descriptor, to: path)
            guard result == 0 else {
                Glibc.close(self.descriptor)
                throw TestSupportError("bind \(path): \(String(cString: strerror(errno)))")
            }
            let thread = Thread { [self] in
                defer { self.finished.signal() }
                var buffer = [UInt8](repeating: 0, count: 4096)
                while !self.stopped.load(ordering: .relaxed) {
                    var poller = pollfd(fd: self.descriptor, events: Int16(POLLIN), revents: 0)
                    guard poll(&poller, 1, 100) == 1 else { continue }
                    let count = buffer.withUnsafeMutableBytes { recv(self.descriptor, $0.baseAddress, $0.count, 0) }
                    guard count > 0 else { continue }
                    let message = String(decoding: buffer[0..<count], as: UTF8.self)
                    self.state.withLock { $0.messages.append(message) }
                }
            }
            thread.start()
        }

        /// The next datagram, or nil after `timeout`.
        func receive(timeout: Duration = .seconds(10)) -> String? {
            let deadline = ContinuousClock.now + timeout
            while true {
                let next = self.state.withLock { state -> String? in
                    guard state.next < state.messages.count else { return nil }
                    defer { state.next += 1 }
                    return state.messages[state.next]
                }
                if let next { return next }
                guard ContinuousClock.now < deadline else { return nil }
                usleep(5_000)
            }
        }

        /// Stops reading and closes the socket.
        func close() {
            guard !self.stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
            _ = self.finished.wait(timeout: .now() + 5)
            Glibc.close(self.descriptor)
        }
    }

    @Test(
        "READY=1 once the sockets listen, WATCHDOG=1 while running, STOPPING=1 at shutdown",
        arguments: [false, true]
    )
    func notify(abstract: Bool) async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path =
            abstract ? "@cv-test-notify-\(getpid())-\(UInt32.random(in: 0...UInt32.max))" : directory.file("notify")
        let notify = try NotifySocket(path: path)
        defer { notify.close() }
        try await LiveApplication.with(notify: .init(socketPath: path, watchdogInterval: .milliseconds(50))) { live in
            // The notifier's first turn once waited over 10 s behind tests that blocked both threads of the
            // cooperative pool; this suite now runs off that pool (and the blocking suites do too), so its services
            // get a thread at once. The bounds prove that each message comes, with room for a loaded machine.
            let ready = try await Blocking.run { notify.receive(timeout: .seconds(20)) }
            let message = try #require(ready)
            #expect(message.hasPrefix("READY=1\n"))
            #expect(message.contains("MAINPID=\(getpid())"))
            #expect(message.contains("STATUS=serving admin on \(live.adminSocket)"))
            let health = try await Blocking.run {
                try RawHTTP.request(socket: live.adminSocket, "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            }
            #expect(health.status == 200)
            #expect(try await Blocking.run { notify.receive(timeout: .seconds(20)) } == "WATCHDOG=1")
        }
        var last: String?
        while let message = notify.receive(timeout: .seconds(1)) { last = message }
        #expect(last == "STOPPING=1")
    }

    @Test(
        "another uid is refused with 403 on the admin socket, even when its mode lets it connect",
        .enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"))
    )
    func otherUID() async throws {
        try await self.asNobody(adminGroup: nil) { status, body in
            #expect(status == 403)
            let problem = try VaultJSON.decoder().decode(Problem.self, from: Data(body.utf8))
            #expect(problem.code == .forbidden)
            #expect(problem.detail.contains("uid 65534"))
        }
    }

    @Test(
        "members of the admin group are served",
        .enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"))
    )
    func adminGroupMember() async throws {
        guard let name = ["nogroup", "nobody"].first(where: { (try? GroupLookup.gid(named: $0)) == 65534 }) else {
            return
        }
        try await self.asNobody(adminGroup: name) { status, body in
            #expect(status == 200)
            #expect(body.contains(#""connections":[]"#))
        }
    }

    /// Runs `GET /v1/connections` on the admin socket as uid and gid 65534 with no supplementary groups.
    func asNobody(adminGroup: String?, _ check: @Sendable (Int, String) throws -> Void) async throws {
        try await LiveApplication.with(adminGroup: adminGroup) { live in
            // Let uid 65534 reach the socket through the file system, so that only peer credentials can refuse it.
            chmod(live.directory.path, 0o755)
            chmod(live.adminSocket, 0o666)
            let socket = live.adminSocket
            let result = try await Blocking.run { try Self.runAsNobody(socket: socket, path: "/v1/connections") }
            try #require(result.status == 0, "\(result)")
            let lines = result.stdout.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false)
            try check(Int(lines[0]) ?? 0, lines.count > 1 ? String(lines[1]) : "")
        }
    }

    /// Prints the status code, a newline and the body of `GET path` on `socket`, as uid 65534, with python3 or curl.
    static func runAsNobody(socket: String, path: String) throws -> CommandResult {
        let setpriv = ["--reuid", "65534", "--regid", "65534", "--clear-groups"]
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") {
            let script = """
                import socket, sys
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(sys.argv[1])
                s.sendall(("GET " + sys.argv[2] + " HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n").encode())
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk: break
                    data += chunk
                head, _, body = data.partition(b"\\r\\n\\r\\n")
                print(head.split(b" ")[1].decode())
                print(body.decode())
                """
            return try Command.run("/usr/bin/setpriv", setpriv + ["/usr/bin/python3", "-c", script, socket, path])
        }
        return try Command.run(
            "/usr/bin/setpriv",
            setpriv + [
                "/usr/bin/curl", "-s", "-w", "%{http_code}\n", "-o", "/dev/stderr", "--unix-socket", socket,
                "http://x\(path)",
            ]
        )
    }

    static var socketActivateAvailable: Bool {
        FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-socket-activate")
            && FileManager.default.isExecutableFile(atPath: Binaries.daemon)
    }

    @Test("sockets passed by systemd take precedence over the paths", .enabled(if: socketActivateAvailable))
    func socketActivation() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let appSocket = directory.file("passed-app.sock")
        let adminSocket = directory.file("passed-admin.sock")
        let log = directory.file("daemon.log")
        // systemd-socket-activate gives the daemon an empty environment: a sanitizer's options (Tests/Scripts/
        // sanitize.sh) are passed on by name.
        let passed = ["ASAN_OPTIONS", "TSAN_OPTIONS"].filter { ProcessInfo.processInfo.environment[$0] != nil }
            .flatMap { ["-E", $0] }
        let process = try ChildProcess(
            "/usr/bin/systemd-socket-activate",
            passed + [
                "-l", appSocket, "-l", adminSocket, "--fdname=app:admin", Binaries.daemon, "--dev", "--log-level",
                "debug", "--app-socket", directory.file("unused-app.sock"), "--admin-socket",
                directory.file("unused-admin.sock"),
            ],
            directory: directory.path,
            standardOutput: .file(log),
            standardError: .standardOutput
        )
        defer { process.killGroup() }
        // systemd-socket-activate starts the daemon at the first connection.
        var health: RawHTTP.Response?
        let deadline = ContinuousClock.now + .seconds(30)
        while health?.status != 200 && ContinuousClock.now < deadline {
            health = try? await Blocking.run {
                try RawHTTP.request(
                    socket: adminSocket,
                    "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n",
                    timeout: .seconds(5)
                )
            }
            if health?.status != 200 { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(health?.status == 200, "\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        let status = try await Blocking.run {
            try RawHTTP.request(socket: adminSocket, "GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
        }
        #expect(status.status == 200)
        let app = try await Blocking.run {
            try RawHTTP.request(socket: appSocket, "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        }
        #expect(app.status == 200)
        #expect(fileMode(directory.file("unused-app.sock")) == nil)
        #expect(fileMode(directory.file("unused-admin.sock")) == nil)

        process.signal(SIGTERM)
        let termination = await process.exit(timeout: .seconds(20))
        #expect(termination == .init(status: 0, signaled: false, timedOut: false))
        // The daemon does not remove sockets it did not create.
        #expect(fileMode(adminSocket) != nil)
    }
}
