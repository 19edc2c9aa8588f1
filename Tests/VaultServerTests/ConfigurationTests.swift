import Foundation
import Testing
import VaultAPI
import VaultCore

@testable import VaultServer

@Suite("Start-up configuration")
struct ConfigurationTests {
    // MARK: - Socket activation

    @Test("named sockets from systemd map to descriptors from 3 on")
    func activation() throws {
        let environment = ["LISTEN_PID": "77", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "app:admin"]
        #expect(try SocketActivation.parse(environment: environment, pid: 77) == ["app": 3, "admin": 4])
        let one = ["LISTEN_PID": "77", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "admin"]
        #expect(try SocketActivation.parse(environment: one, pid: 77) == ["admin": 3])
    }

    @Test("variables meant for another process, or absent, mean no activation")
    func noActivation() throws {
        #expect(try SocketActivation.parse(environment: [:], pid: 77).isEmpty)
        #expect(try SocketActivation.parse(environment: ["LISTEN_PID": "78", "LISTEN_FDS": "2"], pid: 77).isEmpty)
        #expect(try SocketActivation.parse(environment: ["LISTEN_PID": "x", "LISTEN_FDS": "2"], pid: 77).isEmpty)
        #expect(try SocketActivation.parse(environment: ["LISTEN_PID": "77", "LISTEN_FDS": "0"], pid: 77).isEmpty)
    }

    static let badActivations: [[String: String]] = [
        ["LISTEN_PID": "77", "LISTEN_FDS": "2"],
        ["LISTEN_PID": "77", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "app"],
        ["LISTEN_PID": "77", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "connvaultd.socket"],
        ["LISTEN_PID": "77", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "app:app"],
        ["LISTEN_PID": "77", "LISTEN_FDS": "two", "LISTEN_FDNAMES": "app:admin"],
        ["LISTEN_PID": "77", "LISTEN_FDS": "-1"],
    ]

    @Test("malformed or unnamed activation is a start-up error", arguments: badActivations)
    func badActivation(_ environment: [String: String]) {
        #expect(throws: StartupError.self) { try SocketActivation.parse(environment: environment, pid: 77) }
    }

    // MARK: - systemd notification

