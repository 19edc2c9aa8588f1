import Synchronization
import VaultAPI

#if canImport(Glibc)
import Glibc
#endif

/// Request counters for `GET /metrics`, rendered by hand in Prometheus' text format.
///
/// Labels are the socket, the route pattern (never a concrete path: ids would make unbounded series, and a path is
/// request input) and the status code. Nothing here can hold a secret or a token.
public final class ServerMetrics: Sendable {
    struct Key: Hashable, Comparable {
        var socket: String
        var route: String
        var status: UInt

        static func < (lhs: Key, rhs: Key) -> Bool {
            (lhs.socket, lhs.route, lhs.status) < (rhs.socket, rhs.route, rhs.status)
        }
    }

    /// Counters in shards picked by thread, so that event loops counting at the same time rarely meet on one lock;
    /// `render` adds the shards up.
    private let shards: [Shard] = (0..<ServerMetrics.shardCount).map { _ in Shard() }
    private static let shardCount = 8

    private final class Shard: Sendable {
        let counts = Mutex<[Key: UInt64]>([:])
    }
    private let startedAt: ContinuousClock.Instant

    public init() {
        self.startedAt = .now
    }

    /// Counts one answered request.
    /// - Parameters:
    ///   - socket: `admin` or `app`.
    ///   - route: The route's name (`GET /v1/connections/{id}`), or a fixed word for requests that matched none.
    ///   - status: The status code sent.
    public func record(socket: String, route: String, status: UInt) {
        let shard = Int(UInt(bitPattern: pthread_self().hashValue) % UInt(Self.shardCount))
        self.shards[shard].counts.withLock { $0[Key(socket: socket, route: route, status: status), default: 0] += 1 }
    }

    /// The exposition: request counters, connections by state (from `status`), uptime.
    public func render(status: StatusView?) -> String {
        var text = ""
        text += "# HELP connvault_http_requests_total HTTP requests answered, by socket, route and status.\n"
        text += "# TYPE connvault_http_requests_total counter\n"
        var requests: [Key: UInt64] = [:]
        for shard in self.shards {
            requests.merge(shard.counts.withLock { $0 }) { $0 + $1 }
        }
        for (key, count) in requests.sorted(by: { $0.key < $1.key }) {
            text +=
                "connvault_http_requests_total{socket=\"\(Self.escaped(key.socket))\",route=\"\(Self.escaped(key.route))\",status=\"\(key.status)\"} \(count)\n"
        }
        if let status {
            text += "# HELP connvault_connections Connections by lifecycle state.\n"
            text += "# TYPE connvault_connections gauge\n"
            for (state, count) in status.byState.sorted(by: { $0.key < $1.key }) {
                text += "connvault_connections{state=\"\(Self.escaped(state))\"} \(count)\n"
            }
            text += "# HELP connvault_audit_entries Rows in the audit trail.\n"
            text += "# TYPE connvault_audit_entries gauge\n"
            text += "connvault_audit_entries \(status.auditEntries)\n"
            text += "# HELP connvault_master_key_id The active master key's id.\n"
            text += "# TYPE connvault_master_key_id gauge\n"
            text += "connvault_master_key_id \(status.masterKeyID)\n"
        }
        let uptime = ContinuousClock.now - self.startedAt
        let seconds = Double(uptime.components.seconds) + Double(uptime.components.attoseconds) / 1e18
        text += "# HELP connvault_process_uptime_seconds Seconds since the daemon started.\n"
        text += "# TYPE connvault_process_uptime_seconds gauge\n"
        text += "connvault_process_uptime_seconds \(Self.formatted(seconds))\n"
        return text
    }

    /// A label value with `\`, `"` and line breaks escaped, as the text format requires.
    static func escaped(_ value: String) -> String {
        var result = ""
        for character in value {
            switch character {
            case "\\": result += "\\\\"
            case "\"": result += "\\\""
            case "\n": result += "\\n"
            default: result.append(character)
            }
        }
        return result
    }

    /// Seconds with millisecond precision, without Foundation's formatters.
    static func formatted(_ seconds: Double) -> String {
        let milliseconds = Int64((seconds * 1000).rounded())
        let fraction = String(milliseconds % 1000)
        return "\(milliseconds / 1000).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)"
    }
}
