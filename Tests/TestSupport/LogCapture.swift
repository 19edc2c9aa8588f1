import Logging
import VaultLocks

/// Collects every log line of the loggers it makes, in memory, so that tests can assert what was logged and,
/// above all, what never was (a secret).
public final class LogCapture: Sendable {
    /// One captured log line.
    public struct Entry: Sendable, CustomStringConvertible {
        public var level: Logger.Level
        public var message: String
        /// The handler's metadata, the provider's and the call's, rendered as strings.
        public var metadata: [String: String]
        public var source: String
        /// The description of the error attached to the event, if any.
        public var error: String?

        /// The line as a text log would show it: level, message, sorted `key=value` pairs, error.
        public var description: String {
            var line = "\(self.level) \(self.message)"
            for (key, value) in self.metadata.sorted(by: { $0.key < $1.key }) { line += " \(key)=\(value)" }
            if let error = self.error { line += " error=\(error)" }
            return line
        }
    }

    private let storage = Locked<[Entry]>([])

    public init() {}

    /// A logger whose lines land here; `level` defaults to `.trace`, so that nothing escapes the capture.
    public func logger(label: String = "test", level: Logger.Level = .trace) -> Logger {
        var logger = Logger(label: label) { _ in CapturingLogHandler(capture: self) }
        logger.logLevel = level
        return logger
    }

    /// Every line so far, oldest first.
    public var entries: [Entry] { self.storage.withLock { $0 } }

    /// Every line so far, rendered with `Entry.description`.
    public var lines: [String] { self.entries.map(\.description) }

    func append(_ entry: Entry) {
        self.storage.withLock { $0.append(entry) }
    }
}
