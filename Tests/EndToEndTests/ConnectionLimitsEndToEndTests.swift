import Foundation
import TestSupport
import Testing
import VaultAPI

#if canImport(Glibc)
import Glibc
#endif

/// Bounded connections (issue 8, item 3): slow or idle connections are cut off, one uid cannot hold more than its
/// share, and no unprivileged uid can take the descriptors root and the admins need. Small limits are set by flag.
@Suite(
    "Connection limits end to end",
    .offCooperativePool,
    .timeLimit(.minutes(3)),
    .enabled(if: getuid() == 0, "needs root for setpriv and prlimit"),
    .enabled(if: ScriptProcess.isAvailable, "needs /usr/bin/python3 for the helper that holds connections")
)
struct ConnectionLimitsEndToEndTests {
    /// Runs `body` with `connvaultd` started with `arguments` in a directory of its own; stops it afterwards.
    func withDaemon(_ arguments: [String], _ body: (DaemonProcess) async throws -> Void) async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let daemon = DaemonProcess(directory: directory, arguments: arguments)
        try await Blocking.run { try daemon.start() }
        defer { daemon.stop() }
        try await body(daemon)
    }

    /// Writes `prefix`, then one byte of `bytes` every 250 ms, and expects the daemon to cut the connection off
    /// after its 2 s time-out.
    func expectCutOffAtTwoSeconds(socket: String, prefix: [UInt8] = [], bytes: [UInt8], what: String) async throws {
        let elapsed = try await Blocking.run {
            try SlowClient.dripUntilClosed(
                socket: socket,
                prefix: prefix,
                bytes: bytes,
                every: .milliseconds(250),
                giveUpAfter: .seconds(20)
            )
        }
        let cutOff = try #require(elapsed, "\(what) was still open after 20 s")
        #expect(cutOff >= .milliseconds(1_900) && cutOff < .seconds(5), "cut off after \(cutOff)")
    }

    /// `GET route` on a connection of its own: the status, and how long the answer took.
    static func timedGet(_ socket: String, _ route: String) throws -> (status: Int, elapsed: Duration) {
        let start = ContinuousClock.now
        let response = try RawHTTP.request(
            socket: socket,
            "GET \(route) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            timeout: .seconds(5)
        )
        return (response.status, ContinuousClock.now - start)
    }

    // MARK: - Time-outs

    @Test("a request head sent one byte at a time is cut off at --request-head-timeout")
    func slowloris() async throws {
        try await self.withDaemon(["--dev", "--request-head-timeout", "2"]) { daemon in
            try await self.expectCutOffAtTwoSeconds(
                socket: daemon.appSocket,
                bytes: Array("GET /v1/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ".utf8)
                    + Array(repeating: 0x61, count: 200),
                what: "the slow head"
            )
        }
    }

    @Test("a body sent one byte at a time is cut off at --body-timeout")
    func slowBody() async throws {
        let head =
            "POST /v1/connections HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            + "Content-Length: 4000\r\n\r\n"
        try await self.withDaemon(["--dev", "--body-timeout", "2"]) { daemon in
            try await self.expectCutOffAtTwoSeconds(
                socket: daemon.adminSocket,
                prefix: Array(head.utf8),
                bytes: Array(repeating: 0x20, count: 4000),
                what: "the slow body"
            )
        }
    }

    @Test("a connection without a request is closed after --idle-timeout; one in use is not")
    func idle() async throws {
        try await self.withDaemon(["--dev", "--idle-timeout", "2"]) { daemon in
            let (silent, busy) = try await Blocking.run {
                let silent = try SlowClient.dripUntilClosed(
                    socket: daemon.appSocket,
                    bytes: [],
                    every: .milliseconds(100),
                    giveUpAfter: .seconds(20)
                )
                // Keep-alive requests every half second for 5 s: never idle for 2 s, never closed.
                let busy = try SlowClient.keepAlive(
                    socket: daemon.appSocket,
                    requests: 10,
                    every: .milliseconds(500)
                )
                return (silent, busy)
            }
            let cutOff = try #require(silent, "the idle connection was still open after 20 s")
            // Checked lazily: between one and two idle periods.
            #expect(cutOff >= .milliseconds(1_900) && cutOff < .seconds(6), "closed after \(cutOff)")
            #expect(busy == 10, "only \(busy) of 10 keep-alive requests were answered")
        }
    }

    // MARK: - Caps

    @Test("one uid at its cap: another uid and the admin are still served within a second")
    func perUIDCap() async throws {
        try await self.withDaemon(["--dev", "--max-connections-per-uid", "8"]) { daemon in
            daemon.openToOtherUIDs()
            let result = try await Blocking.run {
                let hog = try ScriptProcess(script: Scripts.holdConnections, arguments: [daemon.appSocket, "40"])
                defer { hog.kill() }
                let held = hog.readLine(timeout: .seconds(20))

                let other = try ScriptProcess(
                    script: Scripts.requester,
                    arguments: [daemon.appSocket, Routes.health],
                    uid: 4242,
                    gid: 4242
                )
                defer { other.kill() }
                _ = try other.readPID()
                let start = ContinuousClock.now
                other.send("go")
                let otherStatus = other.readLine(timeout: .seconds(5))
                let otherElapsed = ContinuousClock.now - start

                let admin = try Self.timedGet(daemon.adminSocket, Routes.status)
                let ctl = try daemon.ctl(["status"])
                return (held, otherStatus, otherElapsed, admin.status, admin.elapsed, ctl)
            }
            #expect(result.0 == "8", "nobody kept \(result.0 ?? "nothing") connections open")
            #expect(result.1 == "200", "uid 4242 got \(result.1 ?? "nothing")")
            #expect(result.2 < .seconds(1), "uid 4242 waited \(result.2)")
            #expect(result.3 == 200)
            #expect(result.4 < .seconds(1), "the admin waited \(result.4)")
            #expect(result.5.status == 0, "\(result.5)")
        }
    }

    @Test("with few descriptors, nobody taking every connection it can does not lock out root or the admin")
    func descriptorReserve() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        // 300 descriptors, 100 kept in reserve: nobody may hold at most 200, well before the daemon runs out.
        let daemon = LimitedDaemon(
            directory: directory,
            descriptors: 300,
            arguments: ["--dev", "--max-connections-per-uid", "1000", "--reserved-descriptors", "100"]
        )
        try await Blocking.run { try daemon.start() }
        defer { daemon.stop() }
        chmod(directory.path, 0o755)
        chmod(daemon.stateDirectory, 0o755)
        let result = try await Blocking.run {
            let hog = try ScriptProcess(script: Scripts.holdConnections, arguments: [daemon.appSocket, "400"])
            defer { hog.kill() }
            let held = hog.readLine(timeout: .seconds(30))

            let app = try Self.timedGet(daemon.appSocket, Routes.health)
            let admin = try Self.timedGet(daemon.adminSocket, Routes.status)
            let ctl = try Command.run(
                Binaries.control,
                ["status"],
                environment: ["CONNVAULT_ADMIN_SOCKET": daemon.adminSocket, "CONNVAULT_APP_SOCKET": daemon.appSocket]
            )
            return (held, app.status, app.elapsed, admin.status, admin.elapsed, ctl)
        }
        let held = try #require(result.0.flatMap { Int($0) }, "the hog reported nothing")
        #expect(held == 200, "nobody kept \(held) connections open")
        #expect(result.1 == 200, "root on the app socket got \(result.1)")
        #expect(result.2 < .seconds(1), "root waited \(result.2)")
        #expect(result.3 == 200, "the admin got \(result.3)")
        #expect(result.4 < .seconds(1), "the admin waited \(result.4)")
        #expect(result.5.status == 0, "\(result.5)")
    }

    @Test(
        "bad limit and time-out values exit 64",
        arguments: [
            ["--request-head-timeout", "0"], ["--idle-timeout", "3601"], ["--body-timeout", "x"],
            ["--max-connections-per-uid", "0"], ["--max-connections", "-1"], ["--reserved-descriptors", "8"],
        ]
    )
    func badValues(_ arguments: [String]) throws {
        let result = try Command.run(Binaries.daemon, ["--dev"] + arguments)
        #expect(result.status == 64, "\(result)")
        #expect(result.stderr.contains(arguments[0]), "\(result)")
    }
}

