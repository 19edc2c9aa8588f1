import VaultAPI

/// A point in time after which a request gives up.
struct Deadline: Sendable {
    let instant: ContinuousClock.Instant
    let timeout: Duration

    init(after timeout: Duration) {
        self.timeout = timeout
        self.instant = ContinuousClock.now.advanced(by: timeout)
    }

    var hasPassed: Bool { ContinuousClock.now >= self.instant }

    /// Milliseconds left for `poll(2)`, rounded up so a sub-millisecond rest still waits.
    var pollMilliseconds: Int32 {
        let left = ContinuousClock.now.duration(to: self.instant)
        if left <= .zero { return 0 }
        return Int32(clamping: left.ceilingMilliseconds)
    }

    /// The time-out for messages: `30 s`, `250 ms`.
    var timeoutDescription: String { self.timeout.timeoutText }
}
