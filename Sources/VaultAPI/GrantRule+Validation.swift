/// What can be checked of a rule without the host or the connection: the shapes of its values. The vault adds what
/// needs either (a group that exists, an executable that exists, is canonical and executable, a scope within the
/// connection's own).
extension GrantRule {
    /// The most `proxy` patterns one rule may have, and the longest one, in bytes.
    public static let proxyPatternLimits = (count: 64, bytes: 256)
    /// The budgets a rule may set (`rate_per_minute`).
    public static let ratePerMinuteRange = 1...100_000
    /// The methods a `proxy` pattern may name: those the proxy forwards, or `*` for any of them.
    public static let proxyMethods: Set<String> = ["*", "GET", "POST", "PUT", "PATCH", "DELETE"]
    /// The longest `exe` path (PATH_MAX less its terminating zero).
    public static let maximumExeBytes = 4095

    /// The canonical form of what the rule says by itself: `exe_sha256` in lower case. (`exe` is canonicalized by
    /// the vault, which resolves it on the host.)
    public var normalized: GrantRule {
        var rule = self
        rule.exeSHA256 = self.exeSHA256?.lowercased()
        return rule
    }

    /// The rule's problems that need neither the host nor the connection, each a phrase naming the key
    /// (`unit 'x' is not …`), empty when there are none.
    public var validationErrors: [String] {
        var errors: [String] = []
        if !self.hasSelector {
            errors.append("names no caller: give at least one of uid, group, unit, exe, exe_sha256")
        }
        if let uid = self.uid, uid == UInt32.max {
            errors.append("uid \(uid) is out of range (0 to \(UInt32.max - 1); \(UInt32.max) is no user)")
        }
        if let group = self.group, !Grants.isName(group, extra: []) {
            errors.append("group '\(ConnectionSettings.printable(group))' is not a valid group name")
        }
        if let unit = self.unit, let problem = Self.unitProblem(unit) {
            errors.append("unit '\(ConnectionSettings.printable(unit))' \(problem)")
        }
        if let exe = self.exe, let problem = Self.exeProblem(exe) {
            errors.append("exe '\(ConnectionSettings.printable(exe))' \(problem)")
        }
        if let hash = self.exeSHA256, !Self.isSHA256Hex(hash) {
            errors.append("exe_sha256 must be 64 hexadecimal digits (a SHA-256)")
        }
        if let scope = self.scope, let problem = Self.scopeProblem(scope) {
            errors.append("scope \(problem)")
        }
        if let proxy = self.proxy {
            if proxy.count > Self.proxyPatternLimits.count {
                errors.append("proxy has \(proxy.count) patterns; at most \(Self.proxyPatternLimits.count) are allowed")
            }
            for pattern in proxy {
                if let problem = Self.proxyPatternProblem(pattern) {
                    errors.append("proxy pattern '\(ConnectionSettings.printable(pattern))' \(problem)")
                }
            }
        }
        if let rate = self.ratePerMinute, !Self.ratePerMinuteRange.contains(rate) {
            errors.append(
                "rate_per_minute must be from \(Self.ratePerMinuteRange.lowerBound) to \(Self.ratePerMinuteRange.upperBound)"
            )
        }
        return errors
    }

    /// Why `unit` cannot be a rule's unit, or nil. A caller's unit is always the outermost `.service` or `.scope`
    /// of its cgroup (VaultServer's `CgroupUnit`), so a rule naming anything else could never match.
    static func unitProblem(_ unit: String) -> String? {
        guard Grants.isName(unit, extra: ["@", ":", "\\"]) else {
            return "is not a systemd unit name such as 'app.service'"
        }
        guard let suffix = [".service", ".scope"].first(where: { unit.hasSuffix($0) }), unit.count > suffix.count
        else {
            return "is not a .service or .scope unit: callers are identified by the service or scope they run in"
        }
        if unit.hasSuffix("@" + suffix) { return "is a template; name an instance such as 'app@1\(suffix)'" }
        return nil
    }

