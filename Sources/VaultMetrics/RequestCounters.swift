import CoreMetrics
import VaultLocks

#if canImport(Glibc)
import Glibc
#endif

/// `connvault_http_requests_total`: requests answered, by socket, route pattern and status.
///
/// The counters already created are kept in shards picked by thread, so that event loops counting at the same time
/// rarely meet on one lock. A request looks its counter up here (the factory's own look-up would validate and copy
/// the labels under one lock for the whole process, and swift-metrics allocates a `Counter` per call), then adds to
/// it atomically outside the lock: no allocation once a socket, route and status has been seen.
public final class RequestCounters: Sendable {
    struct Key: Hashable {
        var socket: String
        var route: String
        var status: UInt
    }

    private final class Shard: Sendable {
        let counters = Locked<[Key: Counter]>([:])
    }

    private let shards: [Shard] = (0..<RequestCounters.shardCount).map { _ in Shard() }
    private static let shardCount = 8
    private let factory: any MetricsFactory

    /// - Parameter factory: Where the series live.
    public init(factory: any MetricsFactory) {
        self.factory = factory
    }

    /// The counter of answered requests of `socket`, `route` and `status`, for a caller that keeps it: a connection
    /// counts its requests without looking it up again while they share a route and a status.
    /// - Parameters:
    ///   - socket: `admin` or `app`.
    ///   - route: The route's name (`GET /v1/connections/{id}`), or a fixed word for requests that matched none.
    ///   - status: The status code sent.
    public func counter(socket: String, route: String, status: UInt) -> Counter {
        let shard = self.shards[Int(UInt(bitPattern: pthread_self().hashValue) % UInt(Self.shardCount))]
        let key = Key(socket: socket, route: route, status: status)
        return shard.counters.withLock { counters in
            if let counter = counters[key] { return counter }
            // Once per socket, route, status and shard: the factory hands every shard the same series.
            let counter = Counter(
                label: MetricNames.httpRequests,
                dimensions: [("socket", socket), ("route", route), ("status", String(status))],
                factory: self.factory
            )
            counters[key] = counter
            return counter
        }
    }
}
