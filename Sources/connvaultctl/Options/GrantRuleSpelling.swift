import VaultAPI

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `--rule 'unit=hr-export.service,exe=/usr/bin/python3,scope=personio:persons:read,proxy=GET /v2/persons*'`: one
/// grant rule as `KEY=VALUE` pairs separated by commas.
///
/// Values are taken as written (no trimming: a proxy pattern has a space in it) and cannot contain a comma; a rule
/// that needs one is written in JSON (`grant --json-file`). Only the spelling is checked here; the daemon checks the
/// values (a group that exists, an executable, a scope within the connection's) and answers `invalid_grant`.
enum GrantRuleSpelling {
    static let keys = ["uid", "group", "unit", "exe", "exe_sha256", "scope", "proxy", "token", "rate_per_minute"]

    /// The rule `text` spells.
    /// - Parameter userID: resolves a user name given as `uid=NAME`.
    /// - Throws: a usage error (exit 2) naming the rule and the problem, on one line.
    static func parse(
        _ text: String,
        userID: (String) -> UInt32? = UserDirectory.uid(named:)
    ) throws(CLIError) -> GrantRule {
        func problem(_ message: String) -> CLIError {
            CLIError.usage("--rule '\(TableFormatter.sanitize(text))': \(message)")
        }
        guard !text.isEmpty else {
            throw CLIError.usage("--rule is empty; give KEY=VALUE pairs such as unit=app.service")
        }
        var rule = GrantRule()
        var seen: Set<String> = []
        for pair in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard let equals = pair.firstIndex(of: "=") else {
                throw problem("'\(TableFormatter.sanitize(String(pair)))' is not KEY=VALUE")
            }
            let key = String(pair[..<equals])
            let value = String(pair[pair.index(after: equals)...])
            guard Self.keys.contains(key) else {
                throw problem(
                    "unknown key '\(TableFormatter.sanitize(key))'; keys: \(Self.keys.joined(separator: ", "))"
                )
            }
            guard !value.isEmpty else { throw problem("\(key) has an empty value") }
            guard key == "proxy" || seen.insert(key).inserted else {
                throw problem("\(key) is given twice (only proxy may repeat)")
            }
            switch key {
            case "uid":
                rule.uid = try Self.uid(value, userID: userID, problem: problem)
            case "group": rule.group = value
            case "unit": rule.unit = value
            case "exe": rule.exe = value
            case "exe_sha256": rule.exeSHA256 = value
            case "scope": rule.scope = value
            case "proxy": rule.proxy = (rule.proxy ?? []) + [value]
            case "token":
                switch value {
                case "true": rule.token = true
                case "false": rule.token = false
                default: throw problem("token must be true or false")
                }
            case "rate_per_minute":
                guard value.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                    let rate = Int(value)
                else { throw problem("rate_per_minute must be a whole number") }
                rule.ratePerMinute = rate
            default:
                throw problem("unknown key '\(key)'")
            }
        }
        return rule
    }

    /// `uid=1000` or `uid=alice`: digits are the uid, anything else a user name on this host.
    static func uid(
        _ value: String,
        userID: (String) -> UInt32?,
        problem: (String) -> CLIError
    ) throws(CLIError) -> UInt32 {
        if value.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) {
            guard let uid = UInt32(value) else { throw problem("uid \(value) is out of range") }
            return uid
        }
        guard let uid = userID(value) else {
            throw problem("uid '\(TableFormatter.sanitize(value))' is neither a number nor a user on this host")
        }
        return uid
    }
}

/// User names to uids, for `--rule uid=NAME`.
enum UserDirectory {
    /// The uid of user `name`, or nil when there is none (or the user database cannot be read).
    static func uid(named name: String) -> UInt32? {
        var capacity = 1024
        while capacity <= 1 << 20 {
            var entry = passwd()
            var result: UnsafeMutablePointer<passwd>?
            let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: capacity)
            defer { buffer.deallocate() }
            let status = getpwnam_r(name, &entry, buffer, capacity, &result)
            if status == ERANGE {
                capacity *= 2
                continue
            }
            return status == 0 ? result.map { $0.pointee.pw_uid } : nil
        }
        return nil
    }
}
