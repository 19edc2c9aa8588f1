import CoreMetrics
import Prometheus
import VaultAPI
import VaultMetrics

/// The daemon's metrics for `GET /metrics`: swift-metrics series in a Prometheus registry of this instance's own
/// (never the process-wide `MetricsSystem`, so that several daemons in one process count apart), rendered in
/// Prometheus' text format 0.0.4.
///
/// Request labels are the socket, the route pattern (never a concrete path: ids would make unbounded series, and a
/// path is request input) and the status code. Nothing here can hold a secret or a token.
public final class ServerMetrics: Sendable {
    /// The long-lived series: request counters here, the broker's through ``factory``.
    let registry: PrometheusCollectorRegistry
    /// Creates series in ``registry``, with their help text; hand it to every part that counts (``BrokerMetrics``).
    public let factory: any MetricsFactory
    private let requests: RequestCounters
    private let startedAt: ContinuousClock.Instant

    public init() {
        self.startedAt = .now
        self.registry = PrometheusCollectorRegistry()
        self.factory = DocumentedMetricsFactory(registry: self.registry)
        self.requests = RequestCounters(factory: self.factory)
    }

    /// The counter of answered requests of `socket`, `route` and `status`; a connection keeps it while its answers
    /// share both (``RequestCounters/counter(socket:route:status:)``).
    /// - Parameters:
    ///   - socket: `admin` or `app`.
    ///   - route: The route's name (`GET /v1/connections/{id}`), or a fixed word for requests that matched none.
    ///   - status: The status code sent.
    public func requestCounter(socket: String, route: String, status: UInt) -> CoreMetrics.Counter {
        self.requests.counter(socket: socket, route: route, status: status)
    }

    /// The exposition: every series of ``registry``, then the figures of `status` (connections by state, audit rows,
    /// key id, revocations pending; left out without one) and the uptime, read now.
    public func render(status: StatusView?) -> String {
        var buffer: [UInt8] = []
        self.registry.emit(into: &buffer)
        // Figures read at the scrape live in a registry of the scrape's own: a state that has no connection any more
        // is then absent, as it is from `status`, instead of showing its last count.
        let scrape = PrometheusCollectorRegistry()
        let factory = DocumentedMetricsFactory(registry: scrape)
        if let status {
            for (state, count) in status.byState.sorted(by: { $0.key < $1.key }) {
                Gauge(label: MetricNames.connections, dimensions: [("state", state)], factory: factory).record(count)
            }
            Gauge(label: MetricNames.auditEntries, factory: factory).record(status.auditEntries)
            Gauge(label: MetricNames.masterKeyID, factory: factory).record(status.masterKeyID)
            Gauge(label: MetricNames.pendingRevocations, factory: factory).record(status.pendingRevocations.count)
        }
        // Milliseconds are enough; and a shorter figure to read.
        let uptime = ((ContinuousClock.now - self.startedAt).inSeconds * 1000).rounded() / 1000
        Gauge(label: MetricNames.uptime, factory: factory).record(uptime)
        scrape.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }
}
