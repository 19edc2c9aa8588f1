/// Where the broker's time comes from: the cached path's reading, back-off, call limits, and the sleeps of the
/// refresh loop and the revoker. Production uses ``SystemBrokerClock``; tests pass a manual clock and run in virtual
/// time. Instants are `ContinuousClock` instants, so tokens, limits and prepared responses keep one type.
public protocol BrokerClock: Sendable {
    /// The current instant.
    var now: ContinuousClock.Instant { get }
    /// Suspends until `deadline` has passed on this clock.
    /// - Throws: `CancellationError` when the task is cancelled first.
    func sleep(until deadline: ContinuousClock.Instant) async throws
}

/// The system's monotonic clock.
public struct SystemBrokerClock: BrokerClock {
    public init() {}

    @inlinable
    public var now: ContinuousClock.Instant { .now }

    public func sleep(until deadline: ContinuousClock.Instant) async throws {
        try await Task.sleep(until: deadline, clock: .continuous)
    }
}
