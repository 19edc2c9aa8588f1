/// Who may ask the app socket for a connection's tokens (DESIGN §7).
public struct Grants: Codable, Sendable, Equatable {
    public var uids: [UInt32]
    public var groups: [String]
    public var units: [String]

    public init(uids: [UInt32] = [], groups: [String] = [], units: [String] = []) {
        self.uids = uids
        self.groups = groups
        self.units = units
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case uids, groups, units }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(allowed: Set(CodingKeys.allCases.map(\.rawValue)))
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.uids = try container.decodeIfPresent([UInt32].self, forKey: .uids) ?? []
        self.groups = try container.decodeIfPresent([String].self, forKey: .groups) ?? []
        self.units = try container.decodeIfPresent([String].self, forKey: .units) ?? []
    }

    public var isEmpty: Bool { self.uids.isEmpty && self.groups.isEmpty && self.units.isEmpty }

    /// Sorted, without duplicates: the form stored and shown.
    public var normalized: Grants {
        Grants(
            uids: Array(Set(self.uids)).sorted(),
            groups: Array(Set(self.groups)).sorted(),
            units: Array(Set(self.units)).sorted()
        )
    }

    /// Problems with the names in these grants, empty when valid.
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
        return errors
    }

    static func isName(_ value: String, extra: Set<Character>) -> Bool {
        guard (1...255).contains(value.utf8.count), let first = value.first, first != "-" else { return false }
        return value.allSatisfy { c in
            c.isASCII && (c.isLetter || c.isNumber || c == "_" || c == "-" || c == "." || extra.contains(c))
        }
    }

    /// This grant set plus `other`.
    public func merging(_ other: Grants) -> Grants {
        Grants(uids: self.uids + other.uids, groups: self.groups + other.groups, units: self.units + other.units)
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
