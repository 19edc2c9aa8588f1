import Foundation
import TestSupport
import Testing
import VaultAPI

@testable import VaultClient

#if canImport(Glibc)
import Glibc
#endif

/// The admin client checks who serves the socket before it writes a request (issue 8 item 5, kept on
/// async-http-client through its connection hook): here against a server that uid 65534 runs.
@Suite(
    .enabled(
        if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")
            && FileManager.default.isExecutableFile(atPath: "/usr/bin/python3"),
        "needs root, setpriv and python3 to run a server as uid 65534"
    ),
    .timeLimit(.minutes(1))
)
struct PeerCheckTests {
    static let nobody: uid_t = 65534
    static let secret = "CANARY-PEER-CHECK-SECRET"

    @Test("AdminClient refuses an admin socket that another user serves, and sends it no byte")
    func refusesAnotherUsersServer() async throws {
        let directory = try TemporaryDirectory(prefix: "cvp")
        defer { directory.remove() }
        #expect(chown(directory.path, Self.nobody, Self.nobody) == 0)
        let socket = directory.file("admin.sock")
        let record = directory.file("received")
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
        while access(socket, F_OK) != 0 && server.isRunning && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        try #require(access(socket, F_OK) == 0, "the fake server did not bind \(socket)")

        let request = CreateConnectionRequest(
            id: "acme",
            provider: .personioV2,
            secrets: SecretsInput([
                .clientID: SecretInput(bytes: Array("CANARY-PEER-CHECK-CLIENT".utf8)),
                .clientSecret: SecretInput(bytes: Array(Self.secret.utf8)),
            ])
        )
        let error = try #require(
            await #expect(throws: VaultClientError.self) {
                try await AdminClient(socketPath: socket).createConnection(request)
            }
        )
        #expect(error.code == .untrustedServer)
        #expect(error.message.contains("refusing to use \(socket): it is served by uid 65534"), "\(error)")
        #expect(!error.description.contains(Self.secret))

        // The fake server writes what it received once the client has closed the connection.
        _ = await server.exit(timeout: .seconds(30))
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
}
