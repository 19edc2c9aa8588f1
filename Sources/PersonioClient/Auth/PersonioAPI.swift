/// Which of Personio's two authentication APIs a connection uses.
public enum PersonioAPI: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// `POST /v1/auth` with a JSON body; answers a token without a lifetime (24 h assumed); no revocation.
    case v1
    /// OAuth 2.0 client credentials at `POST /v2/auth/token`; revocation at `POST /v2/auth/revoke`.
    case v2

    public var description: String { self.rawValue }
}
