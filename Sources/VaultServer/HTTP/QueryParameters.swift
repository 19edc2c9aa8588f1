import VaultAPI
import VaultCore

/// A parsed query string (`a=1&b=x`). Names are unique; values are percent-decoded.
public struct QueryParameters: Sendable, Equatable {
    public private(set) var values: [String: String]

    /// Parses `query`, accepting only the names in `allowed`.
    /// - Throws: `HTTPError` `bad_request` for an unknown or repeated name or a malformed escape: like an unknown
    ///   JSON member, a mistyped parameter must not be silently ignored.
    public init(_ query: Substring, allowed: Set<String>) throws(HTTPError) {
        var values: [String: String] = [:]
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = try Self.percentDecoded(parts[0])
            let value = parts.count > 1 ? try Self.percentDecoded(parts[1]) : ""
            guard allowed.contains(name) else {
                throw HTTPError(
                    .badRequest,
                    "unknown query parameter '\(DecodingProblem.printable(name))'; allowed: \(allowed.sorted().joined(separator: ", "))"
                )
            }
            guard values[name] == nil else {
                throw HTTPError(.badRequest, "query parameter '\(name)' is given more than once")
            }
            values[name] = value
        }
        self.values = values
    }

    public subscript(name: String) -> String? { self.values[name] }

    /// Parameter `name` as an integer in `range`, or nil when absent.
    /// - Throws: `HTTPError` `bad_request` when it is present but not such a number.
    public func integer(_ name: String, in range: ClosedRange<Int64>) throws(HTTPError) -> Int64? {
        guard let text = self.values[name] else { return nil }
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            let value = Int64(text), range.contains(value)
        else {
            let allowed =
                range.upperBound == .max
                ? "at least \(range.lowerBound)" : "from \(range.lowerBound) to \(range.upperBound)"
            throw HTTPError(.badRequest, "query parameter '\(name)' must be an integer \(allowed)")
        }
        return value
    }

    static func percentDecoded(_ text: Substring) throws(HTTPError) -> String {
        guard text.utf8.contains(where: { $0 == UInt8(ascii: "%") || $0 == UInt8(ascii: "+") }) else {
            return String(text)
        }
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            switch byte {
            case UInt8(ascii: "+"):
                bytes.append(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                guard let high = iterator.next().flatMap(Self.hexValue),
                    let low = iterator.next().flatMap(Self.hexValue)
                else {
                    throw HTTPError(.badRequest, "the query has a malformed percent escape")
                }
                bytes.append(high << 4 | low)
            default:
                bytes.append(byte)
            }
        }
        guard let decoded = String(validating: bytes, as: UTF8.self) else {
            throw HTTPError(.badRequest, "the query is not valid UTF-8")
        }
        return decoded
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
