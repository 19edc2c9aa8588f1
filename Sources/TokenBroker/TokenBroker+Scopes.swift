import VaultAPI
import VaultCore

/// Scopes per rule (DESIGN §10): a rule with `scope` hands its callers a token requested with that scope. An entry
/// holds one token slot per distinct scope it hands out; which rule is served from which slot is decided once, when
/// the entry is loaded.
extension TokenBroker {
    /// Where each rule of `policy` takes its token from, for the connection `snapshot` describes.
    ///
    /// Slot 0 is the connection's own `scope` setting (as it spells it, nil for every scope the client has): the
    /// one-selector rules, rules without a `scope`, and rules whose scope is the same set. Each further distinct set
    /// (compared normalized, see ``normalizedScope(_:)``, so `"b a"` and `"a b"` share a token) gets one slot, in
    /// the order of the rules that first name it. Only personio-v2 has scopes: elsewhere every rule is on slot 0.
    ///
    /// - Returns: The scope each slot's token is requested with, and the slot of each rule by ``MatchedRule/index``.
    static func slotLayout(
        _ policy: GrantPolicy,
        snapshot: ConnectionSnapshot
    ) -> (scopes: [String?], slotOfRule: [Int]) {
        let own = snapshot.settings.scope
        var scopes: [String?] = [own]
        var normalized: [String?] = [own.map(Self.normalizedScope)]
        let rules = policy.allRules
        var slotOfRule = [Int](repeating: 0, count: rules.count)
        guard snapshot.provider == .personioV2 else { return (scopes, slotOfRule) }
        for rule in rules {
            guard let scope = rule.scope.map(Self.normalizedScope), !scope.isEmpty else { continue }
            if let index = normalized.firstIndex(of: scope) {
                slotOfRule[rule.index] = index
            } else {
                slotOfRule[rule.index] = scopes.count
                scopes.append(scope)
                normalized.append(scope)
            }
        }
        return (scopes, slotOfRule)
    }

    /// A scope as a set, spelled one way: split on spaces, each word once, sorted, joined with single spaces.
    static func normalizedScope(_ scope: String) -> String {
        Set(scope.split(separator: " ")).sorted().joined(separator: " ")
    }
}
