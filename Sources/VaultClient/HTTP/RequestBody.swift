import VaultAPI

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Builds the JSON bodies that carry secrets (create, edit, reset) byte by byte.
///
/// `JSONEncoder` would pass each secret through a `String` and a `Data` the client cannot zero. Here the secret bytes
/// go from ``SecretInput`` straight into one `[UInt8]` whose capacity is reserved up front (so no reallocation leaves
/// a stray copy behind); the caller zeroes it after sending with ``zeroize(_:)``. Non-secret members (settings,
/// grants) still go through `JSONEncoder`, with sorted keys like every other body.
enum RequestBody {
    /// `POST /v1/connections`: `{"grants","id","provider","secrets","settings"}`.
    static func create(_ request: CreateConnectionRequest) throws -> [UInt8] {
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
    static func edit(_ request: EditConnectionRequest) throws -> [UInt8] {
        var members: [(String, Member)] = []
        if let grants = request.grants { members.append(("grants", .encoded(try Self.encode(grants)))) }
        if !request.secrets.isEmpty { members.append(("secrets", .secrets(request.secrets))) }
        members.append(("settings", .encoded(try Self.encode(request.settings))))
        return try Self.object(members)
    }

    /// `POST /v1/connections/{id}/reset`: the secret fields as top-level members.
    static func reset(_ secrets: ResetRequest) throws -> [UInt8] {
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
                    throw VaultClientError(.invalidRequest, "the \(field.rawValue) is not valid UTF-8 text")
                }
                Self.appendJSONString(bytes, to: &body)
            }
        }
        body.append(UInt8(ascii: "}"))
    }

    // MARK: - JSON pieces

    /// A body without secrets, through `JSONEncoder`.
    static func encodePlain(_ value: some Encodable) throws -> [UInt8] {
        try Self.encode(value)
    }

    private static func encode(_ value: some Encodable) throws -> [UInt8] {
        do {
            return Array(try VaultJSON.encoder().encode(value))
        } catch {
            throw VaultClientError(.invalidRequest, "cannot encode the request: \(error)")
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

/// Overwrites `bytes` with zeros (best effort: only this buffer, not copies the kernel or allocator made).
///
/// Not inlined, so the optimiser cannot prove the stores dead and drop them.
@inline(never)
func zeroize(_ bytes: inout [UInt8]) {
    bytes.withUnsafeMutableBytes { buffer in
        guard let base = buffer.baseAddress else { return }
        base.initializeMemory(as: UInt8.self, repeating: 0, count: buffer.count)
    }
}

/// Helpers for callers that hold secrets in byte arrays (such as a CLI reading them from a terminal).
public enum SecretMemory {
    /// Overwrites the array's storage with zeros in place. Only this storage: make sure no other array shares it
    /// (an array that is not uniquely referenced would be copied first, and only the copy zeroed).
    public static func zero(_ bytes: inout [UInt8]) {
        zeroize(&bytes)
    }
}
