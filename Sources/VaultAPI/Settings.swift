/// Plain (unencrypted) settings of a connection (DESIGN §5).
public struct ConnectionSettings: Codable, Sendable, Equatable {
    /// Personio API base, `https://api.personio.de` by default. Plain `http://` only for loopback hosts.
    public var apiBaseURL: String?
    /// Sent as `X-Personio-App-ID` when set.
    public var appID: String?
    /// Sent as `X-Personio-Partner-ID` when set.
    public var partnerID: String?
    /// Space-delimited OAuth scopes requested from Personio v2; nil asks for all the client has.
    public var scope: String?
    /// Recruiting company id (sent as `X-Company-Id`).
    public var companyID: String?
    /// Access rights granted on Personio's admin screen, as `area:read` / `area:write`; recorded, shown in `show`.
    public var permissions: [String]?
    /// The largest request body, in bytes, that the proxy route accepts for this connection; nil for
    /// ``defaultProxyMaxBody``. Every other route keeps its 64 KiB limit.
    public var proxyMaxBody: Int?

    public static let defaultAPIBaseURL = "https://api.personio.de"
    /// The proxy route's request body limit when `proxy_max_body` is not set: 64 MiB.
    public static let defaultProxyMaxBody = 64 * 1024 * 1024
    /// The smallest `proxy_max_body` accepted: 1 KiB.
    public static let minimumProxyMaxBody = 1024
    /// The largest `proxy_max_body` accepted: 1 GiB.
    public static let maximumProxyMaxBody = 1024 * 1024 * 1024

