import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Writes one line per event to standard error: `time level label: message key=value …`.
///
/// Under systemd (`JOURNAL_STREAM` names standard error) each event goes to journald directly as a structured entry
/// (``JournalEntry``: `CONNECTION_ID=`, `CALLER_UID=`, `MESSAGE_ID=`, …). Should journald refuse it, the line is
/// written instead, without the time, since the journal stamps every line, and starting with its syslog priority
/// (`<3>` for errors, as `sd-daemon(3)` describes), so that `journalctl -p` filters by level. Each line goes out in a
/// single `write(2)`, so lines from concurrent tasks never interleave.
public struct StandardErrorLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level
    private let label: String
    private let journal: Bool

    /// - Parameters:
    ///   - label: The logger's label.
    ///   - level: The lowest level written.
    ///   - journal: Whether standard error is connected to the journal; nil checks `JOURNAL_STREAM`.
    public init(label: String, level: Logger.Level = .info, journal: Bool? = nil) {
        self.label = label
        self.logLevel = level
        self.journal = journal ?? (getenv("JOURNAL_STREAM") != nil)
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = self.metadata
        if let provided = self.metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let metadata = event.metadata { merged.merge(metadata) { _, new in new } }
        if self.journal, let journal = JournalSocket.shared {
            let entry = JournalEntry(
                label: self.label,
                priority: Self.syslogPriority(event.level),
                message: event.message.description,
                metadata: merged
            )
            if journal.send(entry) { return }
        }
        let line = Self.format(
            level: event.level,
            label: self.label,
            message: event.message.description,
            metadata: merged,
            journal: self.journal,
            time: self.journal ? nil : Self.timestamp()
        )
        var bytes = Array(line.utf8)
        bytes.withUnsafeMutableBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(STDERR_FILENO, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 && errno == EINTR { continue }
                guard written > 0 else { return }
                offset += written
            }
        }
    }

    /// One log line, ending in a newline. Line breaks inside the message or metadata are escaped so that a value can
    /// never forge a line of its own.
    static func format(
        level: Logger.Level,
        label: String,
        message: String,
        metadata: Logger.Metadata,
        journal: Bool,
        time: String?
    ) -> String {
        var line = journal ? "<\(Self.syslogPriority(level))>" : ""
        if let time { line += "\(time) " }
        line += "\(level) \(label): \(Self.escaped(message))"
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            line += " \(key)=\(Self.escaped(value.description))"
        }
        return line + "\n"
    }

    static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    static func escaped(_ text: String) -> String {
        guard text.contains(where: { $0 == "\n" || $0 == "\r" }) else { return text }
        return text.replacing("\n", with: "\\n").replacing("\r", with: "\\r")
    }

    /// `2025-01-31T12:34:56.789Z`, in UTC.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var time = tm()
        var seconds = now.tv_sec
        gmtime_r(&seconds, &time)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let milliseconds = Int(now.tv_nsec / 1_000_000)
        let fraction =
            milliseconds < 10 ? "00\(milliseconds)" : milliseconds < 100 ? "0\(milliseconds)" : "\(milliseconds)"
        return
            "\(time.tm_year + 1900)-\(two(time.tm_mon + 1))-\(two(time.tm_mday))T\(two(time.tm_hour)):\(two(time.tm_min)):\(two(time.tm_sec)).\(fraction)Z"
    }
}
