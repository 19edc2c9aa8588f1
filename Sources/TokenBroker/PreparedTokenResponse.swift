import VaultAPI
import VaultCore
import VaultLocks

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A token response body prepared once per cached token: only `expires_in` changes between requests, and it changes
/// once a second, so the server renders the answer once per second (``rendering(expiresIn:_:)``) and shares it.
/// Members are in sorted order, like every other JSON the vault writes.
///
/// A class, and immutable but for ``rendering(expiresIn:_:)``'s memo: it is handed out on every cached token request,
/// and passing it then costs one reference count.
public final class PreparedTokenResponse: Sendable {
    /// Everything up to and including `"expires_in":`.
    public let prefix: [UInt8]
    /// Everything after the `expires_in` number.
    public let suffix: [UInt8]
    public let expiresAt: ContinuousClock.Instant
    /// The last answer rendered from this response, with the `expires_in` it was rendered for.
    private let lastRendering = Locked<(expiresIn: Int, rendering: any AnyObject & Sendable)?>(nil)

    package init(connection: String, token: CachedToken, settings: ConnectionSettings) {
        var headers = ["Authorization": "Bearer \(token.accessToken)"]
        if let appID = settings.appID { headers["X-Personio-App-ID"] = appID }
        if let partnerID = settings.partnerID { headers["X-Personio-Partner-ID"] = partnerID }
        // The body is `TokenResponse` itself, encoded once with a marker in place of `expires_in` and cut there, so
        // that the cached answer can never drift from the wire type's field list.
        let response = TokenResponse(
            connection: connection,
            tokenType: token.tokenType,
            accessToken: token.accessToken,
            expiresAt: Timestamp.format(secondsSince1970: token.expiresAtWall),
            expiresIn: Self.marker,
            scope: token.scope,
            apiBaseURL: settings.effectiveAPIBaseURL,
            headers: headers
        )
        let body: [UInt8]
        do {
            body = Array(try VaultJSON.encoder().encode(response))
        } catch {
            preconditionFailure("a token response of strings and an integer always encodes")
        }
        // Only the member itself can hold the key followed by the marker: inside a JSON string the quotes are escaped.
        let member = Array("\"\(TokenResponse.CodingKeys.expiresIn.stringValue)\":\(Self.marker)".utf8)
        guard let start = body.firstRange(of: member)?.lowerBound else {
            preconditionFailure("the encoded token response has its expires_in member")
        }
        let numberStart = start + member.count - String(Self.marker).utf8.count
        self.prefix = Array(body[..<numberStart])
        self.suffix = Array(body[(start + member.count)...])
        self.expiresAt = token.expiresAt
    }

    /// Stands in for `expires_in` while the body is encoded; never sent.
    static let marker = 918_273_645_546_372_819

    /// Whole seconds left at `now` (never negative).
    public func expiresIn(at now: ContinuousClock.Instant) -> Int {
        max(0, Int((self.expiresAt - now).components.seconds))
    }

    /// What `render` makes of this response for `expiresIn`, made once per value of `expiresIn`: every answer within
    /// the same second is the same bytes, so the server renders it (body and head) once and shares it.
    public func rendering<Rendering: AnyObject & Sendable>(
        expiresIn: Int,
        _ render: () -> Rendering
    ) -> Rendering {
        if let last = self.lastRendering.withLock({ $0 }), last.expiresIn == expiresIn,
            let rendering = last.rendering as? Rendering
        {
            return rendering
        }
        let rendering = render()
        self.lastRendering.withLock { $0 = (expiresIn, rendering) }
        return rendering
    }

    /// The whole body at `now`.
    public func body(at now: ContinuousClock.Instant) -> [UInt8] {
        self.prefix + Array(String(self.expiresIn(at: now)).utf8) + self.suffix
    }
}
