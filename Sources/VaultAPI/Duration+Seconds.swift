/// Conversions of a `Duration` to the units the daemon writes (metrics, `Retry-After`, `expires_in`, logs), written
/// once here instead of at each use.
extension Duration {
    /// The duration in seconds, with its fraction.
    public var inSeconds: Double {
        let (seconds, attoseconds) = self.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    /// Whole seconds, a fraction counting as one more (a positive duration is never 0): for `Retry-After`, which
    /// must not ask a client to come back before the wait is over.
    public var ceilingSeconds: Int {
        let (seconds, attoseconds) = self.components
        return Int(seconds) + (attoseconds > 0 ? 1 : 0)
    }

    /// Whole seconds, the fraction dropped (towards zero): for `expires_in`, which must not promise more than is left.
    public var wholeSeconds: Int {
        Int(self.components.seconds)
    }

    /// Whole microseconds, the rest dropped: for durations in logs.
    public var inMicroseconds: Int64 {
        let (seconds, attoseconds) = self.components
        return seconds * 1_000_000 + attoseconds / 1_000_000_000_000
    }

    /// Whole milliseconds, a fraction counting as one more: for `poll(2)`, so that a sub-millisecond rest still waits.
    public var ceilingMilliseconds: Int64 {
        let (seconds, attoseconds) = self.components
        return seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
    }

    /// A time-out as messages name it: `30 s`, `250 ms`.
    public var timeoutText: String {
        let (seconds, attoseconds) = self.components
        if attoseconds == 0 { return "\(seconds) s" }
        return "\(seconds * 1000 + attoseconds / 1_000_000_000_000_000) ms"
    }
}