/// A client that writes slowly, for the time-out tests.
enum SlowClient {
    /// Connects, writes `prefix` at once, then one byte of `bytes` every `every` (or nothing, just waits) until the
    /// daemon closes the connection; returns how long after the first byte that was, or nil after `giveUpAfter`.
    static func dripUntilClosed(
        socket path: String,
        prefix: [UInt8] = [],
        bytes: [UInt8],
        every interval: Duration,
        giveUpAfter limit: Duration
    ) throws -> Duration? {
        let fd = try Self.connect(path)
        defer { close(fd) }
        let start = ContinuousClock.now
        if !prefix.isEmpty { _ = prefix.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }
        var next = 0
        while ContinuousClock.now - start < limit {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(
                interval.components.seconds * 1000 + interval.components.attoseconds / 1_000_000_000_000_000
            )
            if poll(&poller, 1, milliseconds) > 0 {
                var byte: UInt8 = 0
                // End of file (or a reset): the daemon closed it. A 408 would do too; it answers nothing.
                if recv(fd, &byte, 1, 0) <= 0 { return ContinuousClock.now - start }
                continue
            }
            if next < bytes.count {
                var byte = bytes[next]
                next += 1
                if send(fd, &byte, 1, Int32(MSG_NOSIGNAL)) < 0 { return ContinuousClock.now - start }
            }
        }
        return nil
    }

