import Logging
import PersonioClient
import TestSupport
import Testing
import VaultAPI
import VaultCore
import VaultTestSupport

@testable import TokenBroker

/// Revocation calls count toward a connection's Personio call limit (DESIGN §6: every call counts), so a storm of
/// revocations cannot hammer Personio, and token calls see what the revoker spent.
@Suite struct RevocationCallLimitTests {
    static var policy: RefreshPolicy {
        var policy = RefreshPolicy()
        policy.callLimit = 3
        return policy
    }

    @Test("with a broker entry, revocations use the entry's budget, and token calls see them")
    func countedInTheEntry() {
        // The entry's window is the connection's: shared by its tokens of every scope and its revocations.
        var limiter = CallLimiter()
        var state = TokenState<Int>(policy: Self.policy)
        var other = TokenState<Int>(policy: Self.policy)
        let now = ContinuousClock.now
        var granted: [Bool] = []
        for _ in 0..<4 { granted.append(limiter.reserve(at: now, policy: Self.policy)) }
        #expect(granted == [true, true, true, false])
        guard case .fail(_, let lastError) = state.tokenRequested(now: now, minTTL: .zero, limiter: &limiter) else {
            Issue.record("a token call went ahead past the limit the revocations used up")
            return
        }
        #expect(lastError?.contains("rate limit") == true)
        guard case .fail = other.tokenRequested(now: now, minTTL: .zero, limiter: &limiter) else {
            Issue.record("another scope's token call went ahead past the connection's limit")
            return
        }
        let afterTheWindow = limiter.reserve(at: now + .seconds(61), policy: Self.policy)
        #expect(afterTheWindow)
    }

    @Test("without an entry (a disconnected connection), the revoker's own window counts them per connection")
    func countedByTheRevoker() async throws {
        try await VaultFixture.with { fixture, vault in
            let auth = PersonioAuthClient(logger: fixture.logs.logger(), timeout: .seconds(1))
            let broker = TokenBroker(vault: vault, auth: auth, logger: fixture.logs.logger()) { _ in Self.policy }
            #expect((0..<3).allSatisfy { _ in broker.reserveRevocationCall("gone", provider: .personioV2) })
            #expect(!broker.reserveRevocationCall("gone", provider: .personioV2))
            #expect(broker.reserveRevocationCall("other", provider: .personioV2))
            try await auth.shutdown()
        }
    }
}
