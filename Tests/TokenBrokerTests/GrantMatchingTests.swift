import PersonioClient
import Testing
import VaultAPI
import VaultCore

/// Grant rules (DESIGN §10) as the broker matches them: the first rule whose every selector holds, legacy `uids`,
/// `groups`, `units` first; and proxy allow-list patterns against normalized paths.
@Suite("Grant matching")
struct GrantMatchingTests {
    static let groups: [String: UInt32] = ["payroll": 500, "hr": 501]

    static func policy(_ grants: Grants = Grants(), rules: [GrantRule]) -> GrantPolicy {
        GrantPolicy(grants, rules: rules, gid: { Self.groups[$0] })
    }

    static let python = Caller(
        uid: 1000,
        gid: 1000,
        pid: 10,
        comm: "python3",
        groups: [1000, 501],
        unit: "hr-export.service",
        exe: "/usr/bin/python3.12",
        exeSHA256: String(repeating: "ab", count: 32)
    )

    @Test("legacy uids, groups and units match as one-selector rules without narrowing, in that order")
    func legacyOrder() throws {
        let grants = Grants(uids: [1000], groups: ["hr"], units: ["hr-export.service"])
        let policy = Self.policy(grants, rules: [GrantRule(uid: 1000, token: false)])
        let uidMatch = try #require(policy.firstMatch(Self.python))
        #expect(uidMatch.origin == .uids)
        #expect(uidMatch.tokenAllowed && uidMatch.proxy == nil && uidMatch.ratePerMinute == nil)

        var groupOnly = Self.python
        groupOnly.uid = 1001
        #expect(policy.firstMatch(groupOnly)?.origin == .groups)
        var primaryGroup = groupOnly
        primaryGroup.groups = []
        primaryGroup.gid = 501
        #expect(policy.firstMatch(primaryGroup)?.origin == .groups)

        var unitOnly = groupOnly
        unitOnly.groups = [1001]
        unitOnly.gid = 1001
        #expect(policy.firstMatch(unitOnly)?.origin == .units)
        unitOnly.unit = "other.service"
        #expect(policy.firstMatch(unitOnly) == nil)
    }

    @Test("unit and exe match byte for byte: a name only canonically equivalent to the granted one is another file")
    func selectorsCompareBytes() throws {
        // Swift's String == treats these as equal (KELVIN SIGN decomposes to K; é precomposed and decomposed).
        let kelvin = "/opt/hr/\u{212A}export"
        let decomposed = "/opt/hr/cafe\u{301}"
        #expect(kelvin == "/opt/hr/Kexport" && decomposed == "/opt/hr/caf\u{E9}")
        let byExe = Self.policy(rules: [GrantRule(exe: "/opt/hr/Kexport"), GrantRule(exe: "/opt/hr/caf\u{E9}")])
        let byUnit = Self.policy(Grants(units: ["Kafka.service"]), rules: [])
        var caller = Self.python
        caller.uid = 1001
        caller.groups = []
        caller.exe = kelvin
        #expect(byExe.firstMatch(caller) == nil)
        caller.exe = decomposed
        #expect(byExe.firstMatch(caller) == nil)
        caller.exe = "/opt/hr/Kexport"
        #expect(byExe.firstMatch(caller)?.origin == .rule(0))
        caller.unit = "\u{212A}afka.service"
        #expect(byUnit.firstMatch(caller) == nil)
        caller.unit = "Kafka.service"
        #expect(byUnit.firstMatch(caller)?.origin == .units)
    }

    @Test("a rule matches only when every selector it sets holds; the first such rule wins")
    func allOfSelectors() throws {
        let hash = String(repeating: "ab", count: 32)
        let rules = [
            GrantRule(
                unit: "hr-export.service",
                exe: "/usr/bin/python3.12",
                exeSHA256: String(repeating: "cd", count: 32)
            ),
            GrantRule(uid: 1000, group: "payroll"),
            GrantRule(group: "hr", unit: "hr-export.service", exe: "/usr/bin/python3.12", proxy: ["GET /v2/persons"]),
            GrantRule(uid: 1000, exeSHA256: hash, token: false, ratePerMinute: 5),
        ]
        let policy = Self.policy(rules: rules)
        let matched = try #require(policy.firstMatch(Self.python))
        #expect(matched.origin == .rule(2))
        #expect(matched.label == "rules[2]")
        #expect(matched.proxyPatterns == ["GET /v2/persons"])

        var otherExe = Self.python
        otherExe.exe = "/usr/bin/perl"
        let byHash = try #require(policy.firstMatch(otherExe))
        #expect(byHash.origin == .rule(3))
        #expect(!byHash.tokenAllowed && byHash.ratePerMinute == 5)

        otherExe.exeSHA256 = nil
        #expect(policy.firstMatch(otherExe) == nil)
    }