    public init(
        apiBaseURL: String? = nil,
        appID: String? = nil,
        partnerID: String? = nil,
        scope: String? = nil,
        companyID: String? = nil,
        permissions: [String]? = nil,
        proxyMaxBody: Int? = nil
    ) {
        self.apiBaseURL = apiBaseURL
        self.appID = appID
        self.partnerID = partnerID
        self.scope = scope
        self.companyID = companyID
        self.permissions = permissions
        self.proxyMaxBody = proxyMaxBody
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case apiBaseURL = "api_base_url"
        case appID = "app_id"
        case partnerID = "partner_id"
        case scope
        case companyID = "company_id"
        case permissions
        case proxyMaxBody = "proxy_max_body"
    }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(allowed: Set(CodingKeys.allCases.map(\.rawValue)))
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.apiBaseURL = try container.decodeIfPresent(String.self, forKey: .apiBaseURL)
        self.appID = try container.decodeIfPresent(String.self, forKey: .appID)
        self.partnerID = try container.decodeIfPresent(String.self, forKey: .partnerID)
        self.scope = try container.decodeIfPresent(String.self, forKey: .scope)
        self.companyID = try container.decodeIfPresent(String.self, forKey: .companyID)
        self.permissions = try container.decodeIfPresent([String].self, forKey: .permissions)
        self.proxyMaxBody = try container.decodeIfPresent(Int.self, forKey: .proxyMaxBody)
    }

    /// The effective API base URL.
    public var effectiveAPIBaseURL: String { self.apiBaseURL ?? Self.defaultAPIBaseURL }

    /// The proxy route's request body limit for this connection, in bytes.
    public var effectiveProxyMaxBody: Int { self.proxyMaxBody ?? Self.defaultProxyMaxBody }

    /// The areas and rights Personio's admin screen offers (DESIGN §5).
    public static let permissionAreas: [String: Set<String>] = [
        "employees": ["read", "write"], "attendances": ["read", "write"], "time_off": ["read", "write"],
        "documents": ["read", "write"], "custom_reports": ["read", "write"], "recruiting": ["read", "write"],
        "webhooks": ["read", "write"], "org_units": ["read"], "legal_entities": ["read"],
        "cost_centers": ["read"], "workplaces": ["read"], "reports": ["read"],
    ]

    /// Validates every setting for `provider`; returns a list of problems (field, reason), empty when valid.
    public func validationErrors(for provider: Provider) -> [(field: String, reason: String)] {
        var errors: [(String, String)] = []
        if let url = self.apiBaseURL, let reason = Self.baseURLProblem(url) {
            errors.append(("api_base_url", reason))
        }
        for (name, value) in [("app_id", self.appID), ("partner_id", self.partnerID)] {
            if let value, !Self.isHeaderToken(value) {
                errors.append((name, "must be 1 to 64 characters of A-Z, a-z, 0-9, '_', '-' or '.'"))
            }
        }
        if let scope = self.scope {
            let parts = scope.split(separator: " ", omittingEmptySubsequences: false)
            let ok =
                !scope.isEmpty && scope.utf8.count <= 1024
                && parts.allSatisfy { part in
                    !part.isEmpty && part.utf8.allSatisfy { Self.isScopeByte($0) }
                }
            if !ok { errors.append(("scope", "must be space-separated scope names such as 'personio:persons:read'")) }
            if provider == .personioRecruiting { errors.append(("scope", "is not used by personio-recruiting")) }
        }
        switch provider {
        case .personioRecruiting:
            if let company = self.companyID {
                if company.isEmpty || company.utf8.count > 20 || !company.utf8.allSatisfy({ (48...57).contains($0) }) {
                    errors.append(("company_id", "must be Personio's numeric company id"))
                }
            } else {
                errors.append(("company_id", "is required for personio-recruiting"))
            }
        case .personioV1, .personioV2:
            if self.companyID != nil { errors.append(("company_id", "is only used by personio-recruiting")) }
        }
        if let permissions = self.permissions {
            if permissions.count > 64 { errors.append(("permissions", "has more than 64 entries")) }
            for permission in permissions {
                let parts = permission.split(separator: ":", maxSplits: 1).map(String.init)
                guard parts.count == 2, let rights = Self.permissionAreas[parts[0]], rights.contains(parts[1]) else {
                    errors.append(
                        (
                            "permissions",
                            "'\(Self.printable(permission))' is not one of AREA:read or AREA:write for Personio's areas"
                        )
                    )
                    continue
                }
            }
        }
        if let limit = self.proxyMaxBody, let reason = Self.proxyMaxBodyProblem(limit) {
            errors.append(("proxy_max_body", reason))
        }
        return errors
    }

    /// Why `bytes` cannot be a `proxy_max_body`, or nil when it can: 1 KiB to 1 GiB.
    public static func proxyMaxBodyProblem(_ bytes: Int) -> String? {
        guard (Self.minimumProxyMaxBody...Self.maximumProxyMaxBody).contains(bytes) else {
            return "must be a number of bytes from 1024 (1 KiB) to 1073741824 (1 GiB)"
        }
        return nil
    }

    /// Why `url` cannot be an API base, or nil when it can: `https://host[:port][/path]`, or `http://` to a loopback host.
    public static func baseURLProblem(_ url: String) -> String? {
        guard url.utf8.count <= 512, url.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            return "must be a URL of printable ASCII without spaces"
        }
        let scheme: String
        let rest: Substring
        if url.hasPrefix("https://") {
            scheme = "https"
            rest = url.dropFirst(8)
        } else if url.hasPrefix("http://") {
            scheme = "http"
            rest = url.dropFirst(7)
        } else {
            return "must start with https://"
        }
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        if authority.isEmpty || authority.contains("@") { return "must name a host (and no user info)" }
        if rest.contains("?") || rest.contains("#") { return "must not have a query or fragment" }
        let host: Substring
        let port: Substring
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return "has an unterminated IPv6 address" }
            host = authority[authority.index(after: authority.startIndex)..<close]
            port = authority[authority.index(after: close)...]
        } else {
            host = authority.prefix { $0 != ":" }
            port = authority.dropFirst(host.count)
        }
        if host.isEmpty { return "must name a host (and no user info)" }
        if !port.isEmpty {
            let digits = port.dropFirst()
            guard port.first == ":", (1...5).contains(digits.count), Self.isDigits(digits),
                let number = Int(digits), (1...65535).contains(number)
            else { return "has an invalid port" }
        }
        if scheme == "http" && !Self.isLoopback(host) {
            return "must use https:// (plain http:// only to a loopback host)"
        }
        return nil
    }

    /// `localhost`, `::1` or an IPv4 literal in 127.0.0.0/8. A name that merely starts with "127." (such as
    /// `127.0.0.1.example.com`) resolves wherever its owner wants, so it is not loopback.
    static func isLoopback(_ host: Substring) -> Bool {
        if host == "localhost" || host == "::1" { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4, octets[0] == "127" else { return false }
        return octets.allSatisfy { (1...3).contains($0.count) && Self.isDigits($0) && (Int($0) ?? 256) <= 255 }
    }

    static func isDigits(_ value: Substring) -> Bool {
        value.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
    }

    static func isHeaderToken(_ value: String) -> Bool {
        (1...64).contains(value.utf8.count)
            && value.utf8.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                    UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "."):
                    true
                default: false
                }
            }
    }

    static func isScopeByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: ":"), UInt8(ascii: "."), UInt8(ascii: "_"),
            UInt8(ascii: "-"):
            true
        default: false
        }
    }

    /// A value safe to echo in an error: printable ASCII, at most 64 characters.
    static func printable(_ value: String) -> String {
        String(
            String.UnicodeScalarView(
                value.unicodeScalars.prefix(64).map { $0.isASCII && $0.value >= 0x20 && $0.value < 0x7F ? $0 : "?" }
            )
        )
    }
}

