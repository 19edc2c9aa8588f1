import Foundation
import TestSupport
import Testing
import VaultAPI
import VaultCore
import VaultTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Grant rules on the admin side (DESIGN §10): decoding, the checks made when a grant is written, the stored form,
/// and that a refused change changes nothing.
@Suite struct GrantRulesTests {
    static let hash = String(repeating: "ab", count: 32)

    // MARK: - Wire type

    @Test func rulesDecodeWithTheirKeysAndEncodeUnderRules() throws {
        let json = #"""
            {"uids":[1000],"rules":[{"unit":"hr-export.service","exe":"/usr/bin/python3",
             "scope":"personio:persons:read","proxy":["GET /v2/persons","GET /v2/persons/*"],
             "token":false,"rate_per_minute":60,"exe_sha256":"\#(Self.hash)","uid":7,"group":"hr"}]}
            """#
        let grants = try VaultJSON.decoder().decode(Grants.self, from: Data(json.utf8))
        #expect(
            grants.rules == [
                GrantRule(
                    uid: 7,
                    group: "hr",
                    unit: "hr-export.service",
                    exe: "/usr/bin/python3",
                    exeSHA256: Self.hash,
                    scope: "personio:persons:read",
                    proxy: ["GET /v2/persons", "GET /v2/persons/*"],
                    token: false,
                    ratePerMinute: 60
                )
            ]
        )
        let encoded = String(decoding: try VaultJSON.encoder().encode(Grants(uids: [1])), as: UTF8.self)
        #expect(encoded == #"{"groups":[],"rules":[],"uids":[1],"units":[]}"#)
    }

    @Test func anUnknownKeyInARuleIsRefusedByName() {
        let json = #"{"rules":[{"unit":"a.service","exe_hash":"x"}]}"#
        #expect(throws: UnknownFieldError.self) {
            _ = try VaultJSON.decoder().decode(Grants.self, from: Data(json.utf8))
        }
    }

    @Test func normalizationKeepsTheOrderDropsExactDuplicatesAndLowersTheHash() {
        let a = GrantRule(unit: "b.service")
        let b = GrantRule(uid: 1)
        let upper = GrantRule(exeSHA256: Self.hash.uppercased())
        let grants = Grants(uids: [3, 1, 3], rules: [a, b, a, upper, GrantRule(exeSHA256: Self.hash)])
        #expect(grants.normalized == Grants(uids: [1, 3], rules: [a, b, GrantRule(exeSHA256: Self.hash)]))
        #expect(!Grants(rules: [b]).isEmpty)
        #expect(Grants(rules: [a]).merging(Grants(rules: [b, a])).rules == [a, b])
    }

    // MARK: - What a rule says by itself

    static let badRules: [(GrantRule, String)] = [
        (GrantRule(scope: "personio:persons:read"), "names no caller"),
        (GrantRule(uid: UInt32.max), "uid 4294967295 is out of range"),
        (GrantRule(group: "hr staff"), "group 'hr staff' is not a valid group name"),
        (GrantRule(unit: "app"), "unit 'app' is not a .service or .scope unit"),
        (GrantRule(unit: "app.socket"), "unit 'app.socket' is not a .service or .scope unit"),
        (GrantRule(unit: "../app.service"), "unit '../app.service' is not a systemd unit name"),
        (GrantRule(unit: "app@.service"), "unit 'app@.service' is a template"),
        (GrantRule(exe: "python3"), "exe 'python3' is not an absolute path"),
        (GrantRule(exe: "/usr/bin/py\nthon"), "exe '/usr/bin/py?thon' contains control characters"),
        (GrantRule(exeSHA256: "abc"), "exe_sha256 must be 64 hexadecimal digits"),
        (GrantRule(exeSHA256: String(repeating: "g", count: 64)), "exe_sha256 must be 64 hexadecimal digits"),
        (GrantRule(uid: 1, scope: "a  b"), "scope must be space-separated scope names"),
        (GrantRule(uid: 1, scope: "a a"), "scope names a scope twice"),
        (GrantRule(uid: 1, proxy: ["GET"]), "proxy pattern 'GET' is not 'METHOD /path'"),
        (GrantRule(uid: 1, proxy: ["get /v2/persons"]), "has method 'get'"),
        (GrantRule(uid: 1, proxy: ["HEAD /v2/persons"]), "has method 'HEAD'"),
        (GrantRule(uid: 1, proxy: ["GET v2/persons"]), "has a path that does not start with '/'"),
        (GrantRule(uid: 1, proxy: ["GET /v2/per sons"]), "not printable ASCII without spaces"),
        (GrantRule(uid: 1, proxy: ["GET /v2/persons?limit=1"]), "has a query or fragment"),
        (GrantRule(uid: 1, proxy: ["GET /v2/persons#x"]), "has a query or fragment"),
        (GrantRule(uid: 1, proxy: ["GET /v2/../v1/x"]), "has a '.' or '..' segment"),
        (GrantRule(uid: 1, proxy: ["GET /v2/./persons"]), "has a '.' or '..' segment"),
        (GrantRule(uid: 1, proxy: ["GET /v2//persons"]), "has an empty segment"),
        (GrantRule(uid: 1, proxy: ["GET /v2/p%65rsons"]), "has a percent-escape"),
        (GrantRule(uid: 1, proxy: ["GET /v2/caf\u{E9}"]), "not printable ASCII"),
        (GrantRule(uid: 1, proxy: ["GET /" + String(repeating: "a", count: 256)]), "is longer than 256 bytes"),
        (GrantRule(uid: 1, proxy: Array(repeating: "GET /x", count: 65)), "proxy has 65 patterns; at most 64"),
        (GrantRule(uid: 1, ratePerMinute: 0), "rate_per_minute must be from 1 to 100000"),
        (GrantRule(uid: 1, ratePerMinute: 100_001), "rate_per_minute must be from 1 to 100000"),
    ]

    @Test(arguments: Self.badRules)
    func aMalformedRuleIsRefusedNamingItsPositionAndProblem(rule: GrantRule, problem: String) throws {
        let errors = Grants(rules: [GrantRule(uid: 1), rule]).validationErrors
        let first = try #require(errors.first)
        #expect(first.hasPrefix("rule 2: "))
        #expect(first.contains(problem), "\(first)")
    }

    @Test(arguments: [
        GrantRule(uid: 0), GrantRule(uid: UInt32.max - 1), GrantRule(unit: "app@1.service"),
        GrantRule(unit: "session-3.scope"), GrantRule(exeSHA256: String(repeating: "aB", count: 32)),
        GrantRule(uid: 1, proxy: []),
        GrantRule(uid: 1, proxy: ["* /*", "GET /", "GET /v2/persons/", "POST /v1/a*b;x"]),
        GrantRule(uid: 1, token: true, ratePerMinute: 1), GrantRule(uid: 1, ratePerMinute: 100_000),
    ])
    func aWellFormedRuleIsAccepted(rule: GrantRule) {
        #expect(Grants(rules: [rule]).validationErrors.isEmpty)
    }

    @Test func atMost64Rules() {
        let rules = (0..<65).map { GrantRule(uid: UInt32($0)) }
        #expect(Grants(rules: rules).validationErrors == ["65 rules; at most 64 are allowed"])
        #expect(Grants(rules: Array(rules.prefix(64))).validationErrors.isEmpty)
    }

    // MARK: - Through the vault

    /// Runs `body` with a vault holding `acme` (personio-v2 with scope `personio:persons:read
    /// personio:attendances:read`) and a directory for executables.
    static func withVault(_ body: (Vault, TemporaryDirectoryPaths) async throws -> Void) async throws {
        try await VaultFixture.with { fixture, vault in
            _ = try await vault.create(
                v2Request(
                    "acme",
                    settings: ConnectionSettings(scope: "personio:persons:read personio:attendances:read"),
                    grants: Grants(uids: [1000])
                ),
                by: admin
            )
            _ = try await vault.create(
                CreateConnectionRequest(
                    id: "old",
                    provider: .personioV1,
                    settings: ConnectionSettings(scope: "personio:persons:read"),
                    secrets: secrets([.clientID: "fake-id", .clientSecret: "fake-secret"])
                ),
                by: admin
            )
            try await body(vault, TemporaryDirectoryPaths(root: fixture.directory.file("bin")))
        }
    }

    @Test func rulesAreStoredCanonicalAndShownInOrderAfterAReopen() async throws {
        let fixture = try VaultFixture()
        defer { fixture.directory.remove() }
        let paths = TemporaryDirectoryPaths(root: fixture.directory.file("bin"))
        let link = try paths.symlink("sh", to: "/bin/sh")
        let canonical = try #require(
            realpath("/bin/sh", nil).map { pointer in
                defer { free(pointer) }
                return String(cString: pointer)
            }
        )
        let rules = [
            GrantRule(
                unit: "hr-export.service",
                exe: link,
                scope: "personio:persons:read",
                proxy: ["GET /v2/persons*"]
            ),
            GrantRule(uid: 0, exeSHA256: Self.hash.uppercased(), token: false, ratePerMinute: 60),
            GrantRule(group: "root"),
        ]
        var vault = try await fixture.open()
        _ = try await vault.create(
            v2Request("acme", settings: ConnectionSettings(scope: "personio:persons:read"), grants: Grants(uids: [5])),
            by: admin
        )
        let view = try await vault.setGrants("acme", Grants(uids: [5], rules: rules + [rules[2]]), by: admin)
        var expected = rules
        expected[0].exe = canonical
        expected[1].exeSHA256 = Self.hash
        #expect(view.grants == Grants(uids: [5], rules: expected))
        let entry = try #require(try await vault.audit(connection: "acme", since: nil, limit: 100).last)
        #expect(entry.action == "connection.grants")
        #expect(entry.detail.contains("rules 3; rule 1: unit=hr-export.service,exe=\(canonical),scope="))
        #expect(entry.detail.contains("rule 2: uid=0,exe_sha256=\(Self.hash),token=false,rate_per_minute=60"))
        try await vault.close()

        vault = try await fixture.open()
        #expect(try await vault.view("acme").grants == Grants(uids: [5], rules: expected))
        #expect(try await vault.snapshot("acme")?.grants.rules == expected)
        try await vault.close()
    }

    @Test func createAndEditAcceptRulesToo() async throws {
        try await Self.withVault { vault, _ in
            let rule = GrantRule(unit: "a.service", scope: "personio:attendances:read")
            let created = try await vault.create(
                v2Request(
                    "fresh",
                    settings: ConnectionSettings(scope: "personio:attendances:read"),
                    grants: Grants(rules: [rule])
                ),
                by: admin
            )
            #expect(created.grants.rules == [rule])
            let edited = try await vault.edit(
                "acme",
                EditConnectionRequest(grants: Grants(rules: [rule, GrantRule(uid: 3)])),
                by: admin
            )
            #expect(edited.grants == Grants(rules: [rule, GrantRule(uid: 3)]))
        }
    }

    /// Refusals that need the host or the connection, each `invalid_grant` with its message; nothing changes.
    @Test func refusalsNameTheRuleAndTheProblemAndChangeNothing() async throws {
        try await Self.withVault { vault, paths in
            let plain = try paths.file("data.txt", mode: 0o644)
            let cases: [(String, GrantRule, String)] = [
                ("acme", GrantRule(group: "cv-no-such-group-4711"), "group 'cv-no-such-group-4711' does not exist"),
                ("acme", GrantRule(exe: paths.root + "/missing"), "does not exist on this host"),
                ("acme", GrantRule(exe: plain), "is not executable"),
                ("acme", GrantRule(exe: paths.root), "is not a regular file"),
                (
                    "acme", GrantRule(uid: 1, scope: "personio:employees:write"),
                    "scope 'personio:employees:write' is not in the connection's scope setting"
                ),
                (
                    "old", GrantRule(uid: 1, scope: "personio:persons:read"),
                    "scope is only for personio-v2 connections; this one is personio-v1"
                ),
            ]
            for (id, rule, message) in cases {
                let before = try await vault.view(id)
                let auditBefore = try await vault.audit(connection: nil, since: nil, limit: 1000).count
                let error = await #expect(throws: VaultError.self) {
                    _ = try await vault.setGrants(id, Grants(rules: [GrantRule(uid: 9), rule]), by: admin)
                }
                #expect(error?.code == .invalidGrant)
                #expect(error?.message.hasPrefix("rule 2: ") == true, "\(error?.message ?? "")")
                #expect(error?.message.contains(message) == true, "\(error?.message ?? "")")
                #expect(try await vault.view(id) == before)
                #expect(try await vault.audit(connection: nil, since: nil, limit: 1000).count == auditBefore)
            }
        }
    }

    @Test func aConnectionWithoutAScopeSettingTakesNoRuleScope() async throws {
        try await VaultFixture.with { _, vault in
            let error = await #expect(throws: VaultError.self) {
                _ = try await vault.create(
                    v2Request("bare", grants: Grants(rules: [GrantRule(uid: 1, scope: "personio:persons:read")])),
                    by: admin
                )
            }
            #expect(error?.code == .invalidGrant)
            #expect(error?.message.contains("the connection has none") == true)
            let connections = try await vault.list()
            #expect(connections.isEmpty)
        }
    }

    @Test func anEditThatTakesAwayAScopeARuleUsesIsRefused() async throws {
        try await Self.withVault { vault, _ in
            let rule = GrantRule(unit: "a.service", scope: "personio:attendances:read")
            _ = try await vault.setGrants("acme", Grants(rules: [rule]), by: admin)
            let before = try await vault.view("acme")
            for change: SettingsPatch.Change<String> in [.set("personio:persons:read"), .clear] {
                var patch = SettingsPatch()
                patch.scope = change
                let error = await #expect(throws: VaultError.self) {
                    _ = try await vault.edit("acme", EditConnectionRequest(settings: patch), by: admin)
                }
                #expect(error?.code == .invalidGrant)
                #expect(error?.message.hasPrefix("the new settings do not fit the grant rules: rule 1: ") == true)
                #expect(try await vault.view("acme") == before)
            }
            // Keeping the scope the rule uses, or replacing the rules in the same edit, is fine.
            var patch = SettingsPatch()
            patch.scope = .set("personio:attendances:read")
            _ = try await vault.edit("acme", EditConnectionRequest(settings: patch), by: admin)
            patch.scope = .set("personio:persons:read")
            let edited = try await vault.edit(
                "acme",
                EditConnectionRequest(settings: patch, grants: Grants(rules: [GrantRule(unit: "a.service")])),
                by: admin
            )
            #expect(edited.grants.rules == [GrantRule(unit: "a.service")])
        }
    }
}

/// Files for `exe` rules in a directory of the test's own.
struct TemporaryDirectoryPaths {
    let root: String

    init(root: String) {
        self.root = root
        mkdir(root, 0o755)
    }

    func symlink(_ name: String, to target: String) throws -> String {
        let path = self.root + "/" + name
        guard Glibc.symlink(target, path) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        return path
    }

    func file(_ name: String, mode: mode_t) throws -> String {
        let path = self.root + "/" + name
        let descriptor = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, mode)
        guard descriptor >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        close(descriptor)
        return path
    }
}
