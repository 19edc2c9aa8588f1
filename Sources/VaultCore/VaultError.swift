import VaultAPI

/// An error from the vault. `code` is the stable problem code the sockets answer with; the HTTP status is decided
/// at one boundary (VaultServer). Messages never contain a secret or a bound SQL value.
public struct VaultError: Error, Sendable, CustomStringConvertible, Equatable {
    public var code: ProblemCode
    public var message: String
    /// The underlying error's text, for logs only; free of credentials by construction.
    public var cause: String?
    /// Seconds after which a retry may succeed (`Retry-After` on 503 `upstream_unavailable`).
    public var retryAfter: Int?

    public init(_ code: ProblemCode, _ message: String, cause: (any Error)? = nil, retryAfter: Int? = nil) {
        self.code = code
        self.message = message
        self.cause = cause.map { String(describing: $0) }
        self.retryAfter = retryAfter
    }

    public var description: String {
        if let cause = self.cause { return "\(self.message) (\(self.code); cause: \(cause))" }
        return "\(self.message) (\(self.code))"
    }

    /// Equal by code, as the house style asks.
    public static func == (lhs: VaultError, rhs: VaultError) -> Bool { lhs.code == rhs.code }

    static func notFound(_ id: String) -> VaultError { VaultError(.notFound, "no connection '\(id)'") }
}
