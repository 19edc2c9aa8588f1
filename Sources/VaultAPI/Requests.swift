/// Who may use a connection on the app socket, and for what (DESIGN §7, §10): the one-selector lists `uids`,
/// `groups` and `units`, and `rules`, each of which names its callers by several selectors and may narrow what they
/// may do.
public struct Grants: Codable, Sendable, Equatable {
    public var uids: [UInt32]
    public var groups: [String]
    public var units: [String]
    /// Matched after the lists, in order; the first rule that matches a caller decides.
    public var rules: [GrantRule]

    public init(uids: [UInt32] = [], groups: [String] = [], units: [String] = [], rules: [GrantRule] = []) {
        self.uids = uids
        self.groups = groups
        self.units = units
        self.rules = rules
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case uids, groups, units, rules }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(allowed: Set(CodingKeys.allCases.map(\.rawValue)))
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.uids = try container.decodeIfPresent([UInt32].self, forKey: .uids) ?? []
        self.groups = try container.decodeIfPresent([String].self, forKey: .groups) ?? []
        self.units = try container.decodeIfPresent([String].self, forKey: .units) ?? []
        self.rules = try container.decodeIfPresent([GrantRule].self, forKey: .rules) ?? []
    }

    public var isEmpty: Bool { self.uids.isEmpty && self.groups.isEmpty && self.units.isEmpty && self.rules.isEmpty }

    /// The most rules one connection may have.
    public static let maximumRules = 64

    /// The form stored and shown: the lists sorted without duplicates; the rules in their order (the first match
    /// decides), each in its canonical form (``GrantRule/normalized``), exact duplicates after the first dropped.
    public var normalized: Grants {
        var seen: Set<GrantRule> = []
        var rules: [GrantRule] = []
        for rule in self.rules.map(\.normalized) where seen.insert(rule).inserted {
            rules.append(rule)
        }
        return Grants(
            uids: Array(Set(self.uids)).sorted(),
            groups: Array(Set(self.groups)).sorted(),
            units: Array(Set(self.units)).sorted(),
            rules: rules
        )
    }

    /// Problems with these grants that need no knowledge of the host or the connection, empty when valid. A rule's
    /// problems name it by its position, counted from 1 (`rule 2: …`).
    public var validationErrors: [String] {
        var errors: [String] = []
        if self.uids.count + self.groups.count + self.units.count > 256 { errors.append("more than 256 grants") }
        for group in self.groups where !Self.isName(group, extra: []) {
            errors.append("group '\(ConnectionSettings.printable(group))' is not a valid group name")
        }
        for unit in self.units where !Self.isName(unit, extra: ["@", ":", "\\"]) || !unit.contains(".") {
            errors.append(
                "unit '\(ConnectionSettings.printable(unit))' is not a systemd unit name such as 'app.service'"
            )
        }
        if self.rules.count > Self.maximumRules {
            errors.append("\(self.rules.count) rules; at most \(Self.maximumRules) are allowed")
        }
        for (index, rule) in self.rules.enumerated() {
            errors += rule.validationErrors.map { "rule \(index + 1): \($0)" }
        }
        return errors
    }

    static func isName(_ value: String, extra: Set<Character>) -> Bool {
        guard (1...255).contains(value.utf8.count), let first = value.first, first != "-" else { return false }
        return value.allSatisfy { c in
            c.isASCII && (c.isLetter || c.isNumber || c == "_" || c == "-" || c == "." || extra.contains(c))
        }
    }

    /// This grant set plus `other`: the lists united, `other`'s rules after these.
    public func merging(_ other: Grants) -> Grants {
        Grants(
            uids: self.uids + other.uids,
            groups: self.groups + other.groups,
            units: self.units + other.units,
            rules: self.rules + other.rules
        )
        .normalized
    }
}

/// `POST /v1/connections`.
public struct CreateConnectionRequest: Codable, Sendable {
    public var id: String
    public var provider: Provider
    public var settings: ConnectionSettings
    public var secrets: SecretsInput
    public var grants: Grants

    public init(
        id: String,
        provider: Provider,
        settings: ConnectionSettings = .init(),
        secrets: SecretsInput,
        grants: Grants = .init()
    ) {
        self.id = id
        self.provider = provider
        self.settings = settings
        self.secrets = secrets
        self.grants = grants
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case id, provider, settings, secrets, grants }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(allowed: Set(CodingKeys.allCases.map(\.rawValue)))
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.id = try container.decode(String.self, forKey: .id)
        self.provider = try container.decode(Provider.self, forKey: .provider)
        self.settings = try container.decodeIfPresent(ConnectionSettings.self, forKey: .settings) ?? .init()
        self.secrets = try container.decodeIfPresent(SecretsInput.self, forKey: .secrets) ?? .init()
        self.grants = try container.decodeIfPresent(Grants.self, forKey: .grants) ?? .init()
    }
}

/// `PATCH /v1/connections/{id}`: changed settings and/or secrets. Every edit writes a new, re-encrypted revision.
public struct EditConnectionRequest: Codable, Sendable {
    public var settings: SettingsPatch
    public var secrets: SecretsInput
    /// When present, replaces the grants.
    public var grants: Grants?

    public init(settings: SettingsPatch = .init(), secrets: SecretsInput = .init(), grants: Grants? = nil) {
        self.settings = settings
        self.secrets = secrets
        self.grants = grants
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case settings, secrets, grants }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(allowed: Set(CodingKeys.allCases.map(\.rawValue)))
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.settings = try container.decodeIfPresent(SettingsPatch.self, forKey: .settings) ?? .init()
        self.secrets = try container.decodeIfPresent(SecretsInput.self, forKey: .secrets) ?? .init()
        self.grants = try container.decodeIfPresent(Grants.self, forKey: .grants)
    }
}

/// `POST /v1/connections/{id}/disable`.
public struct DisableRequest: Codable, Sendable {
    public var reason: String?

    public init(reason: String? = nil) { self.reason = reason }

    enum CodingKeys: String, CodingKey, CaseIterable { case reason }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(allowed: Set(CodingKeys.allCases.map(\.rawValue)))
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.reason = try container.decodeIfPresent(String.self, forKey: .reason)
    }
}

/// `POST /v1/connections/{id}/reset`: the new credentials, as top-level members (`client_id`, `client_secret`, …).
public typealias ResetRequest = SecretsInput

/// `PUT /v1/connections/{id}/grants`.
public typealias GrantsRequest = Grants
