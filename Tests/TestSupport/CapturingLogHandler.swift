import Logging

/// A `LogHandler` that hands every event to a `LogCapture` instead of printing it.
public struct CapturingLogHandler: LogHandler {
    public let capture: LogCapture
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level = .trace

    public init(capture: LogCapture) {
        self.capture = capture
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = self.metadata
        if let provided = self.metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let metadata = event.metadata { merged.merge(metadata) { _, new in new } }
        self.capture.append(
            LogCapture.Entry(
                level: event.level,
                message: event.message.description,
                metadata: merged.mapValues { "\($0)" },
                source: event.source,
                error: event.error.map { String(describing: $0) }
            )
        )
    }
}