    @Test("a caller whose unit or executable is unknown never matches a rule that sets it")
    func unknownIdentity() {
        var unconfirmed = Self.python
        unconfirmed.unit = nil
        unconfirmed.exe = nil
        unconfirmed.exeSHA256 = nil
        for rule in [
            GrantRule(uid: 1000, unit: "hr-export.service"),
            GrantRule(uid: 1000, exe: "/usr/bin/python3.12"),
            GrantRule(uid: 1000, exeSHA256: String(repeating: "ab", count: 32)),
        ] {
            #expect(Self.policy(rules: [rule]).firstMatch(unconfirmed) == nil, "\(rule)")
            #expect(Self.policy(rules: [rule]).firstMatch(Self.python) != nil, "\(rule)")
        }
    }

    @Test("a group that does not resolve, and a rule without a selector, match nobody")
    func nobody() {
        #expect(Self.policy(rules: [GrantRule(group: "no-such-group")]).firstMatch(Self.python) == nil)
        #expect(Self.policy(rules: [GrantRule(scope: "personio:persons:read")]).firstMatch(Self.python) == nil)
        #expect(Self.policy(Grants(groups: ["no-such-group"]), rules: []).firstMatch(Self.python) == nil)
    }

    // MARK: - Proxy patterns

    /// (pattern, method, normalized path, allowed). Paths are as the broker matches them: after the proxy's path
    /// checks (which refuse `%2F`, trailing slashes, `..`, double encodings before any pattern is tried) and decoded
    /// once, so `/%70ersons` arrives here as `/persons`; see the end-to-end suite for the encoded spellings.
    static let patternTable: [(String, String, String, Bool)] = [
        ("GET /v2/persons", "GET", "/v2/persons", true),
        ("GET /v2/persons", "POST", "/v2/persons", false),
        ("GET /v2/persons", "get", "/v2/persons", false),
        ("GET /v2/persons", "GET", "/V2/Persons", false),
        ("GET /v2/persons", "GET", "/v2/persons/1", false),
        ("GET /v2/persons", "GET", "/v2/persons;x=1", false),
        ("GET /v2/persons", "GET", "/v2/personsX", false),
        ("GET /v2/persons", "GET", "/v2", false),
        ("* /v2/persons", "DELETE", "/v2/persons", true),
        ("* /v1/recruiting/*", "POST", "/v1/recruiting/applications/7", true),
        ("* /v1/recruiting/*", "POST", "/v1/recruiting", false),
        ("GET /v2/persons/*", "GET", "/v2/persons/7", true),
        ("GET /v2/persons/*", "GET", "/v2/persons/7/employments", true),
        ("GET /v2/persons/*", "GET", "/v2/persons/7;x", true),
        ("GET /v2/persons/*", "GET", "/v2/persons", false),
        ("GET /v2/persons*", "GET", "/v2/persons", true),
        ("GET /v2/persons*", "GET", "/v2/persons-export", true),
        ("GET /v2/persons*", "GET", "/v2/persons;x=1", true),
        ("GET /v2/persons*", "GET", "/v2/person", false),
        ("GET /v2/persons/*/employments", "GET", "/v2/persons/7/employments", true),
        ("GET /v2/persons/*/employments", "GET", "/v2/persons/7/x/employments", false),
        ("GET /v2/persons/*/employments", "GET", "/v2/persons/7;a/employments", false),
        ("GET /v2/persons/*/employments", "GET", "/v2/persons/7/employments/1", false),
        ("GET /v2/p*s", "GET", "/v2/persons", true),
        ("GET /v2/p*s", "GET", "/v2/p/s", false),
        ("GET /v2/*-*", "GET", "/v2/a-b-c", true),
        ("GET /v2/*/x*", "GET", "/v2/a/xyz/q", true),
        ("GET /v2/*/x*", "GET", "/v2/a/b/xyz", false),
        ("GET /v2/persons;*", "GET", "/v2/persons;x=1", true),
        ("GET /v2/persons;*", "GET", "/v2/persons", false),
        ("GET /v2/caf\u{E9}", "GET", "/v2/caf\u{E9}", true),
    ]

