import Testing
import VaultAPI

@testable import VaultClient

@Suite struct SocketPathTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var explicit: String?
        var environment: [String: String]
        var kind: SocketKind
        var expected: String
        var testDescription: String { self.name }
    }

    static let cases: [Case] = [
        Case(
            name: "admin default",
            explicit: nil,
            environment: [:],
            kind: .admin,
            expected: "/run/connvault/admin.sock"
        ),
        Case(name: "app default", explicit: nil, environment: [:], kind: .app, expected: "/run/connvault/app.sock"),
        Case(
            name: "admin from env",
            explicit: nil,
            environment: ["CONNVAULT_ADMIN_SOCKET": "/tmp/a.sock"],
            kind: .admin,
            expected: "/tmp/a.sock"
        ),
        Case(
            name: "app from env",
            explicit: nil,
            environment: ["CONNVAULT_APP_SOCKET": "/tmp/b.sock"],
            kind: .app,
            expected: "/tmp/b.sock"
        ),
        Case(
            name: "other kind's env ignored",
            explicit: nil,
            environment: ["CONNVAULT_APP_SOCKET": "/tmp/b.sock"],
            kind: .admin,
            expected: "/run/connvault/admin.sock"
        ),
        Case(
            name: "empty env ignored",
            explicit: nil,
            environment: ["CONNVAULT_ADMIN_SOCKET": ""],
            kind: .admin,
            expected: "/run/connvault/admin.sock"
        ),
        Case(
            name: "explicit beats env",
            explicit: "./.connvault/admin.sock",
            environment: ["CONNVAULT_ADMIN_SOCKET": "/tmp/a.sock"],
            kind: .admin,
            expected: "./.connvault/admin.sock"
        ),
        Case(
            name: "empty explicit falls back",
            explicit: "",
            environment: ["CONNVAULT_APP_SOCKET": "/tmp/b.sock"],
            kind: .app,
            expected: "/tmp/b.sock"
        ),
    ]

    @Test("explicit, then environment, then default", arguments: cases)
    func resolution(_ testCase: Case) {
        #expect(
            SocketPath.resolve(testCase.explicit, kind: testCase.kind, environment: testCase.environment)
                == testCase.expected
        )
    }

    @Test("clients resolve their socket the same way")
    func clients() {
        #expect(AdminClient(environment: [:]).socketPath == "/run/connvault/admin.sock")
        #expect(AppClient(environment: ["CONNVAULT_APP_SOCKET": "/tmp/x.sock"]).socketPath == "/tmp/x.sock")
        #expect(
            AppClient(socketPath: "/tmp/y.sock", environment: ["CONNVAULT_APP_SOCKET": "/tmp/x.sock"]).socketPath
                == "/tmp/y.sock"
        )
    }

    @Test(
        "paths up to 107 bytes are accepted, longer ones refused with a clear error",
        arguments: [1, 50, 107, 108, 200]
    )
    func lengthLimit(_ length: Int) throws {
        let path = "/" + String(repeating: "a", count: length - 1)
        if length <= SocketPath.maximumLength {
            try SocketPath.validate(path)
        } else {
            let error = try #require(throws: VaultClientError.self) { try SocketPath.validate(path, kind: .admin) }
            #expect(error.code == .invalidRequest)
            #expect(error.message.contains("\(length) bytes"))
            #expect(error.message.contains("--admin-socket"))
        }
    }

    @Test("an empty path or one with a NUL byte is refused", arguments: ["", "/tmp/a\u{0}b"])
    func invalidPaths(_ path: String) {
        #expect(throws: VaultClientError(.invalidRequest, "")) { try SocketPath.validate(path) }
    }
}
