import Foundation
import TestSupport
import Testing
import VaultAPI
import VaultClient
import VaultCore

@testable import VaultServer

/// The application in this process, on real Unix sockets, spoken to over HTTP like a client would.
@Suite("Application on real sockets", .offCooperativePool, .timeLimit(.minutes(3)))
struct ApplicationTests {
    static let canary = "CANARY-7f3a-live-secret"

    func problem(_ response: RawHTTP.Response) throws -> Problem {
        #expect(response.head.lowercased().contains("content-type: application/problem+json"))
        return try VaultJSON.decoder().decode(Problem.self, from: Data(response.body.utf8))
    }

    @Test("sockets appear with their final modes: admin 0600, app 0666")
    func socketModes() async throws {
        try await LiveApplication.with { live in
            #expect(fileMode(live.adminSocket)?.mode == 0o600)
            #expect(fileMode(live.appSocket)?.mode == 0o666)
            // No temporary names are left next to them.
            let entries = try FileManager.default.contentsOfDirectory(atPath: live.directory.path)
            #expect(!entries.contains { $0.hasPrefix(".") })
        }
    }

    @Test("with --admin-group the admin socket is 0660 and belongs to the group")
    func adminGroupMode() async throws {
        let name = ["nogroup", "daemon", "root"].first { (try? GroupLookup.gid(named: $0)) != nil }!
        let gid = try #require(try GroupLookup.gid(named: name))
        try await LiveApplication.with(adminGroup: name) { live in
            let mode = try #require(fileMode(live.adminSocket))
            #expect(mode.mode == 0o660)
            #expect(mode.gid == gid)
            #expect(fileMode(live.appSocket)?.mode == 0o666)
        }
    }

    @Test("every admin route works through the client, and no secret reaches a response, a log line or a metric")
    func adminRoutes() async throws {
        try await LiveApplication.with { live in
            let admin = live.admin
            var secrets = SecretsInput()
            secrets[.clientID] = SecretInput(bytes: Array("fake-client-id".utf8))
            secrets[.clientSecret] = SecretInput(bytes: Array(Self.canary.utf8))
            let created = try await admin.createConnection(
                CreateConnectionRequest(
                    id: "acme",
                    provider: .personioV2,
                    secrets: secrets,
                    grants: Grants(uids: [1000])
                )
            )
            #expect(created.revision == 1)
            #expect(created.state == .active)

            let list = try await admin.connections()
            #expect(list.connections.map(\.id) == ["acme"])
            #expect(try await admin.connection("acme") == created)

            var patch = SettingsPatch()
            patch.appID = .set("ACME_SYNC")
            let edited = try await admin.editConnection("acme", EditConnectionRequest(settings: patch))
            #expect(edited.revision == 2)
            #expect(edited.settings.appID == "ACME_SYNC")

            #expect(try await admin.disable("acme", reason: "audit week").state == .disabled)
            #expect(try await admin.enable("acme").state == .active)

            var reset = SecretsInput()
            reset[.clientSecret] = SecretInput(bytes: Array("fake-rotated-secret".utf8))
            #expect(try await admin.reset("acme", secrets: reset).revision == 3)

            #expect(
                try await admin.setGrants("acme", Grants(units: ["payroll.service"])).grants.units == [
                    "payroll.service"
                ]
            )
            #expect(try await admin.rotateKey().keyID == 2)

            let audit = try await admin.audit(connection: "acme", limit: 1000)
            #expect(audit.entries.contains { $0.action == "connection.create" })
            #expect(audit.entries.allSatisfy { $0.actor.uid == getuid() && $0.actor.pid == getpid() })
            let since = try #require(audit.entries.first?.seq)
            #expect(try await admin.audit(since: since, limit: 1).entries.count == 1)
            #expect(try await admin.verifyAudit().intact)
            #expect(try await admin.status().connections == 1)

            let metrics = try await Blocking.run {
                try RawHTTP.request(socket: live.adminSocket, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            }
            #expect(metrics.status == 200)
            #expect(metrics.head.contains("text/plain; version=0.0.4"))
            #expect(metrics.body.contains(#"route="POST /v1/connections",status="201"} 1"#))
            #expect(metrics.body.contains(#"connvault_connections{state="active"} 1"#))
            #expect(!metrics.body.contains("acme"))

            try await admin.disconnect("acme")
            let gone = try await Blocking.run {
                try RawHTTP.request(socket: live.adminSocket, "GET /v1/connections/acme HTTP/1.1\r\nHost: x\r\n\r\n")
            }
            #expect(gone.status == 404)
            #expect(try self.problem(gone).code == .notFound)

            let deleted = try await Blocking.run {
                try RawHTTP.request(socket: live.adminSocket, "DELETE /v1/connections/nope HTTP/1.1\r\nHost: x\r\n\r\n")
            }
            #expect(deleted.status == 404)

            #expect(!live.logs.lines.joined(separator: "\n").contains(Self.canary))
            #expect(!metrics.raw.contains(Self.canary))
        }
    }