    @Test("NOTIFY_SOCKET and the watchdog interval come from the environment")
    func notify() {
        #expect(SystemdNotifier.Configuration.from(environment: [:], pid: 5) == nil)
        #expect(SystemdNotifier.Configuration.from(environment: ["NOTIFY_SOCKET": ""], pid: 5) == nil)
        #expect(
            SystemdNotifier.Configuration.from(environment: ["NOTIFY_SOCKET": "@sd/notify"], pid: 5)
                == .init(socketPath: "@sd/notify", watchdogInterval: nil)
        )
        #expect(
            SystemdNotifier.Configuration.from(
                environment: ["NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "30000000"],
                pid: 5
            )
                == .init(socketPath: "/run/n", watchdogInterval: .seconds(15))
        )
        #expect(
            SystemdNotifier.Configuration.from(
                environment: ["NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "5"],
                pid: 5
            )?.watchdogInterval
                == .seconds(15)
        )
        #expect(
            SystemdNotifier.Configuration.from(
                environment: ["NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "6"],
                pid: 5
            )?.watchdogInterval
                == nil
        )
    }

    // MARK: - Layout

    @Test("defaults: /var/lib/connvault, /run/connvault sockets, key beside the database")
    func defaults() {
        let layout = DaemonLayout.resolve(
            stateDirectory: nil,
            appSocket: nil,
            adminSocket: nil,
            keyFile: nil,
            dev: false,
            environment: [:],
            workingDirectory: "/srv"
        )
        #expect(
            layout
                == DaemonLayout(
                    stateDirectory: "/var/lib/connvault",
                    databasePath: "/var/lib/connvault/vault.sqlite3",
                    keyFilePath: "/var/lib/connvault/master.key",
                    appSocketPath: "/run/connvault/app.sock",
                    adminSocketPath: "/run/connvault/admin.sock",
                    createKeyIfMissing: false
                )
        )
    }

    @Test("under systemd the key file is a credential")
    func credentials() {
        let layout = DaemonLayout.resolve(
            stateDirectory: nil,
            appSocket: nil,
            adminSocket: nil,
            keyFile: nil,
            dev: false,
            environment: ["CREDENTIALS_DIRECTORY": "/run/credentials/connvaultd.service"],
            workingDirectory: "/"
        )
        #expect(layout.keyFilePath == "/run/credentials/connvaultd.service/master.key")
        let explicit = DaemonLayout.resolve(
            stateDirectory: nil,
            appSocket: nil,
            adminSocket: nil,
            keyFile: "/etc/cv/key",
            dev: false,
            environment: ["CREDENTIALS_DIRECTORY": "/run/credentials/x"],
            workingDirectory: "/"
        )
        #expect(explicit.keyFilePath == "/etc/cv/key")
    }

    @Test("--dev keeps everything in ./.connvault and may create the key")
    func dev() {
        let layout = DaemonLayout.resolve(
            stateDirectory: nil,
            appSocket: nil,
            adminSocket: nil,
            keyFile: nil,
            dev: true,
            environment: ["CREDENTIALS_DIRECTORY": "/run/credentials/x"],
            workingDirectory: "/home/me/project/"
        )
        #expect(
            layout
                == DaemonLayout(
                    stateDirectory: "/home/me/project/.connvault",
                    databasePath: "/home/me/project/.connvault/vault.sqlite3",
                    keyFilePath: "/home/me/project/.connvault/master.key",
                    appSocketPath: "/home/me/project/.connvault/app.sock",
                    adminSocketPath: "/home/me/project/.connvault/admin.sock",
                    createKeyIfMissing: true
                )
        )
    }

    @Test("explicit flags win and relative paths become absolute")
    func explicit() {
        let layout = DaemonLayout.resolve(
            stateDirectory: "state",
            appSocket: "./a.sock",
            adminSocket: "/run/x//b.sock",
            keyFile: nil,
            dev: true,
            environment: [:],
            workingDirectory: "/tmp/cv-1"
        )
        #expect(layout.stateDirectory == "/tmp/cv-1/state")
        #expect(layout.appSocketPath == "/tmp/cv-1/a.sock")
        #expect(layout.adminSocketPath == "/run/x/b.sock")
        #expect(layout.keyFilePath == "/tmp/cv-1/state/master.key")
    }

    // MARK: - Query parameters

    @Test("query parameters: known names, decoded values, bounded integers")
    func query() throws {
        let query = try QueryParameters("connection=acme&since=5&limit=10", allowed: ["connection", "since", "limit"])
        #expect(query["connection"] == "acme")
        #expect(try query.integer("since", in: 0...Int64.max) == 5)
        #expect(try query.integer("limit", in: 1...1000) == 10)
        #expect(try query.integer("missing", in: 1...1000) == nil)
        #expect(try QueryParameters("connection=a%2Db+c", allowed: ["connection"])["connection"] == "a-b c")
        #expect(try QueryParameters("", allowed: []).values.isEmpty)
    }

    static let badQueries: [(String, String)] = [
        ("colour=red", "unknown"), ("limit=1&limit=2", "more than once"), ("limit=%zz", "percent"),
        ("limit=%C3%28", "UTF-8"),
    ]

    @Test("bad query strings are 400 bad_request", arguments: badQueries)
    func badQuery(_ query: String, _ message: String) {
        let error = #expect(throws: HTTPError.self) {
            try QueryParameters(Substring(query), allowed: ["limit", "connection", "since"])
        }
        #expect(error?.code == .badRequest)
        #expect(error?.message.contains(message) == true)
    }

    static let badNumbers = ["", "-1", "1.5", "0x10", "1001", "99999999999999999999", " 5", "+5"]

    @Test("limits outside 1…1000 and non-numbers are refused", arguments: badNumbers)
    func badNumber(_ value: String) throws {
        let query = try QueryParameters(
            Substring(
                "limit=\(value.replacingOccurrences(of: " ", with: "%20").replacingOccurrences(of: "+", with: "%2B"))"
            ),
            allowed: ["limit"]
        )
        #expect(throws: HTTPError.self) { try query.integer("limit", in: 1...1000) }
    }
}
