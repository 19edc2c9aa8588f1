import NIOCore
import VaultCrypto

/// A caller's request to forward to Personio: what the proxy route received, minus its own prefix.
public struct ProxyRequest: Sendable {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE` (see ``PersonioProxy/allowedMethods``).
    public var method: String
    /// The part of the route after `/proxy`, starting with `/`, as received or as
    /// ``PersonioProxy/validatedPath(_:query:)`` returned it; checked (again) and re-encoded before it is sent.
    public var path: String
    /// The raw query string without `?`, passed on as it is; `nil` or empty for none.
    public var query: String?
    /// The caller's headers; only ``PersonioProxy/forwardedRequestHeaders(_:)`` passes on are sent.
    public var headers: [(String, String)]
    /// The request body, at most ``PersonioProxy/maximumRequestBodyBytes``.
    public var body: ByteBuffer?

    /// - Parameters:
    ///   - method: The HTTP method.
    ///   - path: The path under the API base, starting with `/`.
    ///   - query: The raw query string, if any.
    ///   - headers: The caller's headers (filtered before sending).
    ///   - body: The body, if any.
    public init(
        method: String,
        path: String,
        query: String? = nil,
        headers: [(String, String)] = [],
        body: ByteBuffer? = nil
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
    }
}

/// The credential a proxied request carries.
///
/// Neither `description` nor reflection (`dump`, debuggers' summaries) shows the token or key.
public enum ProxyAuthorization: Sendable, CustomStringConvertible, CustomReflectable {
    /// `Authorization: Bearer <token>`: a v1 or v2 access token.
    case bearer(String)
    /// `Authorization: Bearer <recruiting key>` and `X-Company-Id: <company id>`: Personio's recruiting API.
    case recruiting(key: SecretBytes, companyID: String)

    public var description: String {
        switch self {
        case .bearer: "ProxyAuthorization.bearer(redacted)"
        case .recruiting(_, let companyID): "ProxyAuthorization.recruiting(key: redacted, companyID: \(companyID))"
        }
    }

    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .enum) }

    /// A scrubber for the credential this authorization injects.
    var scrubber: CredentialScrubber {
        switch self {
        case .bearer(let token):
            var bytes = Array(token.utf8)
            return CredentialScrubber(secrets: [SecretBytes(consuming: &bytes)])
        case .recruiting(let key, _):
            return CredentialScrubber(secrets: [key])
        }
    }

    /// A redactor for everything this authorization could leak into a message.
    var redactor: Redactor {
        switch self {
        case .bearer(let token):
            Array(token.utf8).withUnsafeBytes { Redactor(secrets: [SecretBytes(copying: $0)]) }
        case .recruiting(let key, _):
            Redactor(secrets: [key])
        }
    }
}
