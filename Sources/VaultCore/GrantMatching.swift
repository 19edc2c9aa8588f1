import VaultAPI

// MARK: - The rule a caller matched

/// What the first rule that matches a caller lets it do (DESIGN §10): the narrowing of one ``GrantRule``, or none for
/// the one-selector rules of `uids`, `groups` and `units`.
///
/// A class, immutable: a connection's compiled ``GrantPolicy`` holds one per rule and hands out a reference on every
/// request (one reference count, no copy of the pattern list).
public final class MatchedRule: Sendable, CustomStringConvertible {
    /// Where the rule comes from in the connection's grants.
    public enum Origin: Sendable, Equatable, Hashable {
        /// One of `grants.uids`.
        case uids
        /// One of `grants.groups`.
        case groups
        /// One of `grants.units`.
        case units
        /// `grants.rules[index]`.
        case rule(Int)
    }

    public let origin: Origin
    /// For v2: the scope tokens for this rule's callers are requested with; nil: the connection's.
    public let scope: String?
    /// The proxy allow-list as written; nil: any path under the API base.
    public let proxyPatterns: [String]?
    /// The same, compiled; a pattern that does not parse is left out (it allows nothing), so a rule whose every
    /// pattern is malformed allows no proxied request at all.
    public let proxy: [ProxyPattern]?
    /// Whether the access token may be handed to these callers (`token` not `false`).
    public let tokenAllowed: Bool
    /// Proxied requests and token misses per minute per caller; nil: no budget of its own.
    public let ratePerMinute: Int?
    /// Position in the policy's list (uids, groups, units, then each rule): an index for per-rule state.
    public let index: Int

    init(origin: Origin, rule: GrantRule?, index: Int) {
        self.origin = origin
        self.index = index
        self.scope = rule?.scope
        self.proxyPatterns = rule?.proxy
        self.proxy = rule?.proxy.map { $0.compactMap(ProxyPattern.init(parsing:)) }
        self.tokenAllowed = rule?.token ?? true
        self.ratePerMinute = rule?.ratePerMinute.map { max(1, $0) }
    }

    /// A fixed label naming the rule in metrics and the audit trail: `uids`, `groups`, `units`, or `rules[N]`
    /// (N from 0, the rule's position in `grants.rules`). Never a caller's value.
    public var label: String {
        switch self.origin {
        case .uids: "uids"
        case .groups: "groups"
        case .units: "units"
        case .rule(let index): "rules[\(index)]"
        }
    }

    public var description: String { "MatchedRule(\(self.label))" }

    /// Whether a proxied request with `method` (upper-case, as received) for `path` (normalized: checked by the
    /// proxy's path rules and percent-decoded once; no query) is inside this rule's allow-list.
    public func allowsProxy(method: String, path: String) -> Bool {
        guard let proxy = self.proxy else { return true }
        return proxy.contains { $0.matches(method: method, path: path) }
    }
}

// MARK: - A connection's grants, compiled

/// A connection's grants as the broker checks them on every request: group names resolved to gids once, every rule
/// compiled, so that matching a caller is a few integer and string comparisons (no `/proc`, no hashing of files, no
/// allocation).
///
/// Order (DESIGN §10): the one-selector rules of `uids`, then `groups`, then `units`, then `rules` in order; the first
/// that matches wins.
public struct GrantPolicy: Sendable {
    let uids: [UInt32]
    /// gids of the groups `grants.groups` names (a name that does not resolve names nobody).
    let gids: Set<UInt32>
    let units: [String]
    let rules: [CompiledRule]
    let legacy: (uids: MatchedRule, groups: MatchedRule, units: MatchedRule)

    /// One rule of `grants.rules` with its group resolved.
    struct CompiledRule: Sendable {
        var uid: UInt32?
        /// Whether the rule names a group; `gid` is nil when it names one that does not resolve (it then matches
        /// nobody).
        var namesGroup: Bool
        var gid: UInt32?
        var unit: String?
        var exe: String?
        var exeSHA256: String?
        var matched: MatchedRule
    }

    /// - Parameters:
    ///   - grants: The connection's grants (`uids`, `groups`, `units`).
    ///   - rules: Its rules, in order.
    ///   - gid: Resolves a group name to its gid (the system's group database; tests pass a table).
    public init(_ grants: Grants, rules: [GrantRule], gid: (String) -> UInt32?) {
        self.uids = grants.uids
        self.gids = Set(grants.groups.compactMap(gid))
        self.units = grants.units
        self.legacy = (
            MatchedRule(origin: .uids, rule: nil, index: 0),
            MatchedRule(origin: .groups, rule: nil, index: 1),
            MatchedRule(origin: .units, rule: nil, index: 2)
        )
        self.rules = rules.enumerated().map { index, rule in
            CompiledRule(
                uid: rule.uid,
                namesGroup: rule.group != nil,
                gid: rule.group.flatMap(gid),
                unit: rule.unit,
                exe: rule.exe,
                exeSHA256: rule.exeSHA256,
                matched: MatchedRule(origin: .rule(index), rule: rule, index: 3 + index)
            )
        }
    }

