import Foundation
import TestSupport
import Testing
import VaultAPI

/// What `make fuzz` hands the suite, from its environment.
enum SchemathesisSettings {
    static var executable: String? {
        ProcessInfo.processInfo.environment["CONNVAULT_SCHEMATHESIS"].flatMap { $0.isEmpty ? nil : $0 }
    }
    static var examples: Int {
        ProcessInfo.processInfo.environment["CONNVAULT_SCHEMATHESIS_EXAMPLES"].flatMap { Int($0) } ?? 50
    }
    static var seed: Int { ProcessInfo.processInfo.environment["CONNVAULT_SCHEMATHESIS_SEED"].flatMap { Int($0) } ?? 1 }
}

/// schemathesis against the live daemon's two sockets, driven by docs/openapi-app.json and docs/openapi-admin.json
/// (`make fuzz`, through Tests/Scripts/schemathesis.sh, which installs schemathesis and sets
/// `CONNVAULT_SCHEMATHESIS` to its executable; skipped without it).
///
/// schemathesis speaks HTTP over TCP; socat bridges a loopback port to each Unix socket. The daemon identifies the
/// bridge's process, so the bridge runs as the caller each socket is tested for: root on the admin socket, uid 65534
/// on the app socket, to which connection `acme` is granted, so generated cases reach the real handlers (the token
/// comes from the Personio stand-in; proxied requests are forwarded to it). Checks: no 5xx, every answer's status
/// documented for its operation, its media type and its body conform to the description.
///
/// `CONNVAULT_SCHEMATHESIS_EXAMPLES` cases per operation (default 50), seed `CONNVAULT_SCHEMATHESIS_SEED` (default 1);
/// schemathesis' output for each socket goes to `CONNVAULT_SCHEMATHESIS_REPORT` (a directory; default the test's
/// temporary one) and to this test's output.
@Suite(
    "schemathesis against the live daemon",
    .offCooperativePool,
    .serialized,
    .timeLimit(.minutes(30)),
    .enabled(if: SchemathesisSettings.executable != nil, "CONNVAULT_SCHEMATHESIS is not set (make fuzz sets it)"),
    .enabled(if: getuid() == 0, "needs root to run the app socket's bridge as another uid")
)
struct SchemathesisEndToEndTests {
    static let socat = ["/usr/bin/socat", "/bin/socat"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let checks = [
        "not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance",
    ]
    static let nobody: UInt32 = 65_534

    @Test("no 5xx and no answer outside the description, on the app socket and then the admin socket")
    func bothSockets() async throws {
        let executable = try #require(SchemathesisSettings.executable)
        let socat = try #require(Self.socat, "socat is not installed (make fuzz installs it)")
        try await BrokerFixture.run { fixture in
            try await fixture.addV2(
                "acme",
                clientID: "fake-client-id-schemathesis",
                secret: "fake-secret-schemathesis",
                allowUID: Int(Self.nobody)
            )
            // The admin description's example id for DELETE, so that one case reaches a real disconnect.
            try await fixture.addV2("gone", clientID: "fake-client-id-gone", secret: "fake-secret-gone")
            // uid 65534 reaches the app socket (mode 0666) through the daemon's directories.
            fixture.daemon.openToOtherUIDs()
            let reports =
                ProcessInfo.processInfo.environment["CONNVAULT_SCHEMATHESIS_REPORT"].flatMap { $0.isEmpty ? nil : $0 }
                ?? fixture.daemon.directory.path
            try FileManager.default.createDirectory(atPath: reports, withIntermediateDirectories: true)

            var failures: [String] = []
            for socket in [SocketKind.app, .admin] {
                let path = socket == .app ? fixture.daemon.appSocket : fixture.daemon.adminSocket
                let bridgeUser: [String] =
                    socket == .app
                    ? [
                        "/usr/bin/setpriv", "--reuid", String(Self.nobody), "--regid", String(Self.nobody),
                        "--clear-groups",
                    ] : []
                let outcome = try await Blocking.run {
                    try Self.run(
                        executable,
                        socket: socket,
                        bridge: bridgeUser + [socat],
                        unixSocket: path,
                        output: "\(reports)/schemathesis-\(socket.rawValue).txt"
                    )
                }
                print("schemathesis, \(socket) socket: exit \(outcome.status)\n\(outcome.summary)")
                if outcome.status != 0 {
                    failures.append("\(socket) socket: exit \(outcome.status)\n\(outcome.output)")
                }
            }
            #expect(fixture.daemon.isRunning, "the daemon ended during the run:\n\(fixture.daemon.log().suffix(4000))")
            // The generated cases reached the real handlers, not only the refusals in front of them: tokens were
            // handed out to the bridge's uid and requests forwarded to the stand-in.
            let metrics = try await fixture.admin("GET", Routes.metrics)
            let requests = metrics.body.split(separator: "\n").filter { $0.hasPrefix("connvault_http_requests_total{") }
            print("requests answered, by socket, route and status:\n" + requests.joined(separator: "\n"))
            #expect(
                requests.contains { $0.contains(#"route="GET /v1/connections/{id}/token",status="200""#) },
                "no token was handed out on the app socket"
            )
            #expect(
                metrics.body.split(separator: "\n").contains {
                    $0.hasPrefix("connvault_proxied_requests_total{") && !$0.hasSuffix(" 0")
                },
                "nothing was forwarded to the stand-in"
            )
            #expect(failures.isEmpty, "\(failures.joined(separator: "\n\n"))")
        }
    }

    struct Outcome: Sendable {
        var status: Int32
        var output: String
        /// schemathesis' closing summary (from its "SUMMARY" line on).
        var summary: String
    }

    /// Bridges a free loopback port to `unixSocket` with socat (run as `bridge`), runs schemathesis against it, and
    /// ends the bridge.
    static func run(
        _ executable: String,
        socket: SocketKind,
        bridge: [String],
        unixSocket: String,
        output: String
    ) throws -> Outcome {
        let port = try Self.freePort()
        let socat = try ChildProcess(
            bridge[0],
            Array(bridge.dropFirst()) + [
                "TCP-LISTEN:\(port),bind=127.0.0.1,reuseaddr,fork", "UNIX-CONNECT:\(unixSocket)",
            ],
            standardOutput: .null,
            standardError: .capture
        )
        defer {
            socat.killGroup()
            _ = socat.waitForExit(timeout: .seconds(10))
        }
        try Self.waitForListener(port: port, process: socat)
        try? FileManager.default.removeItem(atPath: output)
        let description = Self.root.appendingPathComponent("docs/openapi-\(socket.rawValue).json").path
        let process = try ChildProcess(
            executable,
            [
                "--no-color", "run", description, "--url", "http://127.0.0.1:\(port)",
                "--checks", Self.checks.joined(separator: ","), "--max-examples", String(SchemathesisSettings.examples),
                "--seed", String(SchemathesisSettings.seed), "--workers", "1", "--request-timeout", "30",
                "--generation-database", "none",
            ],
            environment: ProcessInfo.processInfo.environment.merging(["NO_COLOR": "1", "COLUMNS": "120"]) { $1 },
            directory: URL(fileURLWithPath: output).deletingLastPathComponent().path,
            standardOutput: .file(output),
            standardError: .standardOutput
        )
        let termination = process.waitForExit(timeout: .seconds(25 * 60))
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        guard !termination.timedOut else {
            throw TestSupportError("schemathesis did not finish on the \(socket) socket within 25 minutes:\n\(text)")
        }
        let summary = text.range(of: "SUMMARY").map { String(text[$0.lowerBound...]) } ?? String(text.suffix(3000))
        return Outcome(status: termination.status, output: text, summary: summary)
    }

    /// A loopback port nothing listens on now (bound, read, closed).
    static func freePort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestSupportError("socket: errno \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard bound else { throw TestSupportError("bind: errno \(errno)") }
        return UInt16(bigEndian: address.sin_port)
    }

    /// Waits (at most 10 s) until `port` accepts a connection.
    static func waitForListener(port: UInt16, process: ChildProcess) throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            guard process.isRunning else {
                throw TestSupportError("socat ended: \(process.standardError(timeout: .seconds(1)))")
            }
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = port.bigEndian
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
                }
            }
            close(fd)
            if connected { return }
            usleep(20_000)
        }
        throw TestSupportError("socat did not listen on 127.0.0.1:\(port) within 10 s")
    }
}
