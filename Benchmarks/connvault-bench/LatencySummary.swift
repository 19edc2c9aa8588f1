/// Percentiles of a set of request latencies.
struct LatencySummary: Sendable {
    let count: Int
    let p50Microseconds: Double
    let p99Microseconds: Double
    let maxMicroseconds: Double

    /// - Parameter nanoseconds: one latency per request, in any order.
    init(nanoseconds: [UInt64]) {
        let sorted = nanoseconds.sorted()
        self.count = sorted.count
        func percentile(_ fraction: Double) -> Double {
            guard !sorted.isEmpty else { return .nan }
            // Nearest rank: the smallest value with at least `fraction` of all values at or below it.
            let rank = Int((fraction * Double(sorted.count)).rounded(.up))
            return Double(sorted[max(rank, 1) - 1]) / 1000
        }
        self.p50Microseconds = percentile(0.50)
        self.p99Microseconds = percentile(0.99)
        self.maxMicroseconds = sorted.last.map { Double($0) / 1000 } ?? .nan
    }
}
