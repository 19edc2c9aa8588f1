#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Wall-clock times as they are stored and shown: RFC 3339 in UTC, whole seconds.
package enum Timestamp {
    package static func now() -> String { Self.format(Date()) }

    package static func format(_ date: Date) -> String { date.ISO8601Format() }

    package static func format(secondsSince1970 seconds: Double) -> String {
        Self.format(Date(timeIntervalSince1970: seconds))
    }
}
