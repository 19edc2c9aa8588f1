import Foundation
import Testing
import VaultAPI
import VaultCore
import VaultTestSupport

/// One refused operation: what it is, the problem code it must fail with, and how to run it against a vault
/// seeded with `seed` (personio-v2, with a webhook token) and `seedrec` (personio-recruiting).
struct BadInput: Sendable, CustomTestStringConvertible {
    let name: String
    let code: VaultError.Code
    let operation: @Sendable (Vault) async throws -> Void

    var testDescription: String { "\(self.name) → \(self.code)" }

    static func create(
        _ name: String,
        _ code: VaultError.Code,
        _ request: @escaping @Sendable () -> CreateConnectionRequest
    ) -> BadInput {
        BadInput(name: "create: \(name)", code: code) { vault in _ = try await vault.create(request(), by: admin) }
    }

    static func createV2(_ name: String, _ code: VaultError.Code, secret: String) -> BadInput {
        Self.create(name, code) { v2Request("fresh", clientSecret: secret) }
    }

    static func createV2(_ name: String, _ code: VaultError.Code, settings: ConnectionSettings) -> BadInput {
        Self.create(name, code) { v2Request("fresh", settings: settings) }
    }

    static func createV2(_ name: String, _ code: VaultError.Code, grants: Grants) -> BadInput {
        Self.create(name, code) { v2Request("fresh", grants: grants) }
    }

    static func edit(
        _ name: String,
        _ code: VaultError.Code,
        id: String = "seed",
        _ request: @escaping @Sendable () -> EditConnectionRequest
    ) -> BadInput {
        BadInput(name: "edit: \(name)", code: code) { vault in _ = try await vault.edit(id, request(), by: admin) }
    }

    static func reset(
        _ name: String,
        _ code: VaultError.Code,
        id: String = "seed",
        _ values: [SecretField: String]
    )
        -> BadInput
    {
        BadInput(name: "reset: \(name)", code: code) { vault in
            _ = try await vault.reset(id, secrets: secrets(values), by: admin)
        }
    }
}

@Suite struct BadInputTests {
    static let invalidIDs = [
        "", "Seed", "UPPER", "-seed", ".seed", String(repeating: "a", count: 64), "a/b", "..", "../seed", "ünïcode",
        "a b", "seed\n",
    ]

