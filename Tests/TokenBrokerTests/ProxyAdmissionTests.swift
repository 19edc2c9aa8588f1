import PersonioClient
import Synchronization
import TestSupport
import Testing
import VaultCore
import VaultTestSupport

@testable import TokenBroker

/// The per-uid cap on proxied requests in flight, as a value: how many tickets each uid gets, that a slot comes back
/// exactly once, and that concurrent callers never get more than their share.
@Suite("Proxy admission")
struct ProxyAdmissionTests {
    /// Whether `admit` gave a ticket (tickets are not copyable, so `#expect` cannot capture one itself).
    static func admitted(_ ticket: borrowing ProxyAdmission.Ticket?) -> Bool { ticket != nil }

    /// Whether `admission` admits one more request of `uid` now; a ticket it gives is released at once.
    static func admits(_ admission: ProxyAdmission, uid: UInt32) -> Bool { Self.admitted(admission.admit(uid: uid)) }

    @Test("a uid gets exactly its limit of tickets; a released one lets the next request in")
    func limitPerUID() {
        let admission = ProxyAdmission(limitPerUID: 3)
        var first = admission.admit(uid: 1000)
        let second = admission.admit(uid: 1000)
        let third = admission.admit(uid: 1000)
        let allAdmitted = Self.admitted(first) && Self.admitted(second) && Self.admitted(third)
        #expect(allAdmitted)
        #expect(admission.inFlight(uid: 1000) == 3)
        #expect(!Self.admits(admission, uid: 1000))
        #expect(!Self.admits(admission, uid: 1000))
        #expect(admission.inFlight(uid: 1000) == 3, "a refusal takes no slot")
        first?.release()
        #expect(admission.inFlight(uid: 1000) == 2)
        let fourth = admission.admit(uid: 1000)
        let fourthAdmitted = Self.admitted(fourth)
        #expect(fourthAdmitted)
        #expect(!Self.admits(admission, uid: 1000))
        _ = consume second
        _ = consume third
        _ = consume fourth
        #expect(admission.inFlight(uid: 1000) == 0)
    }

    @Test("uids do not share slots: one at its limit leaves the others theirs")
    func independentUIDs() {
        let admission = ProxyAdmission(limitPerUID: 2)
        let greedy1 = admission.admit(uid: 0)
        let greedy2 = admission.admit(uid: 0)
        let greedyAdmitted = Self.admitted(greedy1) && Self.admitted(greedy2)
        #expect(greedyAdmitted)
        #expect(!Self.admits(admission, uid: 0))
        var other = admission.admit(uid: 65534)
        let third = admission.admit(uid: 1000)
        let othersAdmitted = Self.admitted(other) && Self.admitted(third)
        #expect(othersAdmitted)
        #expect(admission.inFlight(uid: 0) == 2 && admission.inFlight(uid: 65534) == 1)
        #expect(admission.trackedUIDs == 3)
        other?.release()
        #expect(admission.inFlight(uid: 65534) == 0)
        #expect(admission.trackedUIDs == 2, "a uid's entry goes when its count reaches zero")
        #expect(!Self.admits(admission, uid: 0), "another uid's release gives this one nothing")
        _ = consume greedy1
        _ = consume greedy2
        _ = consume third
        #expect(admission.trackedUIDs == 0)
    }

    @Test("a ticket gives its slot back once: a second release, and the end of the ticket, do nothing more")
    func releaseOnce() {
        let admission = ProxyAdmission(limitPerUID: 2)
        var ticket = admission.admit(uid: 42)
        let held = admission.admit(uid: 42)
        #expect(admission.inFlight(uid: 42) == 2)
        ticket?.release()
        ticket?.release()
        ticket?.release()
        #expect(admission.inFlight(uid: 42) == 1, "three releases of one ticket free one slot")
        ticket = nil
        #expect(admission.inFlight(uid: 42) == 1, "destroying a released ticket frees nothing")
        _ = consume held
        #expect(admission.inFlight(uid: 42) == 0, "a ticket dropped unreleased frees its slot")
        #expect(admission.trackedUIDs == 0)
    }

