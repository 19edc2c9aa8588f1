/// The kinds of credentials the vault keeps.
public enum Provider: String, Codable, Sendable, CaseIterable {
    case personioV2 = "personio-v2"
    case personioV1 = "personio-v1"
    case personioRecruiting = "personio-recruiting"

    /// The secret fields a connection of this provider must have.
    public var requiredSecrets: [SecretField] {
        switch self {
        case .personioV1, .personioV2: [.clientID, .clientSecret]
        case .personioRecruiting: [.recruitingToken]
        }
    }

    /// The secret fields a connection of this provider may have.
    public var allowedSecrets: [SecretField] { self.requiredSecrets + [.webhookToken] }

    /// Whether the token route may hand out a token for this provider (recruiting keys never leave the vault).
    public var isTokenExportable: Bool { self != .personioRecruiting }
}

/// The secret fields, by their wire name.
public enum SecretField: String, Codable, Sendable, CaseIterable, Comparable {
    case clientID = "client_id"
    case clientSecret = "client_secret"
    case recruitingToken = "recruiting_token"
    case webhookToken = "webhook_token"

    public static func < (lhs: SecretField, rhs: SecretField) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Lifecycle states of a connection (DESIGN §5).
public enum ConnectionState: String, Codable, Sendable, CaseIterable {
    case active
    case disabled
    case needsReset = "needs_reset"
}

/// Connection ids: `^[a-z0-9][a-z0-9._-]{0,62}$`.
public enum ConnectionID {
    public static func isValid(_ id: String) -> Bool {
        // Walked as UTF-8 in place: this runs on every request that names a connection.
        let bytes = id.utf8
        guard (1...63).contains(bytes.count) else { return false }
        func allowed(_ byte: UInt8, first: Bool) -> Bool {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
            case UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"): !first
            default: false
            }
        }
        var first = true
        for byte in bytes {
            guard allowed(byte, first: first) else { return false }
            first = false
        }
        return true
    }
}
