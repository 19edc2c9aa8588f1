import ArgumentParser
import Foundation
import Testing
import VaultAPI

@testable import connvaultctl

/// `grant --rule`, `grant --json-file`, how rules are shown, and `audit --since` with a date.
@Suite struct GrantRuleOptionTests {
    static func parse(_ text: String) throws(CLIError) -> GrantRule {
        try GrantRuleSpelling.parse(text) { $0 == "alice" ? 1234 : nil }
    }

    @Test func theBriefsExampleParses() throws {
        let rule = try Self.parse(
            "unit=hr-export.service,exe=/usr/bin/python3,scope=personio:persons:read,proxy=GET /v2/persons*"
        )
        #expect(
            rule
                == GrantRule(
                    unit: "hr-export.service",
                    exe: "/usr/bin/python3",
                    scope: "personio:persons:read",
                    proxy: ["GET /v2/persons*"]
                )
        )
    }

    @Test func everyKeyParsesAndProxyRepeats() throws {
        let hash = String(repeating: "A", count: 64)
        let rule = try Self.parse(
            "uid=alice,group=hr,exe_sha256=\(hash),proxy=GET /v2/persons,proxy=GET /v2/persons/*,token=false,"
                + "rate_per_minute=60,scope=a b"
        )
        #expect(
            rule
                == GrantRule(
                    uid: 1234,
                    group: "hr",
                    exeSHA256: hash,
                    scope: "a b",
                    proxy: ["GET /v2/persons", "GET /v2/persons/*"],
                    token: false,
                    ratePerMinute: 60
                )
        )
        #expect(try Self.parse("uid=0,token=true") == GrantRule(uid: 0, token: true))
        #expect(try Self.parse("uid=4294967295").uid == UInt32.max)
    }

    @Test(arguments: [
        ("", "--rule is empty"),
        ("unit=a.service,colour=red", "unknown key 'colour'; keys: uid, group, unit, exe, exe_sha256"),
        ("unit=", "unit has an empty value"),
        ("unit=a.service,", "'' is not KEY=VALUE"),
        ("unit", "'unit' is not KEY=VALUE"),
        ("unit=a.service,unit=b.service", "unit is given twice (only proxy may repeat)"),
        ("uid=1,uid=2", "uid is given twice"),
        ("uid=nobody-such-user", "uid 'nobody-such-user' is neither a number nor a user on this host"),
        ("uid=99999999999", "uid 99999999999 is out of range"),
        ("uid=-1", "uid '-1' is neither a number nor a user"),
        ("uid=1,token=yes", "token must be true or false"),
        ("uid=1,rate_per_minute=1.5", "rate_per_minute must be a whole number"),
        ("uid=1,rate_per_minute=-3", "rate_per_minute must be a whole number"),
        ("UID=1", "unknown key 'UID'"),
    ])
    func aMisspeltRuleIsAOneLineUsageError(text: String, message: String) {
        let error = #expect(throws: CLIError.self) { try Self.parse(text) }
        #expect(error?.status == .usage)
        #expect(error?.message.contains(message) == true, "\(error?.message ?? "")")
        #expect(error?.message.contains("\n") == false)
    }

    @Test func grantCombinesTheJSONFileTheListsAndTheRules() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cv-grants-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("grants.json")
        try Data(#"{"uids":[7],"rules":[{"unit":"a.service","token":false}]}"#.utf8).write(to: file)
        let command = try GrantCommand.parse([
            "acme", "--json-file", file.path, "--allow-uid", "5", "--rule", "group=hr", "--replace",
        ])
        #expect(
            try command.requestedGrants()
                == Grants(uids: [5, 7], rules: [GrantRule(unit: "a.service", token: false), GrantRule(group: "hr")])
        )
    }

    @Test(arguments: [
        (#"{"uids":[1],"colour":"red"}"#, "unknown field 'colour'"),
        (#"{"rules":[{"unit":"a.service","exe_hash":"x"}]}"#, "unknown field"),
        (#"{"uids":"1"}"#, "not a grants object"),
        ("not json", "not a grants object"),
    ])
    func aBadJSONFileIsAUsageError(json: String, message: String) {
        let error = #expect(throws: CLIError.self) { try GrantsFile.decode(Array(json.utf8), name: "standard input") }
        #expect(error?.status == .usage)
        #expect(error?.message.contains(message) == true, "\(error?.message ?? "")")
    }

    @Test func aMissingJSONFileIsAUsageError() {
        let error = #expect(throws: CLIError.self) { try GrantsFile.read("/nonexistent/grants.json") }
        #expect(error?.status == .usage)
        #expect(error?.message.contains("cannot open") == true)
    }

    @Test func grantWithoutAnythingToGrantIsRefused() {
        #expect(throws: (any Error).self) { try GrantCommand.parse(["acme"]) }
        #expect(throws: Never.self) { try GrantCommand.parse(["acme", "--rule", "uid=1"]) }
    }

    @Test func showPrintsEachRuleWithWhoAndWhat() {
        let grants = Grants(
            uids: [1000],
            rules: [
                GrantRule(
                    unit: "hr-export.service",
                    exe: "/usr/bin/python3",
                    scope: "personio:persons:read",
                    proxy: ["GET /v2/persons", "GET /v2/persons/*"],
                    token: false,
                    ratePerMinute: 60
                ),
                GrantRule(group: "hr"),
            ]
        )
        let text = ViewRenderer.grants(grants)
        #expect(
            text == """
                  uids    1000
                  groups  -
                  units   -
                  rule 1  callers: unit=hr-export.service, exe=/usr/bin/python3
                          may: scope personio:persons:read; proxy GET /v2/persons, GET /v2/persons/*; no token (proxy only); 60 per minute
                  rule 2  callers: group=hr
                          may: scope (the connection's); proxy any path; token
                """
        )
        #expect(ViewRenderer.grants(Grants()).contains("rules   -"))
    }

    // MARK: - audit --since

    @Test(arguments: [
        ("42", AuditSince.sequence(42)), ("0", .sequence(0)), ("2026-12-01", .time("2026-12-01T00:00:00Z")),
        ("2026-12-01T08:30:00Z", .time("2026-12-01T08:30:00Z")), ("2024-02-29", .time("2024-02-29T00:00:00Z")),
    ])
    func sinceParses(text: String, since: AuditSince) {
        #expect(AuditSince(text) == since)
    }

    @Test(arguments: [
        "", "-1", "2026-13-01", "2026-02-30", "2025-02-29", "2026-12-1", "2026-12-01T08:30:00", "2026-12-01T24:00:00Z",
        "2026-12-01T08:30:00+01:00", "2026-12-01T08:30:00.5Z", "yesterday", "99999999999999999999",
    ])
    func sinceRefuses(text: String) {
        #expect(AuditSince(text) == nil)
    }

    @Test func auditWithoutLimitFetchesEveryPageAndKeepsTheDate() throws {
        func entry(_ seq: Int64, _ time: String) -> AuditEntry {
            AuditEntry(
                seq: seq,
                time: time,
                actor: AuditActor(uid: 0, pid: 1, comm: "x"),
                action: "a",
                connection: "acme",
                outcome: "ok",
                detail: "",
                hash: ""
            )
        }
        let all = [
            entry(3, "2026-12-01T00:00:00Z"), entry(4, "2026-12-02T00:00:00Z"), entry(5, "2026-11-30T00:00:00Z"),
            entry(6, "2026-12-03T00:00:00Z"), entry(7, "2026-12-04T00:00:00Z"),
        ]
        var asked: [AuditSince?] = []
        let list = try AuditCommand.everything(since: .time("2026-12-01T00:00:00Z"), pageSize: 2) { since in
            asked.append(since)
            switch since {
            case .time(let from)?: return AuditList(entries: Array(all.filter { $0.time >= from }.prefix(2)))
            case .sequence(let after)?: return AuditList(entries: Array(all.filter { $0.seq > after }.prefix(2)))
            case nil: return AuditList(entries: [])
            }
        }
        #expect(list.entries.map(\.seq) == [3, 4, 6, 7])
        #expect(asked == [.time("2026-12-01T00:00:00Z"), .sequence(4), .sequence(6)])
    }
}