    static let cases: [BadInput] = {
        var cases: [BadInput] = []

        // MARK: Ids, on every operation that takes one
        for id in Self.invalidIDs {
            cases.append(.create("id \(id.debugDescription)", .invalidID) { v2Request(id) })
        }
        for id in ["Seed", "..", "seed/x"] {
            cases += [
                BadInput(name: "view \(id.debugDescription)", code: .invalidID) { _ = try await $0.view(id) },
                BadInput(name: "credentials \(id.debugDescription)", code: .invalidID) {
                    _ = try await $0.credentials(id)
                },
                .edit("id \(id.debugDescription)", .invalidID, id: id) {
                    EditConnectionRequest(secrets: secrets([.clientSecret: "fake"]))
                },
                .reset("id \(id.debugDescription)", .invalidID, id: id, [.clientSecret: "fake"]),
                BadInput(name: "disable \(id.debugDescription)", code: .invalidID) {
                    _ = try await $0.disable(id, reason: nil, by: admin)
                },
                BadInput(name: "enable \(id.debugDescription)", code: .invalidID) {
                    _ = try await $0.enable(id, by: admin)
                },
                BadInput(name: "disconnect \(id.debugDescription)", code: .invalidID) {
                    try await $0.disconnect(id, by: admin)
                },
                BadInput(name: "grants \(id.debugDescription)", code: .invalidID) {
                    _ = try await $0.setGrants(id, Grants(uids: [1]), by: admin)
                },
            ]
        }

        // MARK: Secrets
        cases += [
            .createV2("secret with a newline", .invalidSecret, secret: "fake\nsecret"),
            .createV2("secret with a carriage return", .invalidSecret, secret: "fake\rsecret"),
            .createV2("secret with a tab", .invalidSecret, secret: "fake\tsecret"),
            .createV2("secret with a BEL", .invalidSecret, secret: "fake\u{07}secret"),
            .createV2("secret with a NUL", .invalidSecret, secret: "fake\u{00}secret"),
            .createV2("secret with a DEL", .invalidSecret, secret: "fake\u{7F}secret"),
            .createV2("secret with a C1 NEXT LINE", .invalidSecret, secret: "fake\u{85}secret"),
            .createV2("secret of 4097 bytes", .invalidSecret, secret: String(repeating: "x", count: 4097)),
            .createV2("empty secret", .invalidSecret, secret: ""),
            .create("client id with a newline", .invalidSecret) { v2Request("fresh", clientID: "fake\nid") },
            .create("recruiting_token on personio-v2", .invalidSecret) {
                CreateConnectionRequest(
                    id: "fresh",
                    provider: .personioV2,
                    secrets: secrets([.clientID: "fake", .clientSecret: "fake", .recruitingToken: "fake"])
                )
            },
            .create("client_secret on personio-recruiting", .invalidSecret) {
                CreateConnectionRequest(
                    id: "fresh",
                    provider: .personioRecruiting,
                    settings: ConnectionSettings(companyID: "1"),
                    secrets: secrets([.recruitingToken: "fake", .clientSecret: "fake"])
                )
            },
            .create("missing client_secret", .missingSecret) {
                CreateConnectionRequest(id: "fresh", provider: .personioV2, secrets: secrets([.clientID: "fake"]))
            },
            .create("missing client_id", .missingSecret) {
                CreateConnectionRequest(id: "fresh", provider: .personioV1, secrets: secrets([.clientSecret: "fake"]))
            },
            .create("no secrets at all", .missingSecret) {
                CreateConnectionRequest(id: "fresh", provider: .personioV2, secrets: SecretsInput())
            },
            .create("missing recruiting_token", .missingSecret) {
                CreateConnectionRequest(
                    id: "fresh",
                    provider: .personioRecruiting,
                    settings: ConnectionSettings(companyID: "1"),
                    secrets: secrets([.webhookToken: "fake"])
                )
            },
        ]

        // MARK: Settings
        cases += [
            .create("recruiting without company_id", .invalidSetting) {
                CreateConnectionRequest(
                    id: "fresh",
                    provider: .personioRecruiting,
                    secrets: secrets([.recruitingToken: "fake"])
                )
            },
            .create("recruiting with a non-numeric company_id", .invalidSetting) {
                recruitingRequest("fresh", companyID: "acme")
            },
            .create("recruiting with a scope", .invalidSetting) {
                CreateConnectionRequest(
                    id: "fresh",
                    provider: .personioRecruiting,
                    settings: ConnectionSettings(scope: "x", companyID: "1"),
                    secrets: secrets([.recruitingToken: "fake"])
                )
            },
            .createV2("company_id on personio-v2", .invalidSetting, settings: ConnectionSettings(companyID: "1")),
            .createV2(
                "http:// to a remote host",
                .invalidSetting,
                settings: ConnectionSettings(apiBaseURL: "http://api.personio.de")
            ),
            .createV2(
                "http:// to a name that starts with 127.",
                .invalidSetting,
                settings: ConnectionSettings(apiBaseURL: "http://127.0.0.1.example.com")
            ),
            .createV2(
                "api_base_url with user info",
                .invalidSetting,
                settings: ConnectionSettings(apiBaseURL: "https://user:pass@api.personio.de")
            ),
            .createV2(
                "api_base_url with a query",
                .invalidSetting,
                settings: ConnectionSettings(apiBaseURL: "https://api.personio.de?a=b")
            ),
            .createV2(
                "api_base_url not a URL",
                .invalidSetting,
                settings: ConnectionSettings(apiBaseURL: "api.personio.de")
            ),
            .createV2(
                "scope with bad characters",
                .invalidSetting,
                settings: ConnectionSettings(scope: "personio:persons:read;drop")
            ),
            .createV2("scope with a double space", .invalidSetting, settings: ConnectionSettings(scope: "a  b")),
            .createV2("empty scope", .invalidSetting, settings: ConnectionSettings(scope: "")),
            .createV2(
                "unknown permission area",
                .invalidSetting,
                settings: ConnectionSettings(permissions: ["payroll:read"])
            ),
            .createV2(
                "unknown permission right",
                .invalidSetting,
                settings: ConnectionSettings(permissions: ["employees:delete"])
            ),
            .createV2(
                "write on a read-only area",
                .invalidSetting,
                settings: ConnectionSettings(permissions: ["reports:write"])
            ),
            .createV2(
                "permission without a right",
                .invalidSetting,
                settings: ConnectionSettings(permissions: ["employees"])
            ),
            .createV2("app_id with a space", .invalidSetting, settings: ConnectionSettings(appID: "fake app")),
            .createV2(
                "partner_id too long",
                .invalidSetting,
                settings: ConnectionSettings(partnerID: String(repeating: "p", count: 65))
            ),
        ]

        // MARK: Grants
        cases += [
            .createV2("unit without a dot", .invalidGrant, grants: Grants(units: ["app"])),
            .createV2("group with a space", .invalidGrant, grants: Grants(groups: ["hr staff"])),
            .createV2("group starting with '-'", .invalidGrant, grants: Grants(groups: ["-hr"])),
            .createV2("unit with a slash", .invalidGrant, grants: Grants(units: ["../app.service"])),
            .createV2("more than 256 grants", .invalidGrant, grants: Grants(uids: Array(0..<257))),
            BadInput(name: "grants: unit without a dot", code: .invalidGrant) {
                _ = try await $0.setGrants("seed", Grants(units: ["app"]), by: admin)
            },
            BadInput(name: "grants: group with a space", code: .invalidGrant) {
                _ = try await $0.setGrants("seed", Grants(groups: ["hr staff"]), by: admin)
            },
            BadInput(name: "grants: unknown connection", code: .notFound) {
                _ = try await $0.setGrants("nobody", Grants(), by: admin)
            },
        ]

        // MARK: Edit, reset, disable on existing connections
        cases += [
            .edit("nothing to change", .badRequest) { EditConnectionRequest() },
            .edit("unknown connection", .notFound, id: "nobody") {
                EditConnectionRequest(secrets: secrets([.clientSecret: "fake"]))
            },
            .edit("recruiting_token on personio-v2", .invalidSecret) {
                EditConnectionRequest(secrets: secrets([.recruitingToken: "fake"]))
            },
            .edit("secret with a newline", .invalidSecret) {
                EditConnectionRequest(secrets: secrets([.clientSecret: "fake\n"]))
            },
            .edit("http:// to a remote host", .invalidSetting) {
                var patch = SettingsPatch()
                patch.apiBaseURL = .set("http://evil.example")
                return EditConnectionRequest(settings: patch)
            },
            .edit("a new api_base_url without the secrets", .secretsRequired) {
                var patch = SettingsPatch()
                patch.apiBaseURL = .set("https://elsewhere.example")
                return EditConnectionRequest(settings: patch)
            },
            .edit("a new api_base_url with the client secret only", .secretsRequired) {
                var patch = SettingsPatch()
                patch.apiBaseURL = .set("https://elsewhere.example")
                return EditConnectionRequest(settings: patch, secrets: secrets([.clientSecret: "fake-new"]))
            },
            .edit("a new api_base_url without the recruiting key", .secretsRequired, id: "seedrec") {
                var patch = SettingsPatch()
                patch.apiBaseURL = .set("https://elsewhere.example")
                return EditConnectionRequest(settings: patch)
            },
            .edit("clearing the recruiting company_id", .invalidSetting, id: "seedrec") {
                var patch = SettingsPatch()
                patch.companyID = .clear
                return EditConnectionRequest(settings: patch)
            },
            .edit("unit without a dot", .invalidGrant) { EditConnectionRequest(grants: Grants(units: ["app"])) },
            .edit("a good secret with a bad setting", .invalidSetting) {
                var patch = SettingsPatch()
                patch.permissions = .set(["nope:read"])
                return EditConnectionRequest(settings: patch, secrets: secrets([.clientSecret: "fake-good"]))
            },
            .reset("without the new client_secret", .missingSecret, [.clientID: "fake-id"]),
            .reset("with nothing", .missingSecret, [:]),
            .reset("secret with a newline", .invalidSecret, [.clientSecret: "fake\nsecret"]),
            .reset(
                "recruiting_token on personio-v2",
                .invalidSecret,
                [.clientSecret: "fake", .recruitingToken: "fake"]
            ),
            .reset("recruiting without its token", .missingSecret, id: "seedrec", [.webhookToken: "fake"]),
            .reset("unknown connection", .notFound, id: "nobody", [.clientSecret: "fake"]),
            BadInput(name: "disable: reason with a newline", code: .badRequest) {
                _ = try await $0.disable("seed", reason: "a\nb", by: admin)
            },
            BadInput(name: "disable: reason of 501 bytes", code: .badRequest) {
                _ = try await $0.disable("seed", reason: String(repeating: "r", count: 501), by: admin)
            },
            BadInput(name: "disable: unknown connection", code: .notFound) {
                _ = try await $0.disable("nobody", reason: nil, by: admin)
            },
            BadInput(name: "enable: unknown connection", code: .notFound) {
                _ = try await $0.enable("nobody", by: admin)
            },
            BadInput(name: "disconnect: unknown connection", code: .notFound) {
                try await $0.disconnect("nobody", by: admin)
            },
            BadInput(name: "view: unknown connection", code: .notFound) { _ = try await $0.view("nobody") },
            BadInput(name: "credentials: unknown connection", code: .notFound) {
                _ = try await $0.credentials("nobody")
            },
            .create("an existing id", .alreadyExists) { recruitingRequest("seed") },
        ]
        return cases
    }()

