#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Decoding of request bodies and query strings, as lenient or strict as Personio is.
enum FormFields {
    /// The fields of an `application/x-www-form-urlencoded` text (`+` is a space); `nil` when a field is malformed
    /// (bad percent escape) or repeated.
    static func decode(_ text: some StringProtocol) -> [String: String]? {
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = Self.percentDecode(parts[0]),
                let value = parts.count > 1 ? Self.percentDecode(parts[1]) : "",
                fields[name] == nil
            else { return nil }
            fields[name] = value
        }
        return fields
    }

    /// The top-level string members of a JSON object; `nil` unless the text is a JSON object. Members of other
    /// types are left out.
    static func decodeJSON(_ bytes: [UInt8]) -> [String: String]? {
        try? JSONDecoder().decode(StringMembers.self, from: Data(bytes)).fields
    }

    private static func percentDecode(_ text: some StringProtocol) -> String? {
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            switch byte {
            case UInt8(ascii: "+"):
                bytes.append(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                guard let high = iterator.next().flatMap(Self.hexValue),
                    let low = iterator.next().flatMap(Self.hexValue)
                else { return nil }
                bytes.append(high << 4 | low)
            default:
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    private struct StringMembers: Decodable {
        var fields: [String: String] = [:]

        private struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: Key.self)
            for key in container.allKeys {
                if let value = try? container.decode(String.self, forKey: key) { self.fields[key.stringValue] = value }
            }
        }
    }
}
