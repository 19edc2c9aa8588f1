import Foundation
import PersonioClient
import PersonioStandIn
import Testing

/// A token call's time-out holds while Swift's cooperative pool is busy.
///
/// AsyncHTTPClient's `async` `execute(_:deadline:)` hands its deadline to a `Task`, which waits for a pool thread;
/// the answer, read on the event loop meanwhile, won, and the exchange succeeded seconds after its time-out (1 run
/// in 8 of `ErrorMappingTests.latencyBeyondTheTimeoutIsUnavailable` in the full suite, while other tests held the
/// pool). `PersonioAuthClient` now decides the time-out on the event loop. This test holds every pool thread of the
/// process for about 2.5 s, which would slow any test running beside it, so it runs only when asked for, alone:
/// `CONNVAULT_STARVE_POOL=1 swift test --skip-build --filter PoolStarvationTests`.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["CONNVAULT_STARVE_POOL"] == "1"))
struct PoolStarvationTests {
    @Test func anAnswerAfterTheTimeOutIsUnavailableWhileThePoolIsBusy() async throws {
        try await withFixture(timeout: .milliseconds(200)) { fixture in
            fixture.standIn.setLatency(.seconds(1))
            let started = ContinuousClock.now
            async let outcome = fixture.exchangeError(fixture.credentials(.v1))
            while fixture.standIn.calls(.v1Auth) == 0 && ContinuousClock.now - started < .seconds(10) {
                try await Task.sleep(for: .milliseconds(5))
            }
            try #require(fixture.standIn.calls(.v1Auth) == 1)
            // Hold every pool thread past the stand-in's answer; each job ends by itself.
            for _ in 0..<ProcessInfo.processInfo.activeProcessorCount {
                Task.detached { usleep(2_500_000) }
            }
            let error = await outcome
            #expect(error?.code == .unavailable, "the exchange ended after \(ContinuousClock.now - started)")
            #expect(error?.message.contains("did not answer within") == true)
        }
    }
}
