/// A secret as it arrives in (or leaves) a request body.
///
/// The server copies it into locked `sodium_malloc` memory at once and the bytes here are zeroed when the last
/// reference goes. The daemon never decodes one through `Decodable`: it takes secret members out of the raw body
/// first (``ExtractedSecrets``), since `JSONDecoder` would make a `String` of the value, and Swift frees strings
/// without zeroing them. `init(from:)` and `encode(to:)` (through a `String`) are for clients and tests.
public final class SecretInput: Codable, @unchecked Sendable, CustomStringConvertible {
    // @unchecked Sendable: `bytes` is written in `init`, only read afterwards, and zeroed in `deinit`, when no other
    // reference can exist.
    private var bytes: [UInt8]

    public init(bytes: [UInt8]) { self.bytes = bytes }

    public required init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        self.bytes = Array(try container.decode(String.self).utf8)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(String(decoding: self.bytes, as: UTF8.self))
    }

    deinit {
        self.bytes.withUnsafeMutableBytes { buffer in
            guard let base = buffer.baseAddress else { return }
            memsetZero(base, buffer.count)
        }
    }

    public var count: Int { self.bytes.count }

    /// Calls `body` with the secret's bytes; do not let them escape.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try self.bytes.withUnsafeBytes(body)
    }

    public var description: String { "SecretInput(redacted, \(self.bytes.count) bytes)" }
}

/// Not inlined, so the optimiser cannot prove the zeroed bytes dead and drop the store.
@inline(never)
private func memsetZero(_ pointer: UnsafeMutableRawPointer, _ count: Int) {
    pointer.initializeMemory(as: UInt8.self, repeating: 0, count: count)
}

/// The secret fields of a create, edit or reset request. Absent fields are nil.
public struct SecretsInput: Codable, Sendable {
    public var values: [SecretField: SecretInput]

    public init(_ values: [SecretField: SecretInput] = [:]) { self.values = values }

    public subscript(field: SecretField) -> SecretInput? {
        get { self.values[field] }
        set { self.values[field] = newValue }
    }

    public var isEmpty: Bool { self.values.isEmpty }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(allowed: Set(SecretField.allCases.map(\.rawValue)))
        let container = try decoder.container(keyedBy: AnyCodingKey.self)
        let extracted = decoder.userInfo[ExtractedSecrets.userInfoKey] as? ExtractedSecrets
        let prefix = decoder.codingPath.map(\.stringValue)
        var values: [SecretField: SecretInput] = [:]
        for field in SecretField.allCases {
            let key = AnyCodingKey(stringValue: field.rawValue)
            // A value taken out of the body before decoding; what is left in its place is blank.
            if container.contains(key), let value = extracted?.value(at: prefix + [field.rawValue]) {
                values[field] = value
            } else if let value = try container.decodeIfPresent(SecretInput.self, forKey: key) {
                values[field] = value
            }
        }
        self.values = values
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: AnyCodingKey.self)
        for (field, value) in self.values.sorted(by: { $0.key < $1.key }) {
            try container.encode(value, forKey: AnyCodingKey(stringValue: field.rawValue))
        }
    }
}

/// Secret members a server took out of a request body before decoding the rest, by their path (`client_secret`,
/// `secrets.client_secret`). Passed to the decoder in `userInfo` under ``userInfoKey``; ``SecretsInput`` takes its
/// values from here instead of decoding them.
public final class ExtractedSecrets: Sendable {
    public static let userInfoKey = CodingUserInfoKey(rawValue: "connvault.extracted-secrets")!

    private let values: [String: SecretInput]

    /// - Parameter values: The secrets, by member path joined with dots.
    public init(_ values: [String: SecretInput]) { self.values = values }

    /// The secret at `path` (member names from the top level), if one was extracted there.
    public func value(at path: [String]) -> SecretInput? {
        self.values[path.joined(separator: ".")]
    }
}