    /// Why `exe` cannot be a rule's executable path, as far as its spelling goes, or nil.
    static func exeProblem(_ exe: String) -> String? {
        guard exe.hasPrefix("/") else { return "is not an absolute path" }
        guard exe.utf8.count <= Self.maximumExeBytes else { return "is longer than \(Self.maximumExeBytes) bytes" }
        guard !exe.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            return "contains control characters"
        }
        return nil
    }

    /// 64 hexadecimal digits, either case.
    static func isSHA256Hex(_ value: String) -> Bool {
        value.utf8.count == 64
            && value.utf8.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"),
                    UInt8(ascii: "A")...UInt8(ascii: "F"):
                    true
                default: false
                }
            }
    }

    /// The scope words of `scope` as a connection's `scope` setting spells them: single spaces between words of
    /// `A-Z a-z 0-9 : . _ -`.
    public static func scopeWords(_ scope: String) -> [Substring] {
        scope.split(separator: " ", omittingEmptySubsequences: false)
    }

    static func scopeProblem(_ scope: String) -> String? {
        let words = Self.scopeWords(scope)
        guard !scope.isEmpty, scope.utf8.count <= 1024,
            words.allSatisfy({ word in !word.isEmpty && word.utf8.allSatisfy(ConnectionSettings.isScopeByte) })
        else {
            return "must be space-separated scope names such as 'personio:persons:read'"
        }
        if Set(words).count != words.count { return "names a scope twice" }
        return nil
    }

    /// Why `pattern` is not a `METHOD /path` proxy pattern, or nil.
    ///
    /// The path is spelt as the proxy sees a request's path once its traversal checks passed: absolute, printable
    /// ASCII without spaces, no query or fragment, no `.`/`..` or empty segments, no backslash, no percent-escape
    /// (write the character itself). `*` may stand anywhere: a trailing `*` for any rest of the path, any other for
    /// a run of characters within one segment.
    public static func proxyPatternProblem(_ pattern: String) -> String? {
        guard pattern.utf8.count <= Self.proxyPatternLimits.bytes else {
            return "is longer than \(Self.proxyPatternLimits.bytes) bytes"
        }
        let parts = pattern.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return "is not 'METHOD /path' (such as 'GET /v2/persons/*')" }
        guard Self.proxyMethods.contains(String(parts[0])) else {
            return
                "has method '\(ConnectionSettings.printable(String(parts[0])))'; use *, GET, POST, PUT, PATCH or DELETE"
        }
        let path = parts[1]
        guard path.hasPrefix("/") else { return "has a path that does not start with '/'" }
        guard path.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            return "has a path that is not printable ASCII without spaces"
        }
        if path.contains("?") || path.contains("#") {
            return "has a query or fragment ('?' or '#'); give the path only"
        }
        if path.contains("%") { return "has a percent-escape; write the characters themselves" }
        if path.contains("\\") { return "has a backslash" }
        let segments = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        for (index, segment) in segments.enumerated() {
            if segment == "." || segment == ".." { return "has a '.' or '..' segment" }
            if segment.isEmpty && index < segments.count - 1 { return "has an empty segment ('//')" }
        }
        return nil
    }

    /// The rule as `connvaultctl grant --rule` spells it (`unit=a.service,exe=/usr/bin/python3,proxy=GET /v2/*`):
    /// for `show`, and the audit trail. Keys in a fixed order; nothing in a rule is secret.
    public var spelling: String {
        var parts: [String] = []
        if let uid = self.uid { parts.append("uid=\(uid)") }
        if let group = self.group { parts.append("group=\(group)") }
        if let unit = self.unit { parts.append("unit=\(unit)") }
        if let exe = self.exe { parts.append("exe=\(exe)") }
        if let hash = self.exeSHA256 { parts.append("exe_sha256=\(hash)") }
        if let scope = self.scope { parts.append("scope=\(scope)") }
        if let proxy = self.proxy {
            if proxy.isEmpty { parts.append("proxy=(none)") }
            parts += proxy.map { "proxy=\($0)" }
        }
        if let token = self.token { parts.append("token=\(token)") }
        if let rate = self.ratePerMinute { parts.append("rate_per_minute=\(rate)") }
        return parts.joined(separator: ",")
    }
}
