import CoreMetrics
import Prometheus
import Synchronization
import VaultAPI
import VaultMetrics

#if canImport(Glibc)
import Glibc
#endif

/// The cost of counting one request: the request counter as the daemon has it (swift-metrics over swift-prometheus,
/// held counters) against the hand-written one it replaced, and a broker counter increment.
///
///     metrics-bench [prometheus|handwritten|broker|none] [ITERATIONS]
///
/// Prints nanoseconds per call. Run under `perf stat -e probe_libc:malloc` (Benchmarks/allocations.sh sets the
/// probe up) with two iteration counts to get allocations per call: setup allocates, the loop must not.
@main
enum MetricsBench {
    static func main() {
        let arguments = CommandLine.arguments
        let mode = arguments.count > 1 ? arguments[1] : "prometheus"
        let iterations = arguments.count > 2 ? Int(arguments[2]) ?? 10_000_000 : 10_000_000
        // Route names as the router holds them: built once, read on every request.
        let routes = ["GET /v1/connections/{id}/token", "GET /v1/connections/{id}/proxy/{path...}", "GET /v1/health"]
        let record: (String, String, UInt) -> Void
        let registry = PrometheusCollectorRegistry()
        switch mode {
        case "prometheus":
            let counters = RequestCounters(factory: PrometheusMetricsFactory(registry: registry))
            record = { counters.counter(socket: $0, route: $1, status: $2).increment() }
        case "handwritten":
            let counters = HandWrittenCounters()
            record = { counters.record(socket: $0, route: $1, status: $2) }
        case "broker":
            let broker = BrokerMetrics(factory: PrometheusMetricsFactory(registry: registry))
            record = { _, _, _ in broker.cacheHit() }
        default:
            record = { _, _, _ in }
        }
        for route in routes { record("app", route, 200) }
        let start = ContinuousClock.now
        for index in 0..<iterations {
            record("app", routes[index % 3 == 0 ? 0 : 1], 200)
        }
        let elapsed = ContinuousClock.now - start
        let nanoseconds = elapsed.inSeconds * 1e9 / Double(max(1, iterations))
        print("\(mode): \(iterations) calls, \((nanoseconds * 100).rounded() / 100) ns per call")
        if mode == "prometheus" || mode == "broker" {
            // Keeps the series alive to the end and shows they counted.
            print(registry.emitToString().split(separator: "\n").filter { $0.hasSuffix(" 0") == false }.count, "series")
        }
    }
}

/// The request counters before swift-metrics (ServerMetrics as of the last release), kept as the baseline.
final class HandWrittenCounters: Sendable {
    struct Key: Hashable {
        var socket: String
        var route: String
        var status: UInt
    }

    private final class Shard: Sendable {
        let counts = Mutex<[Key: UInt64]>([:])
    }

    private let shards: [Shard] = (0..<8).map { _ in Shard() }

    func record(socket: String, route: String, status: UInt) {
        let shard = Int(UInt(bitPattern: pthread_self().hashValue) % 8)
        self.shards[shard].counts.withLock { $0[Key(socket: socket, route: route, status: status), default: 0] += 1 }
    }
}
