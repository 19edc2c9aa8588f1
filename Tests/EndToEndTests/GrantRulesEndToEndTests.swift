import Foundation
import TestSupport
import Testing
import VaultAPI

#if canImport(Glibc)
import Glibc
#endif

/// Grant rules on the admin side (DESIGN §10), against the built `connvaultd --dev` and `connvaultctl`: granted with
/// `--rule` and `--json-file`, shown, refused with their messages and exit codes (and nothing changed), kept across
/// a restart, and found in the audit trail by date.
@Suite("Grant rules end to end", .offCooperativePool, .timeLimit(.minutes(5)))
struct GrantRulesEndToEndTests {
    static let scope = "personio:persons:read personio:attendances:read"

    static func decode<T: Decodable>(_ type: T.Type, _ result: CommandResult) throws -> T {
        try #require(result.status == 0, "\(result)")
        return try VaultJSON.decoder().decode(T.self, from: Data(result.stdout.utf8))
    }

    static func grants(_ daemon: DaemonProcess, _ id: String) throws -> Grants {
        try Self.decode(ConnectionView.self, try daemon.ctl(["show", id, "--json"])).grants
    }

    static func canonical(_ path: String) throws -> String {
        let resolved = try #require(realpath(path, nil))
        defer { free(resolved) }
        return String(cString: resolved)
    }

    @Test("rules are granted, shown, refused with clear errors, kept across a restart and audited")
    func rulesOnTheAdminSide() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let daemon = DaemonProcess(directory: directory)
        try daemon.start()
        defer { daemon.stop() }

        let added = try daemon.ctl(
            [
                "add", "acme", "--provider", "personio-v2", "--client-id", "fake-client-id", "--scope", Self.scope,
                "--allow-uid", "1000", "--secret-stdin",
            ],
            stdin: "fake-secret-rules-1\n"
        )
        #expect(added.status == 0, "\(added)")
        let legacy = try daemon.ctl(
            ["add", "legacy", "--provider", "personio-v1", "--client-id", "fake-client-id", "--secret-stdin"],
            stdin: "fake-secret-rules-2\n"
        )
        #expect(legacy.status == 0, "\(legacy)")

        // --rule adds to the current grants; the executable is stored canonical (/bin/sh is a symlink here).
        let first = GrantRule(
            unit: "hr-export.service",
            exe: try Self.canonical("/bin/sh"),
            scope: "personio:persons:read",
            proxy: ["GET /v2/persons*", "GET /v2/persons/*"]
        )
        let granted = try Self.decode(
            ConnectionView.self,
            try daemon.ctl([
                "grant", "acme", "--rule",
                "unit=hr-export.service,exe=/bin/sh,scope=personio:persons:read,proxy=GET /v2/persons*,proxy=GET /v2/persons/*",
                "--json",
            ])
        )
        #expect(granted.grants == Grants(uids: [1000], rules: [first]))

        // --json-file - reads a whole grants object from standard input; its rules go after the current ones.
        let second = GrantRule(uid: 0, exeSHA256: String(repeating: "ab", count: 32), token: false, ratePerMinute: 60)
        let fromJSON = try Self.decode(
            ConnectionView.self,
            try daemon.ctl(
                ["grant", "acme", "--json-file", "-", "--json"],
                stdin:
                    #"{"groups":["root"],"rules":[{"uid":0,"exe_sha256":"\#(String(repeating: "AB", count: 32))","token":false,"rate_per_minute":60}]}"#
            )
        )
        let expected = Grants(uids: [1000], groups: ["root"], rules: [first, second])
        #expect(fromJSON.grants == expected)