    /// Every rule of the policy, in matching order (for per-rule state such as metrics).
    public var allRules: [MatchedRule] {
        [self.legacy.uids, self.legacy.groups, self.legacy.units] + self.rules.map(\.matched)
    }

    /// The first rule that matches `caller`, or nil when none does (the connection is not granted to it).
    ///
    /// A rule matches when every selector it sets holds: `uid` equal; `group` the caller's primary gid or one of its
    /// supplementary groups; `unit`, `exe`, `exe_sha256` equal to what the server confirmed at accept. A caller
    /// whose unit or executable is unknown (nil) never matches a rule that sets it.
    @inlinable
    public func firstMatch(_ caller: Caller) -> MatchedRule? {
        self.firstMatchImplementation(caller)
    }

    @usableFromInline
    func firstMatchImplementation(_ caller: Caller) -> MatchedRule? {
        if self.uids.contains(caller.uid) { return self.legacy.uids }
        if !self.gids.isEmpty, self.gids.contains(caller.gid) || caller.groups.contains(where: self.gids.contains) {
            return self.legacy.groups
        }
        if let unit = caller.unit, self.units.contains(where: { $0.utf8.elementsEqual(unit.utf8) }) {
            return self.legacy.units
        }
        for rule in self.rules where rule.holds(for: caller) { return rule.matched }
        return nil
    }
}

extension GrantPolicy.CompiledRule {
    func holds(for caller: Caller) -> Bool {
        if let uid = self.uid, uid != caller.uid { return false }
        if self.namesGroup {
            guard let gid = self.gid, caller.gid == gid || caller.groups.contains(gid) else { return false }
        }
        // Byte for byte: `String`'s `==` is Unicode canonical equivalence, under which another file's name (`\u{212A}`,
        // KELVIN SIGN, for `K`; a decomposed `é` for a precomposed one) would match a path or unit it is not.
        if let unit = self.unit, !Self.sameBytes(caller.unit, unit) { return false }
        if let exe = self.exe, !Self.sameBytes(caller.exe, exe) { return false }
        if let exeSHA256 = self.exeSHA256, !Self.sameBytes(caller.exeSHA256, exeSHA256) { return false }
        // A rule without any selector would match everyone; grants refuse one when written, and it matches no one
        // here in case one was stored anyway.
        return self.uid != nil || self.namesGroup || self.unit != nil || self.exe != nil || self.exeSHA256 != nil
    }

    static func sameBytes(_ observed: String?, _ expected: String) -> Bool {
        guard let observed else { return false }
        return observed.utf8.elementsEqual(expected.utf8)
    }
}

extension GrantPolicy {
    /// The first rule of `grants` and `rules` that matches `caller`, resolving group names now (for one-off checks;
    /// the broker compiles a ``GrantPolicy`` once per loaded connection instead).
    public static func firstMatch(
        _ grants: Grants,
        rules: [GrantRule],
        gid: (String) -> UInt32?,
        caller: Caller
    ) -> MatchedRule? {
        GrantPolicy(grants, rules: rules, gid: gid).firstMatch(caller)
    }
}

// MARK: - Proxy allow-list patterns

/// One `METHOD /path` pattern of a rule's proxy allow-list (DESIGN §10), matched against the normalized path (after
/// the proxy's traversal checks, percent-decoded once) and the method as received.
///
/// - The method is `*` (any) or upper-case letters, compared exactly.
/// - The path is compared byte for byte, case-sensitive. A `*` at its very end matches any rest of the path (`/`,
///   `;` and the empty rest included): `GET /v2/persons*` allows `/v2/persons`, `/v2/persons/1` and
///   `/v2/persons;x`. A `*` anywhere else matches any run of bytes inside one segment, never a `/` or a `;`:
///   `GET /v2/persons/*/employments` allows `/v2/persons/7/employments`, not `/v2/persons/7/x/employments`.
/// - The query string is not part of the match.
public struct ProxyPattern: Sendable, Equatable, CustomStringConvertible {
    /// nil for `*`.
    public let method: String?
    /// The path without a trailing `*`, as UTF-8.
    let path: [UInt8]
    /// Whether the pattern ended with `*` (any rest).
    let prefix: Bool

    /// The pattern as written.
    public let text: String

    public var description: String { self.text }

    /// Parses `METHOD /path`, or returns nil when it is malformed (see ``problem(with:)`` for why).
    public init?(parsing text: String) {
        guard Self.problem(with: text) == nil, let space = text.firstIndex(of: " ") else { return nil }
        let method = String(text[..<space])
        var path = Array(text[text.index(after: space)...].utf8)
        self.method = method == "*" ? nil : method
        self.prefix = path.last == UInt8(ascii: "*")
        if self.prefix { path.removeLast() }
        self.path = path
        self.text = text
    }

