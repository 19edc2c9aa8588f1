import ArgumentParser
import Testing
import VaultAPI

@testable import connvaultctl

@Suite struct CommandOptionsTests {
    @Test("edit settings: given ones are set, --unset ones cleared, dashes or underscores")
    func settingsPatch() throws {
        let options = try SettingOptions.parse(["--app-id", "NEW_APP", "--permission", "employees:read"])
        let patch = try options.patch(unsetting: ["scope", "partner_id"])
        #expect(patch.appID == .set("NEW_APP"))
        #expect(patch.permissions == .set(["employees:read"]))
        #expect(patch.scope == .clear)
        #expect(patch.partnerID == .clear)
        #expect(patch.apiBaseURL == .keep)
    }

    @Test(
        "--unset of an unknown or also-set setting is a usage error",
        arguments: [
            (["--scope", "a"], "scope"), ([], "colour"), (["--permission", "employees:read"], "permissions"),
        ]
    )
    func unsetErrors(_ arguments: [String], _ name: String) throws {
        let options = try SettingOptions.parse(arguments)
        let error = try #require(throws: CLIError.self) { try options.patch(unsetting: [name]) }
        #expect(error.status == .usage)
    }

    @Test("grant options are normalised: sorted, without duplicates")
    func grants() throws {
        let options = try GrantOptions.parse([
            "--allow-uid", "1001", "--allow-uid", "1000", "--allow-uid", "1001", "--allow-unit", "b.service",
        ])
        #expect(options.grants == Grants(uids: [1000, 1001], units: ["b.service"]))
    }

    @Test("tables align columns and neutralise terminal control characters")
    func table() {
        var table = TableFormatter(header: ["ID", "STATE"])
        table.append(["acme", "active"])
        table.append(["a-much-longer-id", "disabled"])
        #expect(table.render() == "ID                STATE\nacme              active\na-much-longer-id  disabled")
        #expect(TableFormatter.sanitize("evil\u{1B}[2Jtext\n") == "evil?[2Jtext?")
    }

    @Test("show prints secrets only as set, fingerprint and time")
    func showRendering() {
        let view = ConnectionView(
            id: "acme",
            provider: .personioV2,
            state: .active,
            revision: 3,
            settings: ConnectionSettings(appID: "ACME_SYNC", permissions: ["employees:read"]),
            secrets: [
                "client_secret": SecretFieldView(
                    set: true,
                    fingerprint: "0123456789abcdef",
                    updatedAt: "2025-01-01T00:00:00Z"
                )
            ],
            grants: Grants(uids: [1000], units: ["payroll.service"]),
            createdAt: "2025-01-01T00:00:00Z",
            updatedAt: "2025-01-02T00:00:00Z",
            lastError: nil,
            disabledReason: nil
        )
        let text = ViewRenderer.connection(view)
        #expect(text.contains("client_secret  set  0123456789abcdef  2025-01-01T00:00:00Z"))
        #expect(text.contains("revision"))
        #expect(text.contains("app_id          ACME_SYNC"))
        #expect(text.contains("units   payroll.service"))
        #expect(text.contains("last error  -"))
    }
}
