import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `BlockingHTTPConnection`, the keep-alive client of `connvault-bench` and of tests, against a real daemon: the
/// benchmark's figures are only as good as its framing of each answer.
@Suite("Keep-alive client", .offCooperativePool, .timeLimit(.minutes(1)))
struct BlockingHTTPConnectionEndToEndTests {
    @Test(
        "several requests on one connection, each answer framed by its Content-Length",
        .enabled(if: Binaries.areBuilt)
    )
    func keepAlive() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let daemon = DaemonProcess(directory: directory, arguments: ["--dev", "--log-level", "warning"])
        try await Blocking.run { try daemon.start() }
        defer { daemon.stop() }
        try await Blocking.run {
            let connection = try BlockingHTTPConnection(socketPath: daemon.adminSocket, timeout: .seconds(10))
            defer { connection.close() }
            for _ in 0..<3 {
                let health = try connection.get("/v1/health")
                #expect(health.status == 200)
                #expect(health.head.hasPrefix("HTTP/1.1 200"))
                #expect(health.body.count == health.bodyLength && health.bodyLength > 0)
            }
            // The load loop's way: the same request bytes again and again, the body left in the buffer.
            let request = BlockingHTTPConnection.request(path: "/v1/health")
            for _ in 0..<3 {
                try connection.send(request)
                let answer = try connection.receive()
                #expect(answer.status == 200 && answer.body.isEmpty && answer.bodyLength > 0)
            }
            let missing = try connection.get("/v1/no-such-route")
            #expect(missing.status == 404)
            #expect(try connection.get("/v1/health").status == 200)
        }
    }

    @Test("the bare socket is close-on-exec, and a path too long for sun_path is refused, not cut")
    func socketAndPath() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("s.sock")
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(listener >= 0)
        defer { close(listener) }
        try #require(try UnixAddress.bind(listener, to: path) == 0)
        try #require(listen(listener, 4) == 0)
        let fd = try BlockingHTTPConnection.connectedSocket(path)
        defer { close(fd) }
        #expect(fcntl(fd, F_GETFD) & FD_CLOEXEC != 0)
        #expect(throws: TestSupportError.self) {
            try BlockingHTTPConnection(socketPath: directory.file(String(repeating: "x", count: 110)))
        }
    }
}