    @Test("a ticket moved into a holder keeps its slot until the holder releases it")
    func ticketMovesWithItsRequest() {
        final class Request {
            var ticket: ProxyAdmission.Ticket?
            init(_ ticket: consuming ProxyAdmission.Ticket?) { self.ticket = ticket }
            func ended() { self.ticket?.release() }
        }
        let admission = ProxyAdmission(limitPerUID: 1)
        guard let ticket = admission.admit(uid: 7) else {
            Issue.record("the first request was refused")
            return
        }
        let request = Request(ticket)
        #expect(!Self.admits(admission, uid: 7))
        #expect(admission.inFlight(uid: 7) == 1)
        request.ended()
        request.ended()
        #expect(admission.inFlight(uid: 7) == 0)
        #expect(Self.admits(admission, uid: 7))
    }

    @Test("the refusal is 429 rate_limited with Retry-After 1, naming the limit")
    func refusal() {
        let refusal = ProxyAdmission(limitPerUID: 5).refusal
        #expect(refusal.code == .rateLimited)
        #expect(refusal.retryAfter == 1)
        #expect(refusal.message.contains("5 proxied requests"))
        #expect(ProxyAdmission.defaultLimitPerUID == 32)
    }

    @Test("the broker's admission has the limit it was built with, 32 by default")
    func brokerLimit() async throws {
        try await VaultFixture.with { fixture, vault in
            let auth = PersonioAuthClient(logger: fixture.logs.logger(), timeout: .seconds(1))
            let standard = TokenBroker(vault: vault, auth: auth, logger: fixture.logs.logger())
            let narrow = TokenBroker(vault: vault, auth: auth, proxyLimitPerUID: 3, logger: fixture.logs.logger())
            #expect(standard.proxyAdmission.limitPerUID == 32)
            #expect(narrow.proxyAdmission.limitPerUID == 3)
            try await auth.shutdown()
        }
    }

    /// What the holders of one uid's tickets count themselves.
    final class Holders: Sendable {
        /// Tickets held right now.
        let held = Atomic<Int>(0)
        /// The most ever held at once.
        let peak = Atomic<Int>(0)
        /// Calls of `admit`, admitted or not.
        let attempts = Atomic<Int>(0)

        func took() {
            let now = self.held.add(1, ordering: .sequentiallyConsistent).newValue
            var seen = self.peak.load(ordering: .sequentiallyConsistent)
            while seen < now {
                let (exchanged, original) = self.peak.compareExchange(
                    expected: seen,
                    desired: now,
                    ordering: .sequentiallyConsistent
                )
                if exchanged { break }
                seen = original
            }
        }

        func gaveBack() { self.held.subtract(1, ordering: .sequentiallyConsistent) }
    }

    @Test("many tasks admitting at once never hold more than the limit of one uid, and every slot comes back")
    func concurrentAdmits() async {
        let limit = 4
        let admission = ProxyAdmission(limitPerUID: limit)
        let uids: [UInt32] = [0, 1000, 65534]
        let holders = uids.map { _ in Holders() }
        await withTaskGroup(of: Void.self) { group in
            for task in 0..<48 {
                let index = task % uids.count
                group.addTask {
                    for _ in 0..<300 {
                        holders[index].attempts.add(1, ordering: .relaxed)
                        guard var ticket = admission.admit(uid: uids[index]) else {
                            await Task.yield()
                            continue
                        }
                        // Counted after the admission and before the release, so the count never exceeds what the
                        // admission has handed out.
                        holders[index].took()
                        await Task.yield()
                        holders[index].gaveBack()
                        ticket.release()
                    }
                }
            }
        }
        #expect(holders.map { $0.attempts.load(ordering: .relaxed) }.reduce(0, +) == 48 * 300)
        for index in uids.indices {
            let most = holders[index].peak.load(ordering: .sequentiallyConsistent)
            #expect(most <= limit, "uid \(uids[index]) held \(most) tickets at once")
            #expect(most >= 1)
            #expect(admission.inFlight(uid: uids[index]) == 0)
        }
        #expect(admission.trackedUIDs == 0)
    }
}