    /// A fresh vault with the two seed connections.
    static func seeded(_ body: (VaultFixture, Vault) async throws -> Void) async throws {
        try await VaultFixture.with { fixture, vault in
            _ = try await vault.create(
                CreateConnectionRequest(
                    id: "seed",
                    provider: .personioV2,
                    settings: ConnectionSettings(scope: "personio:persons:read"),
                    secrets: secrets([.clientID: "fake-id", .clientSecret: "fake-secret", .webhookToken: "fake-hook"]),
                    grants: Grants(uids: [1000])
                ),
                by: admin
            )
            _ = try await vault.create(recruitingRequest("seedrec"), by: admin)
            try await body(fixture, vault)
        }
    }

    @Test(arguments: Self.cases)
    func isRefusedAndChangesNothing(input: BadInput) async throws {
        try await Self.seeded { fixture, vault in
            let before = try await VaultState.of(vault, fixture)
            let error = await #expect(throws: VaultError.self) { try await input.operation(vault) }
            #expect(error?.code == input.code, "\(error.map { String(describing: $0) } ?? "no error")")
            #expect(error?.message.isEmpty == false)
            let after = try await VaultState.of(vault, fixture)
            #expect(after == before)
            #expect(try await vault.verifyAudit().intact)
        }
    }

    @Test func everyCaseHasAUniqueName() {
        let names = Self.cases.map(\.testDescription)
        #expect(Set(names).count == names.count)
    }