    @Test("DELETE answers 204 without a body; enable takes an empty body or {}")
    func emptyBodies() async throws {
        try await LiveApplication.with { live in
            var secrets = SecretsInput()
            secrets[.clientID] = SecretInput(bytes: Array("fake-id".utf8))
            secrets[.clientSecret] = SecretInput(bytes: Array("fake-secret".utf8))
            _ = try await live.admin.createConnection(
                CreateConnectionRequest(id: "x", provider: .personioV1, secrets: secrets)
            )
            let socket = live.adminSocket
            let empty = try await Blocking.run {
                try RawHTTP.request(
                    socket: socket,
                    "POST /v1/connections/x/enable HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
                )
            }
            #expect(empty.status == 200)
            let object = try await Blocking.run {
                try RawHTTP.request(
                    socket: socket,
                    "POST /v1/connections/x/enable HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
                )
            }
            #expect(object.status == 200)
            let extra = try await Blocking.run {
                try RawHTTP.request(
                    socket: socket,
                    "POST /v1/connections/x/enable HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}"
                )
            }
            #expect(extra.status == 400)
            #expect(try self.problem(extra).code == .unknownField)
            let deleted = try await Blocking.run {
                try RawSocket.exchange(
                    socket,
                    "DELETE /v1/connections/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                )
            }
            #expect(deleted.hasPrefix("HTTP/1.1 204 No Content\r\n"))
            #expect(deleted.hasSuffix("\r\n\r\n"))
            #expect(!deleted.lowercased().contains("content-length"))
        }
    }

    @Test("garbage bytes get 400 and a closed connection; the daemon keeps answering")
    func garbage() async throws {
        try await LiveApplication.with { live in
            let socket = live.adminSocket
            let garbage = try await Blocking.run {
                try RawSocket.exchange(socket, [0x16, 0x03, 0x01, 0x00, 0xff, 0x00, 0x0d, 0x0a, 0x0d, 0x0a])
            }
            #expect(garbage.hasPrefix("HTTP/1.1 400 Bad Request"))
            for _ in 0..<3 {
                let health = try await Blocking.run {
                    try RawHTTP.request(socket: socket, "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
                }
                #expect(health.status == 200)
                #expect(health.body == #"{"status":"ok"}"#)
            }
            let appHealth = try await Blocking.run {
                try RawHTTP.request(socket: live.appSocket, "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            }
            #expect(appHealth.status == 200)
        }
    }

    @Test("pipelined requests on one keep-alive connection are answered in order")
    func pipelining() async throws {
        try await LiveApplication.with { live in
            let health = "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
            let last = "GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            let socket = live.adminSocket
            let output = try await Blocking.run {
                try RawSocket.exchange(socket, health + "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n" + health + last)
            }
            let statuses = HTTPConnectionHandlerTests.statusLines(output)
            #expect(statuses == ["HTTP/1.1 200 OK", "HTTP/1.1 404 Not Found", "HTTP/1.1 200 OK", "HTTP/1.1 200 OK"])
            #expect(output.hasSuffix("}"))
            #expect(output.contains(#""version":"#))
        }
    }

    @Test("a 65 KiB body gets 413 payload_too_large")
    func tooLarge() async throws {
        try await LiveApplication.with { live in
            let body = #"{"id":"x","pad":""# + String(repeating: "a", count: 65 * 1024) + #""}"#
            let request =
                "POST /v1/connections HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
            let socket = live.adminSocket
            let response = try await Blocking.run { try RawHTTP.request(socket: socket, request) }
            #expect(response.status == 413)
            #expect(try self.problem(response).code == .payloadTooLarge)
            #expect(try await live.admin.connections().connections.isEmpty)
        }
    }

    @Test("404 for unknown routes, 405 with Allow for wrong methods, on both sockets")
    func notFoundAndMethod() async throws {
        try await LiveApplication.with { live in
            for socket in [live.adminSocket, live.appSocket] {
                let missing = try await Blocking.run {
                    try RawHTTP.request(socket: socket, "GET /v2/everything HTTP/1.1\r\nHost: x\r\n\r\n")
                }
                #expect(missing.status == 404)
                #expect(try self.problem(missing).code == .notFound)
                let method = try await Blocking.run {
                    try RawHTTP.request(
                        socket: socket,
                        "PUT /v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
                    )
                }
                #expect(method.status == 405)
                #expect(method.head.contains("Allow: GET"))
                #expect(try self.problem(method).code == .methodNotAllowed)
            }
            // The app socket has no admin routes.
            let status = try await Blocking.run {
                try RawHTTP.request(socket: live.appSocket, "GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
            }
            #expect(status.status == 404)
        }
    }

    @Test("audit query parameters are checked before the vault is asked")
    func auditQuery() async throws {
        try await LiveApplication.with { live in
            for (target, code) in [
                ("/v1/audit?limit=0", "bad_request"), ("/v1/audit?limit=1001", "bad_request"),
                ("/v1/audit?since=-1", "bad_request"),
                ("/v1/audit?limit=ten", "bad_request"), ("/v1/audit?colour=red", "bad_request"),
                ("/v1/audit?connection=Bad%2FId", "invalid_id"),
            ] {
                let socket = live.adminSocket
                let response = try await Blocking.run {
                    try RawHTTP.request(socket: socket, "GET \(target) HTTP/1.1\r\nHost: x\r\n\r\n")
                }
                #expect(response.status == 400, "\(target)")
                #expect(try self.problem(response).code.rawValue == code, "\(target)")
            }
            let fine = try await live.admin.audit(limit: 1000)
            #expect(fine.entries.first?.action == "vault.init")
        }
    }

    // MARK: - Start-up refusals

    @Test("a second application on the same sockets refuses to start, and the first keeps serving")
    func secondDaemon() async throws {
        try await LiveApplication.with { live in
            let error = await #expect(throws: StartupError.self) {
                _ = try await buildApplication(
                    configuration: LiveApplication.configuration(in: live.directory),
                    logger: live.logs.logger()
                )
            }
            #expect(error?.description.contains("already listening on \(live.adminSocket)") == true)
            let status = try await live.admin.status()
            #expect(status.connections == 0)
        }
    }

    @Test("a stale socket file left by a dead daemon is replaced; a regular file is not")
    func staleSocket() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        // A socket file nobody listens on, as a killed daemon leaves it.
        let stale = try UnixSocketFile.bind(path: directory.file("admin.sock"), mode: 0o600, group: nil)
        close(stale.descriptor)
        #expect(fileMode(directory.file("admin.sock")) != nil)
        let application = try await buildApplication(
            configuration: LiveApplication.configuration(in: directory),
            logger: LogCapture().logger()
        )
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await application.run() }
            let socket = directory.file("admin.sock")
            let health = try await Blocking.run {
                try RawHTTP.request(socket: socket, "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            }
            #expect(health.status == 200)
            await application.shutdown()
            try await group.waitForAll()
        }
        // Shutdown removed both socket files.
        #expect(fileMode(directory.file("admin.sock")) == nil)
        #expect(fileMode(directory.file("app.sock")) == nil)

        _ = FileManager.default.createFile(atPath: directory.file("app.sock"), contents: Data("not a socket".utf8))
        let error = await #expect(throws: StartupError.self) {
            _ = try await buildApplication(
                configuration: LiveApplication.configuration(in: directory),
                logger: LogCapture().logger()
            )
        }
        #expect(error?.description.contains("is not a socket") == true)
        #expect(
            fileMode(directory.file("admin.sock")) == nil,
            "the admin socket bound before the failure is removed again"
        )
    }

    @Test("a socket path over 107 bytes is a clear start-up error")
    func longPath() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var configuration = LiveApplication.configuration(in: directory)
        configuration.appSocketPath = directory.file(String(repeating: "s", count: 100) + ".sock")
        let error = await #expect(throws: StartupError.self) {
            _ = try await buildApplication(configuration: configuration, logger: LogCapture().logger())
        }
        #expect(error?.description.contains("limited to 107 bytes") == true)
        #expect(fileMode(directory.file("vault.sqlite3")) == nil, "checked before the vault is opened")
    }

    @Test("an unknown admin group is a start-up error naming it")
    func unknownGroup() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let error = await #expect(throws: StartupError.self) {
            _ = try await buildApplication(
                configuration: LiveApplication.configuration(in: directory, adminGroup: "cv-no-such-group"),
                logger: LogCapture().logger()
            )
        }
        #expect(error?.description == "admin group 'cv-no-such-group' does not exist (--admin-group)")
    }

    @Test("a missing key file is a start-up error naming it, and nothing is left bound")
    func missingKey() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var configuration = LiveApplication.configuration(in: directory)
        configuration.vault.createKeyIfMissing = false
        let error = await #expect(throws: StartupError.self) {
            _ = try await buildApplication(configuration: configuration, logger: LogCapture().logger())
        }
        #expect(error?.description.contains("master.key") == true)
        #expect(fileMode(directory.file("admin.sock")) == nil)
    }

    // MARK: - Lifecycle

    @Test("shutdown closes idle keep-alive connections and removes the sockets")
    func gracefulShutdown() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let application = try await buildApplication(
            configuration: LiveApplication.configuration(in: directory),
            logger: LogCapture().logger()
        )
        let socket = directory.file("admin.sock")
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await application.run() }
            // Open a keep-alive connection, answer one request on it and leave it idle: shutdown must close it rather
            // than wait for it. (Answered first, so that it is the server's connection: one still in the listen
            // backlog when the listener closes is reset by the kernel, which says nothing about the server.)
            let idle = try RawSocket.connect(socket)
            defer { close(idle) }
            let answer = try RawSocket.answer(idle, "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(answer.hasPrefix("HTTP/1.1 200"), "\(answer)")
            await application.shutdown()
            try await group.waitForAll()
            var poller = pollfd(fd: idle, events: Int16(POLLIN), revents: 0)
            #expect(poll(&poller, 1, 2000) == 1)
            var byte: UInt8 = 0
            let received = recv(idle, &byte, 1, Int32(MSG_DONTWAIT))
            let receiveError = received < 0 ? String(cString: strerror(errno)) : "none"
            #expect(
                received == 0,
                "the idle connection was closed (poll revents \(poller.revents), recv error \(receiveError))"
            )
        }
        #expect(throws: TestSupportError.self) { _ = try RawSocket.connect(socket) }
    }
}
