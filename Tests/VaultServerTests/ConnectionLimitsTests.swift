import NIOCore
import NIOEmbedded
import Testing

@testable import VaultServer

@Suite("Connection caps and time-outs")
struct ConnectionLimitsTests {
    // MARK: - Caps

    @Test("the total cap keeps the reserve and never exceeds what the descriptor limit leaves")
    func totalCap() {
        let limits = ConnectionLimits(perUID: 64, total: nil, reservedDescriptors: 100)
        #expect(limits.totalCap(descriptorLimit: 300) == 200)
        #expect(limits.totalCap(descriptorLimit: 50) == 0)
        #expect(
            ConnectionLimits(perUID: 64, total: 150, reservedDescriptors: 100).totalCap(descriptorLimit: 300) == 150
        )
        #expect(
            ConnectionLimits(perUID: 64, total: 500, reservedDescriptors: 100).totalCap(descriptorLimit: 300) == 200
        )
    }

    @Test("one uid is refused at its cap per socket; others, root and admins are not")
    func perUID() throws {
        let limiter = ConnectionLimiter(perUID: 2, total: 3)
        let first = try limiter.admit(socket: "app", uid: 65534, standing: .unprivileged).get()
        _ = try limiter.admit(socket: "app", uid: 65534, standing: .unprivileged).get()
        #expect(throws: ConnectionLimiterRefusal(.perUID)) {
            try limiter.admit(socket: "app", uid: 65534, standing: .unprivileged).get()
        }
        // The third slot of the total is another uid's.
        _ = try limiter.admit(socket: "app", uid: 4242, standing: .unprivileged).get()
        #expect(throws: ConnectionLimiterRefusal(.total)) {
            try limiter.admit(socket: "app", uid: 4243, standing: .unprivileged).get()
        }
        // Root and admins are outside the total; root outside every cap.
        for _ in 0..<10 { _ = try limiter.admit(socket: "app", uid: 0, standing: .privileged).get() }
        _ = try limiter.admit(socket: "admin", uid: 1000, standing: .admin).get()
        _ = try limiter.admit(socket: "admin", uid: 1000, standing: .admin).get()
        #expect(throws: ConnectionLimiterRefusal(.perUID)) {
            try limiter.admit(socket: "admin", uid: 1000, standing: .admin).get()
        }
        #expect(limiter.counts(socket: "app", uid: 65534) == (total: 3, uid: 2))
        limiter.release(first)
        #expect(limiter.counts(socket: "app", uid: 65534) == (total: 2, uid: 1))
        _ = try limiter.admit(socket: "app", uid: 4243, standing: .unprivileged).get()
    }

    // MARK: - Time-outs

    static let timeouts = ConnectionTimeouts(head: .seconds(10), body: .seconds(30), idle: .seconds(60))

    final class Closed: @unchecked Sendable {
        // @unchecked Sendable: touched only on the embedded loop's (the test's) thread.
        var count = 0
    }

    func deadlines() -> (ConnectionDeadlines, EmbeddedEventLoop, Closed) {
        let loop = EmbeddedEventLoop()
        let deadlines = ConnectionDeadlines(timeouts: Self.timeouts, eventLoop: loop)
        let closed = Closed()
        deadlines.start { closed.count += 1 }
        return (deadlines, loop, closed)
    }

    @Test("a connection that never sends a byte is closed after the idle time-out")
    func idleWithoutRequest() {
        let (deadlines, loop, closed) = self.deadlines()
        defer { deadlines.stop() }
        loop.advanceTime(by: .seconds(59))
        #expect(closed.count == 0)
        loop.advanceTime(by: .seconds(1))
        #expect(closed.count == 1)
    }

    @Test("a head that a read leaves incomplete is cut off at the head time-out")
    func slowHead() {
        let (deadlines, loop, closed) = self.deadlines()
        defer { deadlines.stop() }
        deadlines.bytesRead()
        deadlines.readEnded()
        loop.advanceTime(by: .seconds(9))
        deadlines.bytesRead()
        deadlines.readEnded()
        #expect(closed.count == 0)
        // Measured from the first byte: more bytes do not extend it.
        loop.advanceTime(by: .seconds(1))
        #expect(closed.count == 1)
    }

    @Test("a body that does not arrive in time is cut off at the body time-out")
    func slowBody() {
        let (deadlines, loop, closed) = self.deadlines()
        defer { deadlines.stop() }
        deadlines.bytesRead()
        deadlines.headReceived()
        deadlines.readEnded()
        loop.advanceTime(by: .seconds(29))
        #expect(closed.count == 0)
        loop.advanceTime(by: .seconds(1))
        #expect(closed.count == 1)
    }

    @Test("whole requests in one read arm no timer; a busy connection is never idle; a long answer is not timed out")
    func wholeRequests() {
        let (deadlines, loop, closed) = self.deadlines()
        defer { deadlines.stop() }
        for _ in 0..<5 {
            deadlines.bytesRead()
            deadlines.headReceived()
            deadlines.requestReceived()
            deadlines.responseFinished()
            deadlines.readEnded()
            loop.advanceTime(by: .seconds(40))
        }
        #expect(closed.count == 0)
        deadlines.bytesRead()
        deadlines.headReceived()
        deadlines.requestReceived()
        deadlines.readEnded()
        loop.advanceTime(by: .seconds(600))
        #expect(closed.count == 0, "a response in progress was timed out")
        deadlines.responseFinished()
        // Lazily checked: closed between one and two idle periods after the last request.
        loop.advanceTime(by: .seconds(120))
        #expect(closed.count == 1)
    }
}
