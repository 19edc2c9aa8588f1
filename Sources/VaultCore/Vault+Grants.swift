import VaultAPI
import VaultStore

#if canImport(Glibc)
import Glibc
#endif

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Grants as the vault checks, stores and describes them (DESIGN §10). What a rule says by itself is checked by
/// `Grants.validationErrors` (VaultAPI); what needs the host (a group that exists, an executable, canonicalized) is
/// checked here before any transaction, and what needs the connection (a scope within its own) inside the
/// transaction that writes the grants or the settings. A refused change writes nothing.
extension Vault {
    // MARK: - Validation

    /// `grants` checked and in the form stored: every rule's `exe` canonicalized (symlinks resolved), its
    /// `exe_sha256` in lower case, the lists sorted, exact duplicate rules dropped.
    /// - Throws: `invalid_grant` with the first problem, naming the rule by its position (from 1).
    static func validated(_ grants: Grants) throws(VaultError) -> Grants {
        if let first = grants.validationErrors.first { throw VaultError(.invalidGrant, first) }
        var checked = grants
        for (index, rule) in grants.rules.enumerated() {
            do throws(GrantHostProblem) {
                checked.rules[index] = try Self.resolvedOnHost(rule)
            } catch {
                throw VaultError(.invalidGrant, "rule \(index + 1): \(error.message)")
            }
        }
        return checked.normalized
    }

    /// The rule with its `exe` canonicalized, once its group and executable are found on this host.
    static func resolvedOnHost(_ rule: GrantRule) throws(GrantHostProblem) -> GrantRule {
        var rule = rule
        if let group = rule.group {
            switch HostLookup.groupExists(group) {
            case .some(true): break
            case .some(false):
                throw GrantHostProblem("group '\(group)' does not exist on this host")
            case .none:
                throw GrantHostProblem("group '\(group)' cannot be looked up: the group database cannot be read")
            }
        }
        if let exe = rule.exe {
            rule.exe = try HostLookup.canonicalExecutable(exe)
        }
        return rule
    }

    /// Refuses rules whose `scope` does not narrow the connection's: `scope` is for personio-v2 only, and only
    /// words of the connection's own `scope` setting (a connection without one has no declared set to narrow).
    /// - Parameter context: put before the problem, for an edit whose new settings the stored rules no longer fit.
    static func checkScopes(
        _ rules: [GrantRule],
        provider: Provider,
        settings: ConnectionSettings,
        context: String = ""
    ) throws(VaultError) {
        for (index, rule) in rules.enumerated() {
            guard let scope = rule.scope else { continue }
            let problem: String?
            if provider != .personioV2 {
                problem = "scope is only for personio-v2 connections; this one is \(provider.rawValue)"
            } else if let own = settings.scope {
                let allowed = Set(GrantRule.scopeWords(own))
                problem = GrantRule.scopeWords(scope).first { !allowed.contains($0) }.map {
                    "scope '\($0)' is not in the connection's scope setting ('\(own)')"
                }
            } else {
                problem =
                    "scope narrows the connection's scope setting, and the connection has none (set one with edit --scope)"
            }
            if let problem { throw VaultError(.invalidGrant, "\(context)rule \(index + 1): \(problem)") }
        }
    }

    // MARK: - Storage

    /// The connection's grants as stored: the lists from `grants`, the rules from `grant_rules`, in order.
    static func grants(_ tx: StoreTransaction, of id: String) throws -> Grants {
        try Self.grants(of: id, records: try tx.grants(of: id), rules: try tx.grantRules(of: id))
    }