    /// Why `text` is not a valid pattern, or nil when it is. The message never quotes the text.
    ///
    /// Valid: a method (`*`, or 1 to 16 upper-case ASCII letters), one space, then a path that starts with `/` and
    /// holds no space, control byte, `%` (patterns are matched against decoded paths, which never contain one), `?`,
    /// `#` or backslash; at most 2048 bytes in all.
    public static func problem(with text: String) -> String? {
        let bytes = Array(text.utf8)
        guard (3...2048).contains(bytes.count) else { return "a proxy pattern must be 3 to 2048 bytes" }
        guard let space = bytes.firstIndex(of: UInt8(ascii: " ")) else {
            return "a proxy pattern is 'METHOD /path' (for example 'GET /v2/persons/*')"
        }
        let method = bytes[..<space]
        let isMethod =
            method.elementsEqual("*".utf8)
            || ((1...16).contains(method.count)
                && method.allSatisfy { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) })
        guard isMethod else { return "a proxy pattern's method must be '*' or upper-case, such as GET" }
        let path = bytes[(space + 1)...]
        guard path.first == UInt8(ascii: "/") else { return "a proxy pattern's path must start with '/'" }
        for byte in path {
            switch byte {
            case 0x00...0x20, 0x7F:
                return "a proxy pattern's path must not contain spaces or control characters"
            case UInt8(ascii: "%"):
                return "a proxy pattern's path is matched decoded: write it without percent escapes"
            case UInt8(ascii: "?"), UInt8(ascii: "#"):
                return "a proxy pattern's path must not contain '?' or '#' (queries are not matched)"
            case UInt8(ascii: "\\"):
                return "a proxy pattern's path must not contain backslashes"
            default: continue
            }
        }
        return nil
    }

    /// Whether a request with `method` for the normalized `path` matches.
    public func matches(method: String, path: String) -> Bool {
        if let own = self.method, own != method { return false }
        var path = path
        return path.withUTF8 { text in
            self.path.withUnsafeBufferPointer { pattern in
                Self.matchPath(pattern, prefix: self.prefix, text)
            }
        }
    }

    /// Matches piece by piece, a piece being what lies between two delimiters (`/` or `;`): delimiters must be the
    /// same in both, and a `*` never crosses one; the pattern's last piece, when it ended with `*`, needs to match
    /// only the start of the rest.
    static func matchPath(
        _ pattern: UnsafeBufferPointer<UInt8>,
        prefix: Bool,
        _ text: UnsafeBufferPointer<UInt8>
    ) -> Bool {
        var patternStart = 0
        var textStart = 0
        while true {
            let patternEnd = Self.nextDelimiter(pattern, from: patternStart)
            let textEnd = Self.nextDelimiter(text, from: textStart)
            let patternPiece = UnsafeBufferPointer(rebasing: pattern[patternStart..<patternEnd])
            if patternEnd == pattern.count, prefix {
                let textPiece = UnsafeBufferPointer(rebasing: text[textStart..<textEnd])
                return Self.glob(patternPiece, textPiece, prefix: true)
            }
            guard Self.glob(patternPiece, UnsafeBufferPointer(rebasing: text[textStart..<textEnd]), prefix: false)
            else { return false }
            if patternEnd == pattern.count { return textEnd == text.count }
            guard textEnd < text.count, pattern[patternEnd] == text[textEnd] else { return false }
            patternStart = patternEnd + 1
            textStart = textEnd + 1
        }
    }

    private static func nextDelimiter(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int) -> Int {
        var index = start
        while index < bytes.count, bytes[index] != UInt8(ascii: "/"), bytes[index] != UInt8(ascii: ";") {
            index += 1
        }
        return index
    }

    /// Wildcard match of one piece (no delimiters in either), `*` matching any run of bytes; with `prefix`, the
    /// pattern need only match a start of `text`. Greedy with back-tracking to the last `*`: linear in practice,
    /// at worst the product of the two lengths.
    static func glob(_ pattern: UnsafeBufferPointer<UInt8>, _ text: UnsafeBufferPointer<UInt8>, prefix: Bool) -> Bool {
        let star = UInt8(ascii: "*")
        var p = 0
        var t = 0
        var lastStar = -1
        var mark = 0
        while t < text.count {
            if prefix, p == pattern.count { return true }
            if p < pattern.count, pattern[p] == star {
                lastStar = p
                p += 1
                mark = t
            } else if p < pattern.count, pattern[p] == text[t] {
                p += 1
                t += 1
            } else if lastStar >= 0 {
                p = lastStar + 1
                mark += 1
                t = mark
            } else {
                return false
            }
        }
        while p < pattern.count, pattern[p] == star { p += 1 }
        return p == pattern.count
    }
}
