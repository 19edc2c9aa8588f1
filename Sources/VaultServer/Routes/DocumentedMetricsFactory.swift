import CoreMetrics
import Prometheus
import VaultMetrics

/// swift-prometheus' factory, with each series' `# HELP` line taken from ``MetricNames/help``.
///
/// `PrometheusMetricsFactory` registers every series without help text; the registry refuses (traps on) one name
/// registered with two help texts, so every series of this daemon is created through this factory, never through the
/// plain one.
struct DocumentedMetricsFactory: MetricsFactory {
    let prometheus: PrometheusMetricsFactory

    init(registry: PrometheusCollectorRegistry) {
        self.prometheus = PrometheusMetricsFactory(registry: registry)
    }

    private func descriptor(_ label: String) -> MetricNameDescriptor? {
        MetricNames.help[label].map { MetricNameDescriptor(metricName: label, unitName: "", helpText: $0) }
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        guard let descriptor = self.descriptor(label) else {
            return self.prometheus.makeCounter(label: label, dimensions: dimensions)
        }
        return dimensions.isEmpty
            ? self.prometheus.registry.makeCounter(descriptor: descriptor)
            : self.prometheus.registry.makeCounter(descriptor: descriptor, labels: dimensions)
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        self.prometheus.makeFloatingPointCounter(label: label, dimensions: dimensions)
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard !aggregate, let descriptor = self.descriptor(label) else {
            return self.prometheus.makeRecorder(label: label, dimensions: dimensions, aggregate: aggregate)
        }
        return dimensions.isEmpty
            ? self.prometheus.registry.makeGauge(descriptor: descriptor)
            : self.prometheus.registry.makeGauge(descriptor: descriptor, labels: dimensions)
    }

    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        guard let descriptor = self.descriptor(label) else {
            return self.prometheus.makeMeter(label: label, dimensions: dimensions)
        }
        return dimensions.isEmpty
            ? self.prometheus.registry.makeGauge(descriptor: descriptor)
            : self.prometheus.registry.makeGauge(descriptor: descriptor, labels: dimensions)
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        self.prometheus.makeTimer(label: label, dimensions: dimensions)
    }

    func destroyCounter(_ handler: any CounterHandler) {
        self.prometheus.destroyCounter(handler)
    }

    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {
        self.prometheus.destroyFloatingPointCounter(handler)
    }

    func destroyRecorder(_ handler: any RecorderHandler) {
        self.prometheus.destroyRecorder(handler)
    }

    func destroyMeter(_ handler: any MeterHandler) {
        self.prometheus.destroyMeter(handler)
    }

    func destroyTimer(_ handler: any TimerHandler) {
        self.prometheus.destroyTimer(handler)
    }
}