    /// Sends `requests` keep-alive `GET /v1/health` on one connection, `every` apart; returns how many were answered.
    static func keepAlive(socket path: String, requests: Int, every interval: Duration) throws -> Int {
        let fd = try Self.connect(path)
        defer { close(fd) }
        var answered = 0
        let request = Array("GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8)
        for index in 0..<requests {
            if index > 0 {
                usleep(
                    UInt32(
                        interval.components.seconds * 1_000_000 + interval.components.attoseconds / 1_000_000_000_000
                    )
                )
            }
            guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count
            else { break }
            var received: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            let deadline = ContinuousClock.now + .seconds(5)
            while ContinuousClock.now < deadline {
                var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&poller, 1, 100) >= 0 else { break }
                guard poller.revents != 0 else { continue }
                let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                guard count > 0 else { return answered }
                received.append(contentsOf: buffer[0..<count])
                // The health answer is small and framed by Content-Length: the head and body end with it.
                let text = String(decoding: received, as: UTF8.self)
                if let split = text.range(of: "\r\n\r\n"),
                    let lengthLine = text[..<split.lowerBound].split(separator: "\r\n").first(where: {
                        $0.lowercased().hasPrefix("content-length:")
                    }),
                    let length = Int(lengthLine.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)),
                    text.utf8.count - text[..<split.upperBound].utf8.count >= length
                {
                    answered += 1
                    break
                }
            }
        }
        return answered
    }

    static func connect(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestSupportError("socket: \(String(cString: strerror(errno)))") }
        let connected = (try? UnixAddress.connect(fd, to: path)) ?? -1
        guard connected == 0 else {
            close(fd)
            throw TestSupportError("connect \(path): \(String(cString: strerror(errno)))")
        }
        return fd
    }
}

/// `connvaultd --dev` started under `prlimit --nofile=N:N`, so that its descriptor limit is small from the start.
final class LimitedDaemon: @unchecked Sendable {
    // @unchecked Sendable: used only by the test that started it.
    let directory: TemporaryDirectory
    private let descriptors: Int
    private let arguments: [String]
    private var process: ChildProcess?

    var stateDirectory: String { "\(self.directory.path)/.connvault" }
    var adminSocket: String { "\(self.stateDirectory)/admin.sock" }
    var appSocket: String { "\(self.stateDirectory)/app.sock" }

    init(directory: TemporaryDirectory, descriptors: Int, arguments: [String]) {
        self.directory = directory
        self.descriptors = descriptors
        self.arguments = arguments
    }

    func start() throws {
        let process = try ChildProcess(
            "/usr/bin/prlimit",
            ["--nofile=\(self.descriptors):\(self.descriptors)", Binaries.daemon] + self.arguments,
            directory: self.directory.path
        )
        self.process = process
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            guard process.isRunning else {
                throw TestSupportError("connvaultd ended: \(process.termination.map { "\($0)" } ?? "?")")
            }
            if let response = try? RawHTTP.request(
                socket: self.adminSocket,
                "GET /v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                timeout: .seconds(2)
            ), response.status == 200 {
                return
            }
            usleep(20_000)
        }
        throw TestSupportError("connvaultd did not answer on \(self.adminSocket)")
    }

    func stop() {
        guard let process = self.process, process.isRunning else { return }
        process.signal(SIGTERM)
        process.waitForExit(timeout: .seconds(20))
    }

    deinit { self.stop() }
}
