import Foundation
import TestSupport
import Testing
import VaultAPI

/// Bad input gets a clear problem+json error, changes nothing, and never takes the daemon down.
@Suite("Bad input end to end", .offCooperativePool, .timeLimit(.minutes(5)))
struct BadInputEndToEndTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var request: [UInt8]
        var status: Int
        var code: String?
        var testDescription: String { self.name }

        init(_ name: String, _ request: String, _ status: Int, _ code: String?) {
            self.name = name
            self.request = Array(request.utf8)
            self.status = status
            self.code = code
        }

        init(_ name: String, bytes: [UInt8], _ status: Int, _ code: String?) {
            self.name = name
            self.request = bytes
            self.status = status
            self.code = code
        }
    }

    static func post(
        _ path: String,
        _ body: String,
        method: String = "POST",
        contentType: String = "application/json"
    ) -> String {
        "\(method) \(path) HTTP/1.1\r\nHost: localhost\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
    }

    static let validSecrets = #""secrets":{"client_id":"fake-id","client_secret":"fake-secret"}"#

    static let cases: [Case] = [
        Case("malformed JSON", post("/v1/connections", #"{"id": "x", "#), 400, "invalid_json"),
        Case("not an object", post("/v1/connections", "[1,2,3]"), 400, "invalid_json"),
        Case(
            "unknown top-level field",
            post("/v1/connections", #"{"id":"x","provider":"personio-v2","colour":"red",\#(validSecrets)}"#),
            400,
            "unknown_field"
        ),
        Case(
            "unknown settings field",
            post(
                "/v1/connections",
                #"{"id":"x","provider":"personio-v2","settings":{"api_url":"https://a"},\#(validSecrets)}"#
            ),
            400,
            "unknown_field"
        ),
        Case(
            "unknown secret field",
            post(
                "/v1/connections",
                #"{"id":"x","provider":"personio-v2","secrets":{"client_id":"a","client_secret":"b","pin":"c"}}"#
            ),
            400,
            "unknown_field"
        ),
        Case(
            "invalid id",
            post("/v1/connections", #"{"id":"Bad/ID","provider":"personio-v2",\#(validSecrets)}"#),
            400,
            "invalid_id"
        ),
        Case(
            "id too long",
            post(
                "/v1/connections",
                #"{"id":"\#(String(repeating: "a", count: 64))","provider":"personio-v2",\#(validSecrets)}"#
            ),
            400,
            "invalid_id"
        ),
        Case(
            "unknown provider",
            post("/v1/connections", #"{"id":"x","provider":"workday",\#(validSecrets)}"#),
            400,
            "invalid_provider"
        ),
        Case(
            "missing secret",
            post("/v1/connections", #"{"id":"x","provider":"personio-v2","secrets":{"client_id":"fake-id"}}"#),
            400,
            "missing_secret"
        ),
        Case(
            "secret with a newline",
            post(
                "/v1/connections",
                #"{"id":"x","provider":"personio-v2","secrets":{"client_id":"a","client_secret":"b\nc"}}"#
            ),
            400,
            "invalid_secret"
        ),
        Case(
            "secret of another provider",
            post(
                "/v1/connections",
                #"{"id":"x","provider":"personio-v2","secrets":{"client_id":"a","client_secret":"b","recruiting_token":"c"}}"#
            ),
            400,
            "invalid_secret"
        ),
        Case(
            "plain http to a remote host",
            post(
                "/v1/connections",
                #"{"id":"x","provider":"personio-v2","settings":{"api_base_url":"http://example.com"},\#(validSecrets)}"#
            ),
            400,
            "invalid_setting"
        ),
        Case(
            "recruiting without company",
            post("/v1/connections", #"{"id":"x","provider":"personio-recruiting","secrets":{"recruiting_token":"k"}}"#),
            400,
            "invalid_setting"
        ),
        Case(
            "bad grant",
            post(
                "/v1/connections",
                #"{"id":"x","provider":"personio-v2","grants":{"units":["no dot"]},\#(validSecrets)}"#
            ),
            400,
            "invalid_grant"
        ),
        Case(
            "wrong content type",
            post("/v1/connections", "id=x", contentType: "application/x-www-form-urlencoded"),
            415,
            "unsupported_media_type"
        ),
        Case(
            "body over 64 KiB",
            post("/v1/connections", #"{"id":"x","pad":""# + String(repeating: "a", count: 66 * 1024) + #""}"#),
            413,
            "payload_too_large"
        ),
        Case(
            "unknown connection",
            "GET /v1/connections/nope HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            404,
            "not_found"
        ),
        Case(
            "edit of unknown connection",
            post("/v1/connections/nope", #"{"settings":{"app_id":"A"}}"#, method: "PATCH"),
            404,
            "not_found"
        ),
        Case("empty edit", post("/v1/connections/seed", "{}", method: "PATCH"), 400, "bad_request"),
        Case(
            "invalid id in path",
            "GET /v1/connections/..%2Fetc HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            400,
            "invalid_id"
        ),
        Case(
            "unknown route",
            "GET /v2/everything HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            404,
            "not_found"
        ),
        Case(
            "wrong method",
            "PUT /v1/status HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            405,
            "method_not_allowed"
        ),
        Case("garbage bytes", bytes: [0x16, 0x03, 0x01, 0x00, 0xff, 0x00, 0x0d, 0x0a, 0x0d, 0x0a], 400, nil),
        Case("HTTP/1.1 without a method", "\r\n\r\n/v1/connections HTTP/1.1\r\n\r\n", 400, nil),
    ]

    @Test("each bad request is answered clearly and changes nothing", arguments: cases)
    func badRequest(_ testCase: Case) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let daemon = DaemonProcess(directory: directory)
        try daemon.start()
        defer { daemon.stop() }
        let seeded = try daemon.ctl(
            ["add", "seed", "--provider", "personio-v2", "--client-id", "fake-id", "--secret-stdin"],
            stdin: "fake-secret\n"
        )
        #expect(seeded.status == 0, "\(seeded)")
        let before = try daemon.ctl(["audit", "--json", "--limit", "1000"]).stdout

        let response = try RawHTTP.request(socket: daemon.adminSocket, bytes: testCase.request)
        #expect(response.status == testCase.status, "\(response.raw.prefix(600))")
        if let code = testCase.code {
            #expect(response.head.lowercased().contains("content-type: application/problem+json"))
            let problem = try VaultJSON.decoder().decode(Problem.self, from: Data(response.body.utf8))
            #expect(problem.code.rawValue == code)
            #expect(problem.status == testCase.status)
            #expect(!problem.detail.isEmpty)
            #expect(!problem.detail.contains("fake-secret"))
        }

        // Still up, nothing changed.
        #expect(daemon.isRunning)
        let list = try VaultJSON.decoder().decode(
            ConnectionList.self,
            from: Data(try daemon.ctl(["list", "--json"]).stdout.utf8)
        )
        #expect(list.connections.map(\.id) == ["seed"])
        #expect(list.connections.first?.revision == 1)
        #expect(try daemon.ctl(["audit", "--json", "--limit", "1000"]).stdout == before)
    }
}