/// A PATCH of settings: a member present with a value replaces it, present with `null` clears it, absent keeps it.
public struct SettingsPatch: Codable, Sendable, Equatable {
    public enum Change<Value: Codable & Sendable & Equatable>: Sendable, Equatable {
        case keep
        case clear
        case set(Value)
    }

    public var apiBaseURL: Change<String> = .keep
    public var appID: Change<String> = .keep
    public var partnerID: Change<String> = .keep
    public var scope: Change<String> = .keep
    public var companyID: Change<String> = .keep
    public var permissions: Change<[String]> = .keep
    public var proxyMaxBody: Change<Int> = .keep

    public init() {}

    typealias Keys = ConnectionSettings.CodingKeys

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(allowed: Set(Keys.allCases.map(\.rawValue)))
        let container = try decoder.container(keyedBy: Keys.self)
        func change<V>(_ key: Keys, _ type: V.Type) throws -> Change<V> {
            guard container.contains(key) else { return .keep }
            if try container.decodeNil(forKey: key) { return .clear }
            return .set(try container.decode(V.self, forKey: key))
        }
        self.apiBaseURL = try change(.apiBaseURL, String.self)
        self.appID = try change(.appID, String.self)
        self.partnerID = try change(.partnerID, String.self)
        self.scope = try change(.scope, String.self)
        self.companyID = try change(.companyID, String.self)
        self.permissions = try change(.permissions, [String].self)
        self.proxyMaxBody = try change(.proxyMaxBody, Int.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        func put<V>(_ change: Change<V>, _ key: Keys) throws {
            switch change {
            case .keep: break
            case .clear: try container.encodeNil(forKey: key)
            case .set(let value): try container.encode(value, forKey: key)
            }
        }
        try put(self.apiBaseURL, .apiBaseURL)
        try put(self.appID, .appID)
        try put(self.partnerID, .partnerID)
        try put(self.scope, .scope)
        try put(self.companyID, .companyID)
        try put(self.permissions, .permissions)
        try put(self.proxyMaxBody, .proxyMaxBody)
    }

    public var isEmpty: Bool { self == SettingsPatch() }

    /// The settings after this patch.
    public func applied(to settings: ConnectionSettings) -> ConnectionSettings {
        func apply<V>(_ change: Change<V>, _ value: V?) -> V? {
            switch change {
            case .keep: value
            case .clear: nil
            case .set(let new): new
            }
        }
        var result = settings
        result.apiBaseURL = apply(self.apiBaseURL, settings.apiBaseURL)
        result.appID = apply(self.appID, settings.appID)
        result.partnerID = apply(self.partnerID, settings.partnerID)
        result.scope = apply(self.scope, settings.scope)
        result.companyID = apply(self.companyID, settings.companyID)
        result.permissions = apply(self.permissions, settings.permissions)
        result.proxyMaxBody = apply(self.proxyMaxBody, settings.proxyMaxBody)
        return result
    }
}