    /// The grants of connection `id` from its stored rows (``StoreTransaction/grants(of:)`` and
    /// ``StoreTransaction/grantRules(of:)``, or the same rows read for every connection at once).
    static func grants(of id: String, records: [GrantRecord], rules: [GrantRuleRecord]) throws -> Grants {
        var grants = Grants()
        for record in records {
            switch record.kind {
            case .uid: if let uid = UInt32(record.value) { grants.uids.append(uid) }
            case .group: grants.groups.append(record.value)
            case .unit: grants.units.append(record.value)
            }
        }
        grants.uids.sort()
        grants.groups.sort()
        grants.units.sort()
        let decoder = VaultJSON.decoder()
        for record in rules {
            do {
                grants.rules.append(try decoder.decode(GrantRule.self, from: Data(record.rule.utf8)))
            } catch {
                throw VaultError(.internalError, "connection '\(id)' has an unreadable grant rule in the database")
            }
        }
        return grants
    }

    /// Replaces the connection's stored grants (lists and rules) with `grants`, which ``validated(_:)`` returned.
    static func storeGrants(_ tx: StoreTransaction, of id: String, _ grants: Grants) throws {
        try tx.replaceGrants(of: id, with: Self.grantRecords(grants))
        let encoder = VaultJSON.encoder()
        var rules: [String] = []
        for rule in grants.rules {
            do {
                rules.append(String(decoding: try encoder.encode(rule), as: UTF8.self))
            } catch {
                throw VaultError(.internalError, "cannot encode a grant rule")
            }
        }
        try tx.replaceGrantRules(of: id, with: rules)
    }

    static func grantRecords(_ grants: Grants) -> [GrantRecord] {
        grants.uids.map { GrantRecord(kind: .uid, value: String($0)) }
            + grants.groups.map { GrantRecord(kind: .group, value: $0) }
            + grants.units.map { GrantRecord(kind: .unit, value: $0) }
    }

    /// How the audit trail records a grant set: every list and every rule as `grant --rule` spells it. Rules hold
    /// no secret.
    static func grantsDescription(_ grants: Grants) -> String {
        var text = "uids \(grants.uids.map(String.init)); groups \(grants.groups); units \(grants.units)"
        text += "; rules \(grants.rules.count)"
        for (index, rule) in grants.rules.enumerated() {
            text += "; rule \(index + 1): \(rule.spelling)"
        }
        return text
    }
}

/// Why a rule does not fit this host: a message naming the key and value.
struct GrantHostProblem: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

/// The host facts a rule's selectors refer to, read as the daemon sees them (its user, its mount namespace: a
/// daemon run with `ProtectHome=` sees no home directory).
enum HostLookup {
    /// Whether group `name` exists, or nil when the group database cannot be read. `getgrnam_r` with its buffer
    /// grown on ERANGE, as `cv_group_by_name` does, so a group with many members is found.
    static func groupExists(_ name: String) -> Bool? {
        var capacity = 1024
        while capacity <= 1 << 24 {
            var entry = group()
            var result: UnsafeMutablePointer<group>?
            let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: capacity)
            defer { buffer.deallocate() }
            let status = getgrnam_r(name, &entry, buffer, capacity, &result)
            switch status {
            case 0: return result != nil
            case ERANGE: capacity *= 2
            // getgrnam_r(3): these mean "no such group", not a failure.
            case ENOENT, ESRCH, EBADF, EPERM: return false
            default: return nil
            }
        }
        return nil
    }

    /// `path` with every symlink resolved (`realpath`), once it is found to be a regular file someone may execute.
    static func canonicalExecutable(_ path: String) throws(GrantHostProblem) -> String {
        guard let resolved = realpath(path, nil) else {
            let reason = errno == ENOENT || errno == ENOTDIR ? "does not exist" : "cannot be resolved"
            throw GrantHostProblem("exe '\(path)' \(reason) on this host (as the daemon sees its file system)")
        }
        defer { free(resolved) }
        let canonical = String(cString: resolved)
        var info = stat()
        guard stat(canonical, &info) == 0 else {
            throw GrantHostProblem("exe '\(path)' cannot be read (as the daemon sees its file system)")
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw GrantHostProblem("exe '\(path)' is not a regular file")
        }
        guard info.st_mode & 0o111 != 0 else {
            throw GrantHostProblem("exe '\(path)' is not executable")
        }
        return canonical
    }
}
