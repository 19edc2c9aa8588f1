import Foundation
import TestSupport
import Testing

/// The built `connvaultd`, started as a user would: its flags, its start-up errors and its quick start.
@Suite(
    "connvaultd binary",
    .offCooperativePool,
    .timeLimit(.minutes(3)),
    .enabled(if: FileManager.default.isExecutableFile(atPath: Binaries.daemon))
)
struct DaemonBinaryTests {
    @Test("--dev prints where everything is and a quick start, serves, and stops cleanly on SIGTERM")
    func dev() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let daemon = DaemonProcess(directory: directory, arguments: ["--dev"])
        try await Blocking.run { try daemon.start() }
        // The banner may follow the first answer on the admin socket by a moment: waited for, with a bound.
        let deadline = ContinuousClock.now + .seconds(20)
        while !daemon.log().contains("--secret-stdin") && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        let log = daemon.log()
        #expect(log.contains("admin socket  \(daemon.adminSocket)"))
        #expect(
            log.contains("export CONNVAULT_ADMIN_SOCKET=\(daemon.adminSocket) CONNVAULT_APP_SOCKET=\(daemon.appSocket)")
        )
        #expect(log.contains("connvaultctl add acme --provider personio-v2 --client-id ID --secret-stdin"))
        #expect(fileMode(daemon.stateDirectory)?.mode == 0o700)
        #expect(try await Blocking.run { daemon.stop() } == 0)
        #expect(fileMode(daemon.adminSocket) == nil)
    }

    struct Failure: Sendable, CustomTestStringConvertible {
        var name: String
        var arguments: [String]
        var message: String
        var testDescription: String { self.name }
    }

    static let failures: [Failure] = [
        Failure(
            name: "unknown admin group",
            arguments: ["--dev", "--admin-group", "cv-no-such-group"],
            message: "connvaultd: admin group 'cv-no-such-group' does not exist"
        ),
        Failure(
            name: "socket path too long",
            arguments: ["--dev", "--app-socket", "/tmp/" + String(repeating: "x", count: 110)],
            message: "limited to 107 bytes"
        ),
        Failure(
            name: "missing key without --dev",
            arguments: ["--state-dir", "state", "--app-socket", "a.sock", "--admin-socket", "b.sock"],
            message: "master.key"
        ),
    ]

    @Test("start-up errors are one line on stderr and exit 1", arguments: failures)
    func startupError(_ failure: Failure) async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let result = try await Blocking.run {
            try Command.run(Binaries.daemon, failure.arguments, directory: directory.path)
        }
        #expect(result.status == 1, "\(result)")
        let lines = result.stderr.split(separator: "\n").filter { $0.hasPrefix("connvaultd: ") }
        #expect(lines.count == 1, "\(result)")
        #expect(result.stderr.contains(failure.message), "\(result)")
    }

    @Test(
        "time-outs outside 1 to 300 seconds are refused before anything starts",
        arguments: [["--token-timeout", "0"], ["--proxy-timeout", "301"], ["--proxy-timeout", "soon"]]
    )
    func timeoutFlags(_ flag: [String]) async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let result = try await Blocking.run {
            try Command.run(Binaries.daemon, ["--dev"] + flag, directory: directory.path)
        }
        #expect(result.status == 64, "\(result)")
        #expect(result.stderr.contains(flag[0]), "\(result)")
        #expect(!FileManager.default.fileExists(atPath: directory.file(".connvault")), "state was created")
    }

    @Test("--init creates a private state directory, key and database once, and refuses a second time")
    func initialise() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let state = directory.file("state")
        let first = try await Blocking.run { try Command.run(Binaries.daemon, ["--init", "--state-dir", state]) }
        #expect(first.status == 0, "\(first)")
        #expect(fileMode(state)?.mode == 0o700)
        #expect(fileMode("\(state)/master.key")?.mode == 0o600)
        #expect(fileMode("\(state)/vault.sqlite3") != nil)
        let second = try await Blocking.run { try Command.run(Binaries.daemon, ["--init", "--state-dir", state]) }
        #expect(second.status == 1)
        #expect(second.stderr.contains("already exists"), "\(second)")
    }
}
