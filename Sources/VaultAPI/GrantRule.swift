/// One grant rule (DESIGN §10): *who* — every selector set must hold — and what that caller may do, narrowed.
///
/// `uids`, `groups` and `units` of ``Grants`` are rules too: each entry one selector and no narrowing. A caller
/// matching several rules gets the first that matches, in the order uids, groups, units, then `rules` as listed.
public struct GrantRule: Codable, Sendable, Equatable, Hashable {
    // MARK: Who

    /// The caller's uid (`SO_PEERCRED`).
    public var uid: UInt32?
    /// A group the caller's primary gid or one of its supplementary groups (`SO_PEERGROUPS`) names.
    public var group: String?
    /// The caller's systemd unit (from its cgroup, confirmed through its pidfd).
    public var unit: String?
    /// The canonical path of the caller's running executable (`/proc/PID/exe`, confirmed through its pidfd);
    /// canonicalized, symlinks resolved, when the grant is written.
    public var exe: String?
    /// The SHA-256 of the caller's running executable's contents, lower-case hex.
    public var exeSHA256: String?

    // MARK: What

    /// For v2: a space-delimited subset of the connection's `scope`; tokens for this rule's callers are requested
    /// with it.
    public var scope: String?
    /// An allow-list of `METHOD /path` patterns for the proxy (`GET /v2/persons`, `GET /v2/persons/*`,
    /// `* /v1/recruiting/*`); absent: any path under the API base.
    public var proxy: [String]?
    /// `false`: the access token is never handed out to these callers (the proxy only); absent or `true`: it is.
    public var token: Bool?
    /// Proxied requests and token misses per minute per caller; absent: no budget of its own.
    public var ratePerMinute: Int?

    public init(
        uid: UInt32? = nil,
        group: String? = nil,
        unit: String? = nil,
        exe: String? = nil,
        exeSHA256: String? = nil,
        scope: String? = nil,
        proxy: [String]? = nil,
        token: Bool? = nil,
        ratePerMinute: Int? = nil
    ) {
        self.uid = uid
        self.group = group
        self.unit = unit
        self.exe = exe
        self.exeSHA256 = exeSHA256
        self.scope = scope
        self.proxy = proxy
        self.token = token
        self.ratePerMinute = ratePerMinute
    }

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case uid, group, unit, exe
        case exeSHA256 = "exe_sha256"
        case scope, proxy, token
        case ratePerMinute = "rate_per_minute"
    }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(allowed: Set(CodingKeys.allCases.map(\.rawValue)))
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.uid = try container.decodeIfPresent(UInt32.self, forKey: .uid)
        self.group = try container.decodeIfPresent(String.self, forKey: .group)
        self.unit = try container.decodeIfPresent(String.self, forKey: .unit)
        self.exe = try container.decodeIfPresent(String.self, forKey: .exe)
        self.exeSHA256 = try container.decodeIfPresent(String.self, forKey: .exeSHA256)
        self.scope = try container.decodeIfPresent(String.self, forKey: .scope)
        self.proxy = try container.decodeIfPresent([String].self, forKey: .proxy)
        self.token = try container.decodeIfPresent(Bool.self, forKey: .token)
        self.ratePerMinute = try container.decodeIfPresent(Int.self, forKey: .ratePerMinute)
    }

    /// Whether the rule names anyone: a rule without a selector would match every caller.
    public var hasSelector: Bool {
        self.uid != nil || self.group != nil || self.unit != nil || self.exe != nil || self.exeSHA256 != nil
    }
}