    /// The edges of what is accepted, next to the refusals above.
    @Test func boundariesAreAccepted() async throws {
        try await Self.seeded { _, vault in
            let longest = String(repeating: "a", count: 63)
            _ = try await vault.create(v2Request(longest), by: admin)
            let bigSecret = String(repeating: "s", count: 4096)
            _ = try await vault.create(v2Request("big", clientSecret: bigSecret), by: admin)
            #expect(try await decrypted(vault, "big", .clientSecret) == bigSecret)
            _ = try await vault.create(v2Request("uni", clientSecret: "fäke-sécret-ünïcode €"), by: admin)
            #expect(try await decrypted(vault, "uni", .clientSecret) == "fäke-sécret-ünïcode €")
            _ = try await vault.create(
                v2Request(
                    "local",
                    settings: ConnectionSettings(
                        apiBaseURL: "http://127.0.0.1:8080",
                        appID: "fake-app.1",
                        partnerID: "P_1",
                        scope: "personio:persons:read personio:absences:read",
                        permissions: ["employees:read", "employees:write", "reports:read"]
                    ),
                    grants: Grants(uids: [0], groups: ["hr-staff_1"], units: ["app@1.service"])
                ),
                by: admin
            )
            _ = try await vault.create(
                CreateConnectionRequest(
                    id: "rec.2",
                    provider: .personioRecruiting,
                    settings: ConnectionSettings(companyID: "0123"),
                    secrets: secrets([.recruitingToken: "fake", .webhookToken: "fake-hook"])
                ),
                by: admin
            )
            _ = try await vault.disable("seed", reason: String(repeating: "r", count: 500), by: admin)
            #expect(try await vault.list().count == 7)
        }
    }
}
