import VaultCrypto

/// Everything needed to ask Personio for an access token: the API flavour, the client id and secret (kept in
/// `SecretBytes`, never in a `String`), where to send the request and the optional identification headers.
public struct PersonioCredentials: Sendable, CustomStringConvertible {
    /// Personio's production API.
    public static let defaultBaseURL = "https://api.personio.de"

    public var api: PersonioAPI
    public var clientID: SecretBytes
    public var clientSecret: SecretBytes
    /// Scheme, host and optional port, without a path: `https://api.personio.de`, or `http://127.0.0.1:PORT` in tests.
    /// A trailing `/` is ignored.
    public var baseURL: String
    /// Sent as `X-Personio-App-ID` when set.
    public var appID: String?
    /// Sent as `X-Personio-Partner-ID` when set.
    public var partnerID: String?
    /// Space-delimited v2 scopes; `nil` asks for every scope the client has. Ignored by v1.
    public var scope: String?

    /// - Parameters:
    ///   - api: `.v1` or `.v2`.
    ///   - clientID: The client id from Personio's API credentials page.
    ///   - clientSecret: The client secret shown once on that page.
    ///   - baseURL: Where Personio's API lives; defaults to ``defaultBaseURL``.
    ///   - appID: Value of `X-Personio-App-ID`, if any.
    ///   - partnerID: Value of `X-Personio-Partner-ID`, if any.
    ///   - scope: Space-delimited v2 scopes, if the token should carry fewer than the client has.
    public init(
        api: PersonioAPI,
        clientID: SecretBytes,
        clientSecret: SecretBytes,
        baseURL: String = PersonioCredentials.defaultBaseURL,
        appID: String? = nil,
        partnerID: String? = nil,
        scope: String? = nil
    ) {
        self.api = api
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.baseURL = baseURL
        self.appID = appID
        self.partnerID = partnerID
        self.scope = scope
    }

    /// Names the API and base URL only; the client id and secret are never shown.
    public var description: String {
        "PersonioCredentials(api: \(self.api), baseURL: \(self.baseURL), clientID: redacted, clientSecret: redacted)"
    }
}
