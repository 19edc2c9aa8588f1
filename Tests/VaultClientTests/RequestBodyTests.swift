import Foundation
import Testing
import VaultAPI

@Suite struct RequestBodyTests {
    static func secret(_ value: String) -> SecretInput { SecretInput(bytes: Array(value.utf8)) }

    static func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    @Test("a create body has sorted members and the secrets as plain JSON strings")
    func createBody() throws {
        let request = CreateConnectionRequest(
            id: "acme",
            provider: .personioV2,
            settings: ConnectionSettings(appID: "ACME_SYNC"),
            secrets: SecretsInput([.clientID: Self.secret("fake-id-1"), .clientSecret: Self.secret("fake-secret-1")]),
            grants: Grants(uids: [1000])
        )
        let body = try SecretRequestBody.create(request)
        #expect(
            Self.text(body)
                == #"{"grants":{"groups":[],"rules":[],"uids":[1000],"units":[]},"id":"acme","provider":"personio-v2","#
                + #""secrets":{"client_id":"fake-id-1","client_secret":"fake-secret-1"},"#
                + #""settings":{"app_id":"ACME_SYNC"}}"#
        )
        // The server's strict decoder accepts it.
        let decoded = try VaultJSON.decoder().decode(CreateConnectionRequest.self, from: Data(body))
        #expect(decoded.id == "acme")
        #expect(decoded.secrets[.clientSecret].map { $0.withUnsafeBytes { Array($0) } } == Array("fake-secret-1".utf8))
    }

    static let escapes: [(String, String)] = [
        ("fake-secret-1", #""fake-secret-1""#),
        ("fake\"quote", #""fake\"quote""#),
        ("fake\\backslash", #""fake\\backslash""#),
        ("fake/slash", #""fake/slash""#),
        ("fake\ttab\nnewline\rreturn", #""fake\ttab\nnewline\rreturn""#),
        ("fake\u{01}\u{1F}\u{7F}", #""fake\u0001\u001f"# + "\u{7F}\""),
        ("fake-ümläut-秘密-🔑", "\"fake-ümläut-秘密-🔑\""),
        ("\u{08}\u{0C}", #""\b\f""#),
    ]

    @Test("secrets are JSON-escaped exactly and decode back to the same bytes", arguments: escapes)
    func escaping(_ value: String, _ literal: String) throws {
        let body = try SecretRequestBody.reset(SecretsInput([.clientSecret: Self.secret(value)]))
        #expect(Self.text(body) == "{\"client_secret\":\(literal)}")
        let decoded = try VaultJSON.decoder().decode(ResetRequest.self, from: Data(body))
        #expect(decoded[.clientSecret].map { $0.withUnsafeBytes { Array($0) } } == Array(value.utf8))
    }

    @Test("a reset body carries the new credentials as top-level members")
    func resetBody() throws {
        let body = try SecretRequestBody.reset(
            SecretsInput([.clientSecret: Self.secret("fake-secret-2"), .clientID: Self.secret("fake-id-2")])
        )
        #expect(Self.text(body) == #"{"client_id":"fake-id-2","client_secret":"fake-secret-2"}"#)
    }

    @Test("an edit body sends set and cleared settings, secrets and grants only when present")
    func editBody() throws {
        var patch = SettingsPatch()
        patch.appID = .set("NEW_APP")
        patch.scope = .clear
        let secretEdit = EditConnectionRequest(
            settings: patch,
            secrets: SecretsInput([.webhookToken: Self.secret("fake-hook-1")])
        )
        #expect(
            Self.text(try SecretRequestBody.edit(secretEdit))
                == #"{"secrets":{"webhook_token":"fake-hook-1"},"settings":{"app_id":"NEW_APP","scope":null}}"#
        )
        let grantEdit = EditConnectionRequest(grants: Grants(units: ["payroll.service"]))
        #expect(
            Self.text(try SecretRequestBody.edit(grantEdit))
                == #"{"grants":{"groups":[],"rules":[],"uids":[],"units":["payroll.service"]},"settings":{}}"#
        )
    }

    @Test("a secret that is not UTF-8 is refused without echoing it")
    func invalidUTF8() {
        let request = SecretsInput([.clientSecret: SecretInput(bytes: [0x66, 0x61, 0x6B, 0x65, 0xC3, 0x28])])
        #expect(throws: SecretRequestBody.EncodingError.self) { try SecretRequestBody.reset(request) }
        do {
            _ = try SecretRequestBody.reset(request)
        } catch {
            #expect(!"\(error)".contains("fake"))
        }
    }

    @Test("the worst-case escaped secret fits the reserved capacity")
    func capacity() throws {
        let nasty = String(repeating: "\u{01}", count: 300)
        let body = try SecretRequestBody.reset(SecretsInput([.clientSecret: Self.secret(nasty)]))
        #expect(body.count == "{\"client_secret\":\"\"}".utf8.count + 300 * 6)
    }

    @Test(
        "ids are percent-encoded so they stay one path segment",
        arguments: [
            ("acme", "acme"), ("a.b_c-d~", "a.b_c-d~"), ("a/b", "a%2Fb"), ("a b", "a%20b"), ("..", ".."),
            ("x?y#z", "x%3Fy%23z"), ("ü", "%C3%BC"), ("a\r\nb", "a%0D%0Ab"),
        ]
    )
    func pathEncoding(_ id: String, _ encoded: String) {
        #expect(PathTemplate.encode(id) == encoded)
        #expect(Endpoint.showConnection.path(id) == "/v1/connections/\(encoded)")
    }

    @Test("query values are encoded and nil ones dropped")
    func queryEncoding() {
        #expect(
            Endpoint.audit.target(query: [("connection", "a b"), ("since", nil), ("limit", "5")])
                == "/v1/audit?connection=a%20b&limit=5"
        )
        #expect(Endpoint.audit.target(query: [("since", nil)]) == "/v1/audit")
    }
}