    @Test("proxy patterns: methods, case, segments, `;` parameters, trailing and inner `*`", arguments: patternTable)
    func pattern(_ text: String, _ method: String, _ path: String, _ allowed: Bool) throws {
        let pattern = try #require(ProxyPattern(parsing: text))
        #expect(pattern.matches(method: method, path: path) == allowed, "\(text) vs \(method) \(path)")
    }

    static let malformed = [
        "", "GET", "GET/v2", "get /v2/persons", "GET v2/persons", "GET  /v2", "GET /v2/persons?x=1", "GET /v2/%70",
        "GET /v2 x", "GET /v2\\x", "G3T /v2", "GET /v2#x",
    ]

    @Test("malformed patterns are refused, and a rule's malformed pattern allows nothing", arguments: malformed)
    func malformedPattern(_ text: String) {
        #expect(ProxyPattern(parsing: text) == nil)
        #expect(ProxyPattern.problem(with: text) != nil)
        let rule = Self.policy(rules: [GrantRule(uid: 1000, proxy: [text])]).firstMatch(Self.python)
        #expect(rule?.allowsProxy(method: "GET", path: "/v2") == false)
    }

    @Test("a rule without proxy patterns allows every path; with some, only those")
    func ruleAllowList() throws {
        let policy = Self.policy(rules: [
            GrantRule(uid: 1000, proxy: ["GET /v2/persons", "GET /v2/persons/*"]), GrantRule(uid: 1001),
        ])
        let narrowed = try #require(policy.firstMatch(Self.python))
        #expect(narrowed.allowsProxy(method: "GET", path: "/v2/persons/3"))
        #expect(!narrowed.allowsProxy(method: "GET", path: "/v2/compensations"))
        var other = Self.python
        other.uid = 1001
        #expect(try #require(policy.firstMatch(other)).allowsProxy(method: "DELETE", path: "/v2/anything"))
    }

    enum Outcome: Sendable { case allowed, notAllowed, refusedByPathCheck }

    /// Raw paths, as callers spell them, through the proxy's path check and the allow-list of
    /// `GET /v2/persons` and `GET /v2/persons/*`: what the broker decides, in order.
    static let rawTable: [(String, String, Outcome)] = [
        ("GET", "/v2/persons", .allowed),
        ("GET", "/v2/%70ersons", .allowed),
        ("GET", "/v2/persons/%31", .allowed),
        ("GET", "/%76%32/persons/1", .allowed),
        ("GET", "/v2/person%73", .allowed),
        ("GET", "/v2/persons%2F1", .refusedByPathCheck),
        ("GET", "/v2/persons%2f..%2fcompensations", .refusedByPathCheck),
        ("GET", "/v2/persons/", .refusedByPathCheck),
        ("GET", "/v2/persons/1/", .refusedByPathCheck),
        ("GET", "/v2/persons/../compensations", .refusedByPathCheck),
        ("GET", "/v2/persons/%2e%2e/compensations", .refusedByPathCheck),
        ("GET", "/v2/persons/..;x/compensations", .refusedByPathCheck),
        ("GET", "/v2/%2570ersons", .refusedByPathCheck),
        ("GET", "/v2//persons", .refusedByPathCheck),
        ("GET", "/V2/Persons", .notAllowed),
        ("GET", "/v2/PERSONS", .notAllowed),
        ("GET", "/v2/persons;x=1", .notAllowed),
        ("GET", "/v2/persons%3Bx=1", .notAllowed),
        ("GET", "/v2/compensations", .notAllowed),
        ("POST", "/v2/persons", .notAllowed),
    ]

    @Test("raw spellings: encodings decode once, then the allow-list decides", arguments: rawTable)
    func rawPath(_ method: String, _ raw: String, _ outcome: Outcome) throws {
        let rule = try #require(
            Self.policy(rules: [GrantRule(uid: 1000, proxy: ["GET /v2/persons", "GET /v2/persons/*"])])
                .firstMatch(Self.python)
        )
        switch PersonioProxy.normalizedPath(raw) {
        case .failure:
            #expect(outcome == .refusedByPathCheck, "\(raw)")
            #expect(throws: ProxyRequestError.self) { try PersonioProxy.validatedPath(raw, query: nil).get() }
        case .success(let path):
            #expect(rule.allowsProxy(method: method, path: path) == (outcome == .allowed), "\(method) \(raw) → \(path)")
            #expect(outcome != .refusedByPathCheck, "\(raw)")
        }
    }
}
