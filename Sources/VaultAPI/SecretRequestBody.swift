#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Builds the JSON bodies that carry secrets (create, edit, reset) byte by byte, for both clients of the daemon.
///
/// `JSONEncoder` would pass each secret through a `String` and a `Data` the client cannot zero. Here the secret bytes
/// go from ``SecretInput`` straight into one `[UInt8]` whose capacity is reserved up front (so no reallocation leaves
/// a stray copy behind); the caller zeroes it after sending. Non-secret members (settings, grants) still go through
/// `JSONEncoder`, with sorted keys like every other body.
public enum SecretRequestBody {
    /// A request that cannot be encoded (a secret that is not UTF-8 text); the message names the field, never a value.
    public struct EncodingError: Error, Sendable, CustomStringConvertible {
        public var message: String
        public var description: String { self.message }
    }

    /// `POST /v1/connections`: `{"grants","id","provider","secrets","settings"}`.
    public static func create(_ request: CreateConnectionRequest) throws -> [UInt8] {
        let members: [(String, Member)] = [
            ("grants", .encoded(try Self.encode(request.grants))),
            ("id", .encoded(Self.jsonString(request.id))),
            ("provider", .encoded(Self.jsonString(request.provider.rawValue))),
            ("secrets", .secrets(request.secrets)),
            ("settings", .encoded(try Self.encode(request.settings))),
        ]
        return try Self.object(members)
    }

    /// `PATCH /v1/connections/{id}`: `{"grants"?,"secrets"?,"settings"}`.
    public static func edit(_ request: EditConnectionRequest) throws -> [UInt8] {
        var members: [(String, Member)] = []
        if let grants = request.grants { members.append(("grants", .encoded(try Self.encode(grants)))) }
        if !request.secrets.isEmpty { members.append(("secrets", .secrets(request.secrets))) }
        members.append(("settings", .encoded(try Self.encode(request.settings))))
        return try Self.object(members)
    }

    /// `POST /v1/connections/{id}/reset`: the secret fields as top-level members.
    public static func reset(_ secrets: ResetRequest) throws -> [UInt8] {
        var body: [UInt8] = []
        body.reserveCapacity(Self.capacity(for: secrets) + 2)
        try Self.appendSecrets(secrets, to: &body)
        return body
    }

    // MARK: - Assembly

    private enum Member {
        case encoded([UInt8])
        case secrets(SecretsInput)
    }

    private static func object(_ members: [(String, Member)]) throws -> [UInt8] {
        var capacity = 2
        for (key, member) in members {
            capacity += key.utf8.count + 4
            switch member {
            case .encoded(let bytes): capacity += bytes.count
            case .secrets(let secrets): capacity += Self.capacity(for: secrets)
            }
        }
        var body: [UInt8] = []
        body.reserveCapacity(capacity)
        body.append(UInt8(ascii: "{"))
        for (index, (key, member)) in members.enumerated() {
            if index > 0 { body.append(UInt8(ascii: ",")) }
            body.append(contentsOf: Self.jsonString(key))
            body.append(UInt8(ascii: ":"))
            switch member {
            case .encoded(let bytes): body.append(contentsOf: bytes)
            case .secrets(let secrets): try Self.appendSecrets(secrets, to: &body)
            }
        }
        body.append(UInt8(ascii: "}"))
        return body
    }

    /// The most bytes `secrets` can take as a JSON object: every byte escaped as `\u00XX` (6 bytes) in the worst case.
    private static func capacity(for secrets: SecretsInput) -> Int {
        secrets.values.reduce(2) { total, entry in total + entry.key.rawValue.utf8.count + 6 + entry.value.count * 6 + 2
        }
    }

    private static func appendSecrets(_ secrets: SecretsInput, to body: inout [UInt8]) throws {
        body.append(UInt8(ascii: "{"))
        for (index, (field, secret)) in secrets.values.sorted(by: { $0.key < $1.key }).enumerated() {
            if index > 0 { body.append(UInt8(ascii: ",")) }
            body.append(contentsOf: Self.jsonString(field.rawValue))
            body.append(UInt8(ascii: ":"))
            try secret.withUnsafeBytes { bytes in
                guard Self.isValidUTF8(bytes) else {
                    throw EncodingError(message: "the \(field.rawValue) is not valid UTF-8 text")
                }
                Self.appendJSONString(bytes, to: &body)
            }
        }
        body.append(UInt8(ascii: "}"))
    }

    // MARK: - JSON pieces

    /// A body without secrets, through `JSONEncoder`.
    public static func encodePlain(_ value: some Encodable) throws -> [UInt8] {
        try Self.encode(value)
    }

    private static func encode(_ value: some Encodable) throws -> [UInt8] {
        do {
            return Array(try VaultJSON.encoder().encode(value))
        } catch {
            throw EncodingError(message: "cannot encode the request: \(error)")
        }
    }

    /// `value` as a JSON string literal.
    static func jsonString(_ value: String) -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(value.utf8.count + 2)
        Array(value.utf8).withUnsafeBytes { Self.appendJSONString($0, to: &result) }
        return result
    }

    /// Appends `bytes` (valid UTF-8) as a JSON string: `"` and `\` escaped, control characters as short escapes or
    /// `\u00XX`, everything else as is.
    static func appendJSONString(_ bytes: UnsafeRawBufferPointer, to body: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        body.append(UInt8(ascii: "\""))
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "\""): body.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): body.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x0A: body.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: body.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: body.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0x08: body.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "b")])
            case 0x0C: body.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "f")])
            case 0x00..<0x20:
                body.append(contentsOf: Array("\\u00".utf8))
                body.append(hex[Int(byte >> 4)])
                body.append(hex[Int(byte & 0x0F)])
            default: body.append(byte)
            }
        }
        body.append(UInt8(ascii: "\""))
    }

    /// Validates UTF-8 in place, without making a `String` (which would be another copy of a secret).
    static func isValidUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var iterator = bytes.makeIterator()
        var parser = Unicode.UTF8.ForwardParser()
        while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid: continue
            case .emptyInput: return true
            case .error: return false
            }
        }
    }
}