        // show: --json has them, the table names each rule's callers and what they may do.
        #expect(try Self.grants(daemon, "acme") == expected)
        let table = try daemon.ctl(["show", "acme"])
        #expect(table.status == 0)
        #expect(table.stdout.contains("rule 1  callers: unit=hr-export.service, exe=\(first.exe!)"), "\(table)")
        #expect(
            table.stdout.contains("may: scope personio:persons:read; proxy GET /v2/persons*, GET /v2/persons/*; token")
        )
        #expect(table.stdout.contains("rule 2  callers: uid=0, exe_sha256=\(second.exeSHA256!)"))
        #expect(table.stdout.contains("no token (proxy only); 60 per minute"))

        // Refusals: the CLI's own (usage, 2) and the daemon's (invalid_grant, 1); none changes anything.
        let refusals: [(String, [String], String?, Int32, String)] = [
            ("acme", ["--rule", "unit=a.service,colour=red"], nil, 2, "unknown key 'colour'"),
            ("acme", ["--rule", "unit=a.service,unit=b.service"], nil, 2, "unit is given twice"),
            ("acme", ["--rule", "unit="], nil, 2, "unit has an empty value"),
            ("acme", ["--json-file", "-"], #"{"rules":[{"uid":1,"colour":"red"}]}"#, 2, "unknown field 'rules"),
            (
                "acme", ["--rule", "scope=personio:persons:read"], nil, 1,
                "rule 3: names no caller: give at least one of uid, group, unit, exe, exe_sha256 (invalid_grant)"
            ),
            (
                "acme", ["--rule", "group=cv-no-such-group-4711"], nil, 1,
                "rule 3: group 'cv-no-such-group-4711' does not exist on this host (invalid_grant)"
            ),
            ("acme", ["--rule", "unit=app"], nil, 1, "rule 3: unit 'app' is not a .service or .scope unit"),
            (
                "acme", ["--rule", "exe=/nonexistent/cv-tool"], nil, 1,
                "rule 3: exe '/nonexistent/cv-tool' does not exist"
            ),
            ("acme", ["--rule", "exe=bin/sh"], nil, 1, "rule 3: exe 'bin/sh' is not an absolute path"),
            ("acme", ["--rule", "exe_sha256=abc"], nil, 1, "rule 3: exe_sha256 must be 64 hexadecimal digits"),
            (
                "acme", ["--rule", "uid=1,scope=personio:employees:write"], nil, 1,
                "rule 3: scope 'personio:employees:write' is not in the connection's scope setting"
            ),
            ("acme", ["--rule", "uid=1,proxy=GET /v2/../v1/x"], nil, 1, "has a '.' or '..' segment"),
            ("acme", ["--rule", "uid=1,proxy=FETCH /v2/persons"], nil, 1, "has method 'FETCH'"),
            ("acme", ["--rule", "uid=1,proxy=GET /v2/persons?x=1"], nil, 1, "has a query or fragment"),
            ("acme", ["--rule", "uid=1,rate_per_minute=0"], nil, 1, "rate_per_minute must be from 1 to 100000"),
            ("acme", ["--rule", "uid=4294967295"], nil, 1, "uid 4294967295 is out of range"),
            (
                "legacy", ["--rule", "uid=1,scope=personio:persons:read"], nil, 1,
                "rule 1: scope is only for personio-v2 connections; this one is personio-v1 (invalid_grant)"
            ),
        ]
        let auditBefore = try Self.decode(AuditList.self, try daemon.ctl(["audit", "--json"])).entries.count
        for (id, arguments, stdin, status, message) in refusals {
            let before = try daemon.ctl(["show", id, "--json"]).stdout
            let result = try daemon.ctl(["grant", id] + arguments, stdin: stdin)
            #expect(result.status == status, "\(arguments): \(result)")
            #expect(result.stderr.contains(message), "\(arguments): \(result)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(arguments): one line: \(result)")
            #expect(try daemon.ctl(["show", id, "--json"]).stdout == before, "\(arguments) changed nothing")
        }

        // The same refusal on the wire: 400 invalid_grant, and an unknown member of a rule 400 unknown_field.
        for (body, code) in [
            (#"{"rules":[{"group":"cv-no-such-group-4711"}]}"#, "invalid_grant"),
            (#"{"rules":[{"uid":1,"exe_hash":"x"}]}"#, "unknown_field"),
        ] {
            let response = try RawHTTP.request(
                socket: daemon.adminSocket,
                "PUT /v1/connections/acme/grants HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                    + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
            )
            #expect(response.status == 400, "\(response.raw)")
            #expect(response.problem?.code.rawValue == code, "\(response.raw)")
        }

        // An edit that takes away a scope a rule uses is refused too.
        let narrowed = try daemon.ctl(["edit", "acme", "--scope", "personio:attendances:read"])
        #expect(narrowed.status == 1, "\(narrowed)")
        #expect(narrowed.stderr.contains("the new settings do not fit the grant rules: rule 1: scope"), "\(narrowed)")
        #expect(try Self.grants(daemon, "acme") == expected)
        let auditAfter = try Self.decode(AuditList.self, try daemon.ctl(["audit", "--json"])).entries.count
        #expect(auditAfter == auditBefore, "no refusal wrote an audit row")

        // A restart keeps the rules, in order.
        daemon.stop()
        try daemon.start()
        #expect(try Self.grants(daemon, "acme") == expected)

        // --replace sets exactly what is given.
        let replaced = try Self.decode(
            ConnectionView.self,
            try daemon.ctl(["grant", "acme", "--replace", "--rule", "uid=0,token=false", "--json"])
        )
        #expect(replaced.grants == Grants(rules: [GrantRule(uid: 0, token: false)]))

        // audit ID --since DATE: the grant changes of today, with their rules.
        let today = String(Date().ISO8601Format().prefix(10))
        let audit = try Self.decode(AuditList.self, try daemon.ctl(["audit", "acme", "--since", today, "--json"]))
        let grantRows = audit.entries.filter { $0.action == "connection.grants" }
        #expect(grantRows.count == 3, "\(audit.entries.map(\.action))")
        #expect(grantRows.first?.detail.contains("rule 1: unit=hr-export.service,exe=\(first.exe!)") == true)
        #expect(grantRows.last?.detail.contains("rules 1; rule 1: uid=0,token=false") == true)
        #expect(audit.entries.allSatisfy { $0.connection == "acme" && $0.time >= today })
        let tomorrow = try daemon.ctl(["audit", "acme", "--since", "2999-01-01", "--json"])
        #expect(try Self.decode(AuditList.self, tomorrow).entries.isEmpty)
        let badDate = try daemon.ctl(["audit", "acme", "--since", "2026-13-01"])
        #expect(badDate.status == 2, "\(badDate)")
    }
}
