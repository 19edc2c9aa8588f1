import Foundation
import NIOCore
import NIOHTTP1
import Testing
import TokenBroker
import VaultAPI

@testable import VaultCore
@testable import VaultServer

/// The cached token route's answer: rendered once per second of `expires_in`, with a head prepared for it.
@Suite("Token responses")
struct TokenResponseTests {
    static let t0 = ContinuousClock.now

    static func at(_ seconds: Double) -> ContinuousClock.Instant {
        Self.t0 + .milliseconds(Int64((seconds * 1000).rounded()))
    }

    /// A token obtained at `t0` that expires `lifetime` seconds later.
    static func prepared(lifetime: Int) -> PreparedTokenResponse {
        let token = CachedToken(
            accessToken: "fake-token",
            tokenType: "Bearer",
            scope: "personio:employees:read",
            revision: 1,
            obtainedAt: Self.t0,
            expiresAt: Self.t0 + .seconds(lifetime),
            expiresAtWall: 1_900_000_000,
            refreshAt: Self.t0 + .seconds(lifetime * 2 / 3)
        )
        return PreparedTokenResponse(connection: "acme", token: token, settings: ConnectionSettings(appID: "fake-app"))
    }

    static func decoded(_ response: Response) throws -> TokenResponse {
        let body = try #require(response.body)
        return try VaultJSON.decoder().decode(TokenResponse.self, from: Data(body.readableBytesView))
    }

    static func storage(_ response: Response) -> UnsafeRawPointer? {
        response.body?.withUnsafeReadableBytes { UnsafeRawPointer($0.baseAddress) }
    }

    @Test("answers within one second of expires_in share one rendering; the next second renders anew")
    func renderedOncePerSecond() throws {
        let prepared = Self.prepared(lifetime: 3600)
        let first = BrokerRoutes.tokenResponse(prepared, at: Self.at(0.2))
        let second = BrokerRoutes.tokenResponse(prepared, at: Self.at(0.7))
        #expect(try Self.decoded(first).expiresIn == 3599)
        #expect(Self.storage(first) != nil)
        #expect(Self.storage(first) == Self.storage(second))

        let later = BrokerRoutes.tokenResponse(prepared, at: Self.at(1.5))
        #expect(try Self.decoded(later).expiresIn == 3598)
        #expect(Self.storage(later) != Self.storage(first))
        // An earlier second asked again (a caller whose clock reading was taken before another's) is rendered again,
        // not answered with the later rendering.
        #expect(try Self.decoded(BrokerRoutes.tokenResponse(prepared, at: Self.at(0.5))).expiresIn == 3599)
    }

    @Test("the prepared head frames the body: Content-Length, Content-Type, no-store, HTTP/1.1")
    func preparedHead() throws {
        let prepared = Self.prepared(lifetime: 10)
        for (instant, expiresIn) in [(0.0, 10), (0.5, 9), (9.5, 0), (30.0, 0)] {
            let response = BrokerRoutes.tokenResponse(prepared, at: Self.at(instant))
            let head = try #require(response.preparedHead)
            let body = try #require(response.body)
            #expect(head.version == .http1_1)
            #expect(head.status == .ok)
            #expect(head.headers["Content-Length"] == [String(body.readableBytes)])
            #expect(head.headers["Content-Type"] == ["application/json"])
            #expect(head.headers["Cache-Control"] == ["no-store"])
            let decoded = try Self.decoded(response)
            #expect(decoded.expiresIn == expiresIn)
            #expect(decoded.headers == ["Authorization": "Bearer fake-token", "X-Personio-App-ID": "fake-app"])
        }
    }
}
