/// An access token Personio issued.
///
/// `issuedAt` is taken just before the request was sent, so `expiresAt` errs on the early side by the length of
/// the round trip. Use the monotonic `issuedAt`/`expiresAt` for scheduling (immune to wall-clock jumps) and the
/// wall-clock `issuedAtEpochSeconds`/`expiresAtEpochSeconds` only to show an `expires_at` to people.
public struct IssuedToken: Sendable, CustomStringConvertible {
    /// What v1 tokens are assumed to live (Personio sends no lifetime), and v2's default.
    public static let defaultLifetimeSeconds = 86_400

    /// The bearer token; only printable ASCII without spaces (checked on arrival).
    public var accessToken: String
    /// Always `Bearer`.
    public var tokenType: String
    /// Lifetime in seconds from `issuedAt` (v1: ``defaultLifetimeSeconds``).
    public var expiresIn: Int
    /// The scopes Personio granted (v2), if it said.
    public var scope: String?
    /// Monotonic time just before the request left.
    public var issuedAt: ContinuousClock.Instant
    /// Wall-clock seconds since 1970 at the same moment as `issuedAt`.
    public var issuedAtEpochSeconds: Double

    /// - Parameters:
    ///   - accessToken: The bearer token.
    ///   - tokenType: `Bearer`.
    ///   - expiresIn: Lifetime in seconds from `issuedAt`.
    ///   - scope: Granted scopes, if known.
    ///   - issuedAt: Monotonic time of issue.
    ///   - issuedAtEpochSeconds: Wall-clock time of issue, in seconds since 1970.
    public init(
        accessToken: String,
        tokenType: String = "Bearer",
        expiresIn: Int,
        scope: String?,
        issuedAt: ContinuousClock.Instant,
        issuedAtEpochSeconds: Double
    ) {
        self.accessToken = accessToken
        self.tokenType = tokenType
        self.expiresIn = expiresIn
        self.scope = scope
        self.issuedAt = issuedAt
        self.issuedAtEpochSeconds = issuedAtEpochSeconds
    }

    /// Monotonic time at which the token stops working.
    public var expiresAt: ContinuousClock.Instant { self.issuedAt + .seconds(self.expiresIn) }

    /// Wall-clock seconds since 1970 at which the token stops working.
    public var expiresAtEpochSeconds: Double { self.issuedAtEpochSeconds + Double(self.expiresIn) }

    /// Seconds of life left at `now` (never negative).
    public func remainingSeconds(at now: ContinuousClock.Instant = .now) -> Int {
        let left = self.expiresAt - now
        return max(0, Int(left.components.seconds))
    }

    /// Everything but the token itself, which is a credential too and stays out of logs.
    public var description: String {
        let scope = self.scope ?? "-"
        return "IssuedToken(\(self.tokenType), expiresIn: \(self.expiresIn), scope: \(scope), accessToken: redacted)"
    }
}
