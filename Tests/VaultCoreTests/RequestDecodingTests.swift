import Foundation
import Testing
import VaultAPI
import VaultCore
import VaultTestSupport

/// Request bodies as they arrive on the admin socket: decoded with `VaultJSON.decoder()`, then handed to the vault.
@Suite struct RequestDecodingTests {
    enum Body: String, Sendable {
        case create, edit, disable, reset, grants
    }

    enum Expected: Sendable, Equatable {
        /// `UnknownFieldError` for the member at this dotted path.
        case unknownField(String)
        /// Another `DecodingError` (wrong type, unknown provider, missing member) at this dotted path (nil: anywhere;
        /// Foundation reports some number overflows without a path).
        case undecodable(String?)
        /// Decodes, and the vault refuses it with this code.
        case refused(VaultError.Code)
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var body: Body
        var json: String
        var expected: Expected
        var testDescription: String { "\(self.body.rawValue) \(self.json)" }
    }

    static let v2Secrets = #""secrets":{"client_id":"fake-id","client_secret":"fake-secret"}"#

    static let cases: [Case] = [
        // Unknown members, at every level.
        Case(
            body: .create,
            json: #"{"id":"fresh","provider":"personio-v2",\#(v2Secrets),"extra":1}"#,
            expected: .unknownField("extra")
        ),
        Case(
            body: .create,
            json: #"{"id":"fresh","provider":"personio-v2",\#(v2Secrets),"settings":{"base_url":"https://x"}}"#,
            expected: .unknownField("settings.base_url")
        ),
        Case(
            body: .create,
            json:
                #"{"id":"fresh","provider":"personio-v2","secrets":{"client_id":"a","client_secret":"b","password":"c"}}"#,
            expected: .unknownField("secrets.password")
        ),
        Case(
            body: .create,
            json: #"{"id":"fresh","provider":"personio-v2",\#(v2Secrets),"grants":{"users":[1]}}"#,
            expected: .unknownField("grants.users")
        ),
        Case(body: .edit, json: #"{"secret":{"client_secret":"x"}}"#, expected: .unknownField("secret")),
        Case(body: .edit, json: #"{"settings":{"scopes":"x"}}"#, expected: .unknownField("settings.scopes")),
        Case(body: .edit, json: #"{"secrets":{"clientsecret":"x"}}"#, expected: .unknownField("secrets.clientsecret")),
        Case(body: .edit, json: #"{"grants":{"uid":[1]}}"#, expected: .unknownField("grants.uid")),
        Case(body: .disable, json: #"{"reason":"x","force":true}"#, expected: .unknownField("force")),
        Case(body: .reset, json: #"{"client_secret":"x","token":"y"}"#, expected: .unknownField("token")),
        Case(body: .grants, json: #"{"uids":[1],"gids":[2]}"#, expected: .unknownField("gids")),

        // Wrong shapes.
        Case(
            body: .create,
            json: #"{"id":"fresh","provider":"personio-v3",\#(v2Secrets)}"#,
            expected: .undecodable("provider")
        ),
        Case(
            body: .create,
            json: #"{"id":"fresh","provider":"Personio-V2",\#(v2Secrets)}"#,
            expected: .undecodable("provider")
        ),
        Case(body: .create, json: #"{"provider":"personio-v2",\#(v2Secrets)}"#, expected: .undecodable("")),
        Case(body: .create, json: #"{"id":5,"provider":"personio-v2",\#(v2Secrets)}"#, expected: .undecodable("id")),
        Case(
            body: .create,
            json: #"{"id":"fresh","provider":"personio-v2",\#(v2Secrets),"grants":{"uids":[-1]}}"#,
            expected: .undecodable(nil)
        ),
        Case(
            body: .create,
            json: #"{"id":"fresh","provider":"personio-v2","secrets":{"client_id":"a","client_secret":7}}"#,
            expected: .undecodable("secrets.client_secret")
        ),
        Case(body: .edit, json: #"{"settings":{"scope":5}}"#, expected: .undecodable("settings.scope")),
        Case(body: .edit, json: #"[]"#, expected: .undecodable("")),

        // Decodes, then refused by the vault.
        Case(
            body: .create,
            json: #"{"id":"fresh","provider":"personio-v2","secrets":{"client_id":"fake-id"}}"#,
            expected: .refused(.missingSecret)
        ),
        Case(
            body: .create,
            json: #"{"id":"fresh","provider":"personio-v2","secrets":{"client_secret":"fake-secret"}}"#,
            expected: .refused(.missingSecret)
        ),
        Case(
            body: .create,
            json: #"{"id":"fresh","provider":"personio-recruiting","secrets":{"recruiting_token":"fake"}}"#,
            expected: .refused(.invalidSetting)
        ),
        Case(
            body: .create,
            json:
                #"{"id":"fresh","provider":"personio-v2","secrets":{"client_id":"a","client_secret":"b","recruiting_token":"c"}}"#,
            expected: .refused(.invalidSecret)
        ),
        Case(
            body: .create,
            json: #"{"id":"fresh","provider":"personio-v2","secrets":{"client_id":"a","client_secret":"b\nc"}}"#,
            expected: .refused(.invalidSecret)
        ),
        Case(
            body: .create,
            json: #"{"id":"fresh","provider":"personio-v2","secrets":{"client_id":"a","client_secret":"b\u0000c"}}"#,
            expected: .refused(.invalidSecret)
        ),
        Case(
            body: .create,
            json:
                #"{"id":"fresh","provider":"personio-v2",\#(v2Secrets),"settings":{"api_base_url":"http://api.personio.de"}}"#,
            expected: .refused(.invalidSetting)
        ),
        Case(
            body: .create,
            json: #"{"id":"fresh","provider":"personio-v2",\#(v2Secrets),"settings":{"permissions":["hr:read"]}}"#,
            expected: .refused(.invalidSetting)
        ),
        Case(
            body: .create,
            json: #"{"id":"fresh","provider":"personio-v2",\#(v2Secrets),"grants":{"units":["app"]}}"#,
            expected: .refused(.invalidGrant)
        ),
        Case(
            body: .create,
            json: #"{"id":"fresh","provider":"personio-v2",\#(v2Secrets),"grants":{"groups":["hr staff"]}}"#,
            expected: .refused(.invalidGrant)
        ),
        Case(
            body: .create,
            json: #"{"id":"Fresh","provider":"personio-v2",\#(v2Secrets)}"#,
            expected: .refused(.invalidID)
        ),
        Case(
            body: .create,
            json: #"{"id":"seed","provider":"personio-v2",\#(v2Secrets)}"#,
            expected: .refused(.alreadyExists)
        ),
        Case(body: .edit, json: #"{}"#, expected: .refused(.badRequest)),
        Case(
            body: .edit,
            json: #"{"settings":{"api_base_url":"https://u@x.example"}}"#,
            expected: .refused(.invalidSetting)
        ),
        Case(body: .reset, json: #"{"client_id":"fake-id"}"#, expected: .refused(.missingSecret)),
        Case(body: .disable, json: #"{"reason":"two\nlines"}"#, expected: .refused(.badRequest)),
        Case(body: .grants, json: #"{"units":["app"]}"#, expected: .refused(.invalidGrant)),
    ]

    /// Decodes `json` as `body` and runs it against the `seed` connection.
    static func run(_ body: Body, _ json: String, _ vault: Vault) async throws {
        let data = Data(json.utf8)
        let decoder = VaultJSON.decoder()
        switch body {
        case .create:
            _ = try await vault.create(try decoder.decode(CreateConnectionRequest.self, from: data), by: admin)
        case .edit:
            _ = try await vault.edit("seed", try decoder.decode(EditConnectionRequest.self, from: data), by: admin)
        case .disable:
            _ = try await vault.disable(
                "seed",
                reason: try decoder.decode(DisableRequest.self, from: data).reason,
                by: admin
            )
        case .reset:
            _ = try await vault.reset("seed", secrets: try decoder.decode(ResetRequest.self, from: data), by: admin)
        case .grants:
            _ = try await vault.setGrants("seed", try decoder.decode(GrantsRequest.self, from: data), by: admin)
        }
    }

    @Test(arguments: Self.cases)
    func isRefusedAndChangesNothing(input: Case) async throws {
        try await BadInputTests.seeded { fixture, vault in
            let before = try await VaultState.of(vault, fixture)
            let error = await #expect(throws: (any Error).self) { try await Self.run(input.body, input.json, vault) }
            switch input.expected {
            case .unknownField(let path):
                let unknown = try #require(error as? UnknownFieldError, "\(String(describing: error))")
                #expect((unknown.path.isEmpty ? unknown.field : "\(unknown.path).\(unknown.field)") == path)
                #expect(unknown.description.contains(path))
            case .undecodable(let path):
                let decoding = try #require(error as? DecodingError, "\(String(describing: error))")
                if let path { #expect(Self.path(of: decoding) == path) }
            case .refused(let code):
                let refused = try #require(error as? VaultError, "\(String(describing: error))")
                #expect(refused.code == code)
            }
            #expect(try await VaultState.of(vault, fixture) == before)
        }
    }

    /// A valid body of each kind goes through, so the refusals above are about their one defect.
    @Test func validBodiesAreAccepted() async throws {
        try await BadInputTests.seeded { _, vault in
            let bodies: [(Body, String)] = [
                (
                    .create,
                    #"{"id":"fresh","provider":"personio-v2",\#(Self.v2Secrets),"settings":{"scope":"personio:persons:read","permissions":["employees:read"]},"grants":{"uids":[1000],"groups":["hr"],"units":["app.service"]}}"#
                ),
                (
                    .edit,
                    #"{"settings":{"scope":null,"app_id":"fake-app"},"secrets":{"webhook_token":"fake-hook-2"},"grants":{"uids":[1]}}"#
                ),
                (.disable, #"{"reason":"fake maintenance"}"#),
                (.disable, #"{}"#),
                (.reset, #"{"client_secret":"fake-secret-2"}"#),
                (.grants, #"{"groups":["hr"]}"#),
            ]
            for (body, json) in bodies {
                try await Self.run(body, json, vault)
            }
            let seed = try await vault.view("seed")
            #expect(seed.settings.scope == nil)
            #expect(seed.settings.appID == "fake-app")
            #expect(seed.grants == Grants(groups: ["hr"]))
            #expect(seed.revision == 3)
            #expect(try await decrypted(vault, "seed", .clientSecret) == "fake-secret-2")
            #expect(try await decrypted(vault, "seed", .webhookToken) == "fake-hook-2")
            #expect(try await vault.view("fresh").settings.permissions == ["employees:read"])
        }
    }

    static func path(of error: DecodingError) -> String {
        let path: [any CodingKey]
        switch error {
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            path = context.codingPath
        case .keyNotFound(_, let context):
            path = context.codingPath
        @unknown default:
            path = []
        }
        return path.map { $0.intValue.map { "Index \($0)" } ?? $0.stringValue }.joined(separator: ".")
    }
}
