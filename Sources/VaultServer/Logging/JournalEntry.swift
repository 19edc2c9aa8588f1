import Logging

#if canImport(Glibc)
import Glibc
#endif

/// One log event as a journal entry in journald's native protocol (`systemd.journal-fields(7)`), with the event's
/// metadata as fields of its own: `connection.id` becomes `CONNECTION_ID=`, so `journalctl CONNECTION_ID=acme` finds
/// every line about a connection. The caller's uid (`actor.uid`, `peer.uid`) is also `CALLER_UID=`, and lifecycle
/// events carry a `MESSAGE_ID=` from ``JournalEntry/messageIDs``.
struct JournalEntry {
    /// The encoded datagram.
    private(set) var bytes: [UInt8] = []

    /// Stable ids for the lifecycle events, so that `journalctl MESSAGE_ID=…` finds them whatever the wording of a
    /// later version. Keyed by the event's log message.
    static let messageIDs: [String: String] = [
        "listening": "6f1c3f5e0b8a4d2c9e7a1b3d5f7092a1",
        "reloading": "6f1c3f5e0b8a4d2c9e7a1b3d5f7092a2",
        "reloaded": "6f1c3f5e0b8a4d2c9e7a1b3d5f7092a3",
        "stopped": "6f1c3f5e0b8a4d2c9e7a1b3d5f7092a4",
        "connection created": "6f1c3f5e0b8a4d2c9e7a1b3d5f7092b1",
        "connection edited": "6f1c3f5e0b8a4d2c9e7a1b3d5f7092b2",
        "connection disabled": "6f1c3f5e0b8a4d2c9e7a1b3d5f7092b3",
        "connection enabled": "6f1c3f5e0b8a4d2c9e7a1b3d5f7092b4",
        "connection reset": "6f1c3f5e0b8a4d2c9e7a1b3d5f7092b5",
        "connection disconnected": "6f1c3f5e0b8a4d2c9e7a1b3d5f7092b6",
        "master key rotated": "6f1c3f5e0b8a4d2c9e7a1b3d5f7092c1",
        "finished an interrupted master key rotation": "6f1c3f5e0b8a4d2c9e7a1b3d5f7092c2",
        "token revoked at Personio": "6f1c3f5e0b8a4d2c9e7a1b3d5f7092d1",
    ]

    /// Names the entry sets itself; metadata with one of these names is prefixed with `META_`.
    static let reservedNames: Set<String> = [
        "MESSAGE", "MESSAGE_ID", "PRIORITY", "SYSLOG_IDENTIFIER", "CALLER_UID", "LOGGER",
    ]

    /// Metadata keys whose value is the uid of whoever asked for the event.
    static let callerKeys = ["actor.uid", "peer.uid"]

    init(label: String, priority: Int, message: String, metadata: Logger.Metadata) {
        self.append("MESSAGE", message)
        self.append("PRIORITY", "\(priority)")
        self.append("SYSLOG_IDENTIFIER", "connvaultd")
        self.append("LOGGER", label)
        if let id = Self.messageIDs[message] { self.append("MESSAGE_ID", id) }
        if let caller = Self.callerKeys.lazy.compactMap({ metadata[$0] }).first {
            self.append("CALLER_UID", caller.description)
        }
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            guard var name = Self.fieldName(key) else { continue }
            if Self.reservedNames.contains(name) { name = "META_" + name }
            self.append(name, value.description)
        }
    }

    /// A journal field name for a metadata key: upper case, `_` for anything but letters and digits, no leading `_`
    /// or digit (names starting with `_` are journald's own and dropped from clients), at most 64 characters.
    static func fieldName(_ key: String) -> String? {
        var name = ""
        for scalar in key.unicodeScalars {
            switch scalar {
            case "a"..."z": name.unicodeScalars.append(Unicode.Scalar(scalar.value - 32)!)
            case "A"..."Z", "0"..."9": name.unicodeScalars.append(scalar)
            default: name.append("_")
            }
        }
        while let first = name.first, first == "_" || first.isNumber { name.removeFirst() }
        guard !name.isEmpty else { return nil }
        return String(name.prefix(64))
    }

    /// `NAME=value\n`; a value with a line break is sent in the binary form (`NAME\n`, 64-bit little-endian length,
    /// value, `\n`), so no value can forge a field of its own.
    private mutating func append(_ name: String, _ value: String) {
        self.bytes.append(contentsOf: name.utf8)
        if value.utf8.contains(UInt8(ascii: "\n")) {
            self.bytes.append(UInt8(ascii: "\n"))
            var length = UInt64(value.utf8.count).littleEndian
            withUnsafeBytes(of: &length) { self.bytes.append(contentsOf: $0) }
        } else {
            self.bytes.append(UInt8(ascii: "="))
        }
        self.bytes.append(contentsOf: value.utf8)
        self.bytes.append(UInt8(ascii: "\n"))
    }
}

/// The datagram socket to journald (`/run/systemd/journal/socket`), opened once per process.
final class JournalSocket: Sendable {
    static let path = "/run/systemd/journal/socket"

    /// The process's journal socket, when standard error is connected to the journal (`JOURNAL_STREAM` names its
    /// device and inode, as `sd_journal_stream_fd(3)` describes) and journald's socket accepts a datagram.
    static let shared: JournalSocket? = {
        guard let stream = getenv("JOURNAL_STREAM").map({ String(cString: $0) }), JournalSocket.isStandardError(stream)
        else { return nil }
        return JournalSocket(path: JournalSocket.path)
    }()

    private let descriptor: Int32

    private init?(path: String) {
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return nil }
        let connected = Kernel.withUnixAddress(path) { address, length in connect(descriptor, address, length) }
        guard connected == 0 else {
            close(descriptor)
            return nil
        }
        self.descriptor = descriptor
    }

    /// Whether `stream` (`DEVICE:INODE`) is standard error's file.
    static func isStandardError(_ stream: String) -> Bool {
        let parts = stream.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var info = stat()
        guard fstat(STDERR_FILENO, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }

    /// Sends one entry; false when journald did not take it (the caller then writes the plain line).
    func send(_ entry: JournalEntry) -> Bool {
        entry.bytes.withUnsafeBytes { buffer in
            while true {
                let sent = Glibc.send(self.descriptor, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL))
                if sent < 0 && errno == EINTR { continue }
                return sent == buffer.count
            }
        }
    }
}
