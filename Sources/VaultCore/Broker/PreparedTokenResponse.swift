import Synchronization
import VaultAPI

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
    private let lastRendering = Mutex<(expiresIn: Int, rendering: any AnyObject & Sendable)?>(nil)

    init(connection: String, token: CachedToken, settings: ConnectionSettings) {
        func json(_ string: String) -> String {
            let data = (try? JSONEncoder().encode(string)) ?? Data("\"\"".utf8)
            return String(decoding: data, as: UTF8.self)
        }
        var headers: [(String, String)] = [("Authorization", "Bearer \(token.accessToken)")]
        if let appID = settings.appID { headers.append(("X-Personio-App-ID", appID)) }
        if let partnerID = settings.partnerID { headers.append(("X-Personio-Partner-ID", partnerID)) }
        let headerJSON = headers.sorted { $0.0 < $1.0 }.map { "\(json($0.0)):\(json($0.1))" }.joined(separator: ",")
        let prefix =
            "{\"access_token\":\(json(token.accessToken)),\"api_base_url\":\(json(settings.effectiveAPIBaseURL)),"
            + "\"connection\":\(json(connection)),\"expires_at\":\(json(Timestamp.format(secondsSince1970: token.expiresAtWall))),"
            + "\"expires_in\":"
        let suffix =
            ",\"headers\":{\(headerJSON)},\"scope\":\(token.scope.map(json) ?? "null"),\"token_type\":\(json(token.tokenType))}"
        self.prefix = Array(prefix.utf8)
        self.suffix = Array(suffix.utf8)
        self.expiresAt = token.expiresAt
    }

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
