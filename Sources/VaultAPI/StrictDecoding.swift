#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A coding key for any JSON object member; used to find members a type does not know.
public struct AnyCodingKey: CodingKey, Sendable {
    public var stringValue: String
    public var intValue: Int? { nil }
    public init(stringValue: String) { self.stringValue = stringValue }
    public init?(intValue: Int) { nil }
}

/// Thrown while decoding a request body when it has a member the type does not define.
public struct UnknownFieldError: Error, Sendable, CustomStringConvertible {
    public var field: String
    public var path: String
    public var description: String {
        "unknown field '\(self.path.isEmpty ? self.field : self.path + "." + self.field)'"
    }
}

extension Decoder {
    /// Rejects members that are not in `allowed`: a typo in a request must not be silently ignored.
    public func rejectUnknownKeys(allowed: Set<String>) throws {
        let container = try self.container(keyedBy: AnyCodingKey.self)
        for key in container.allKeys where !allowed.contains(key.stringValue) {
            throw UnknownFieldError(
                field: key.stringValue,
                path: self.codingPath.map(\.stringValue).joined(separator: ".")
            )
        }
    }
}

/// The JSON coders both sides use: snake_case is spelled out in `CodingKeys`, never converted.
public enum VaultJSON {
    public static func encoder(pretty: Bool = false) -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting =
            pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    public static func decoder() -> JSONDecoder { JSONDecoder() }
}
