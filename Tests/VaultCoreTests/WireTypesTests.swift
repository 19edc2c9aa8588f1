import Foundation
import Testing
import VaultAPI
import VaultTestSupport

@Suite struct WireTypesTests {
    @Test(arguments: [
        "a", "0", "acme", "acme-prod", "acme.prod_2", "a..b", "a-", String(repeating: "a", count: 63), "9lives",
    ])
    func validIDs(id: String) {
        #expect(ConnectionID.isValid(id))
    }

    @Test(arguments: [
        "", "Acme", "ACME", "-acme", ".acme", "_acme", String(repeating: "a", count: 64), "a/b", "..", "../etc", "a b",
        "café", "ａｃｍｅ", "a\u{0}", "a\n", "acme:1", "acme@x",
    ])
    func invalidIDs(id: String) {
        #expect(!ConnectionID.isValid(id))
    }

    @Test(arguments: [
        "https://api.personio.de", "https://api.personio.de/", "https://api.personio.de/base/path",
        "https://api.example.com:8443",
        "http://localhost:8080", "http://127.0.0.1:9", "http://127.1.2.3", "http://[::1]:8080/x",
        "https://[2001:db8::1]",
    ])
    func acceptableBaseURLs(url: String) {
        #expect(ConnectionSettings.baseURLProblem(url) == nil)
    }

    @Test(arguments: [
        ("http://api.personio.de", "https://"),
        ("http://127.0.0.1.example.com", "https://"),  // a name that merely starts like a loopback address
        ("http://127.evil.example", "https://"),
        ("http://localhost.example.com", "https://"),
        ("http://[::2]", "https://"),
        ("ftp://api.personio.de", "https://"),
        ("api.personio.de", "https://"),
        ("https://user:pass@api.personio.de", "user info"),
        ("https://user@api.personio.de", "user info"),
        ("https://", "host"),
        ("https://:443", "host"),
        ("https://api.personio.de?x=1", "query"),
        ("https://api.personio.de/#frag", "fragment"),
        ("https://api.personio.de:99999", "port"),
        ("https://api.personio.de:x", "port"),
        ("http://127.0.0.1:80.example.com", "port"),
        ("https://[::1", "IPv6"),
        ("https://api personio.de", "printable"),
        ("https://api.personio.de/\u{7F}", "printable"),
    ])
    func unacceptableBaseURLs(url: String, reasonMentions: String) {
        let problem = ConnectionSettings.baseURLProblem(url)
        #expect(problem?.contains(reasonMentions) == true, "\(problem ?? "accepted")")
    }

    @Test func settingsPatchDistinguishesKeepClearAndSet() throws {
        let json = #"{"api_base_url": null, "scope": "personio:persons:read"}"#
        let patch = try VaultJSON.decoder().decode(SettingsPatch.self, from: Data(json.utf8))
        #expect(patch.apiBaseURL == .clear)
        #expect(patch.scope == .set("personio:persons:read"))
        #expect(patch.appID == .keep)
        let before = ConnectionSettings(apiBaseURL: "https://example.com", appID: "fake-app", scope: "old")
        let after = patch.applied(to: before)
        #expect(after == ConnectionSettings(apiBaseURL: nil, appID: "fake-app", scope: "personio:persons:read"))
        #expect(after.effectiveAPIBaseURL == ConnectionSettings.defaultAPIBaseURL)
        #expect(SettingsPatch().isEmpty)
        #expect(!patch.isEmpty)
        let reencoded = String(decoding: try VaultJSON.encoder().encode(patch), as: UTF8.self)
        #expect(reencoded == #"{"api_base_url":null,"scope":"personio:persons:read"}"#)
    }

    @Test func grantsNormalizeAndValidate() {
        let grants = Grants(uids: [1000, 5, 1000], groups: ["hr", "admins", "hr"], units: ["b.service", "a.service"])
        #expect(
            grants.normalized == Grants(uids: [5, 1000], groups: ["admins", "hr"], units: ["a.service", "b.service"])
        )
        #expect(grants.validationErrors.isEmpty)
        #expect(Grants(units: ["app"]).validationErrors.count == 1)
        #expect(Grants(groups: ["bad group"]).validationErrors.count == 1)
        #expect(Grants(units: ["app@1.service", "dev-x\\x2d.mount"]).validationErrors.isEmpty)
        #expect(Grants(uids: Array(0..<257)).validationErrors == ["more than 256 grants"])
    }

    @Test func secretInputIsRedactedAndEncodesItsValue() throws {
        let input = SecretInput(bytes: Array("fake-REDACT-me".utf8))
        #expect(!input.description.contains("REDACT"))
        #expect(!String(reflecting: input).contains("REDACT"))
        #expect(!"\(SecretsInput([.clientSecret: input]))".contains("REDACT"))
        let decoded = try VaultJSON.decoder().decode(SecretsInput.self, from: Data(#"{"client_secret":"fake-x"}"#.utf8))
        #expect(decoded[.clientSecret]?.count == 6)
        #expect(decoded[.clientID] == nil)
    }

    @Test func connectionViewAlwaysCarriesLastErrorAndDisabledReason() throws {
        let view = ConnectionView(
            id: "acme",
            provider: .personioV2,
            state: .active,
            revision: 1,
            settings: .init(),
            secrets: [:],
            grants: .init(),
            createdAt: "t",
            updatedAt: "t",
            lastError: nil,
            disabledReason: nil
        )
        let json = String(decoding: try VaultJSON.encoder().encode(view), as: UTF8.self)
        #expect(json.contains(#""last_error":null"#))
        #expect(json.contains(#""disabled_reason":null"#))
        #expect(try VaultJSON.decoder().decode(ConnectionView.self, from: Data(json.utf8)) == view)
    }

    @Test func providersDeclareTheirSecrets() {
        #expect(Provider.personioV2.requiredSecrets == [.clientID, .clientSecret])
        #expect(Provider.personioV1.allowedSecrets == [.clientID, .clientSecret, .webhookToken])
        #expect(Provider.personioRecruiting.requiredSecrets == [.recruitingToken])
        #expect(!Provider.personioRecruiting.isTokenExportable)
        #expect(Provider.allCases.map(\.rawValue) == ["personio-v2", "personio-v1", "personio-recruiting"])
    }
}
