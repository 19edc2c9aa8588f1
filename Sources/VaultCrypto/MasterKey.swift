/// The key-encryption key (KEK): wraps one data key per connection revision, and derives the fingerprint subkey.
public final class MasterKey: Sendable, CustomStringConvertible {
    /// The id stored beside every data key it wraps (`master_keys.id`).
    public let id: Int64
    let key: SecretBytes
    /// Subkey 1 in context "cvfinger": keys the fingerprints shown in admin views.
    let fingerprintKey: SecretBytes

    public static let byteCount = 32

    /// - Parameters:
    ///   - id: the key's row id in the store.
    ///   - key: exactly 32 secret bytes.
    public init(id: Int64, key: SecretBytes) {
        precondition(key.count == Self.byteCount, "a master key is 32 bytes")
        self.id = id
        self.key = key
        let subkey = SecretBytes(zeroedCount: 32)
        subkey.withUnsafeMutableBytes { out in
            key.withUnsafeBytes { Sodium.deriveSubkey(out: out, id: 1, context: "cvfinger", key: $0) }
        }
        self.fingerprintKey = subkey
    }

    /// A fresh random key.
    public static func generate(id: Int64) -> MasterKey {
        MasterKey(id: id, key: SecretBytes(randomCount: Self.byteCount))
    }

    /// A value stored beside the key's id that tells, at start-up, whether the key file matches the database,
    /// without revealing anything about the key: keyed BLAKE2b-128 of a constant under subkey 2.
    public var checkValue: [UInt8] {
        let subkey = SecretBytes(zeroedCount: 32)
        subkey.withUnsafeMutableBytes { out in
            self.key.withUnsafeBytes { Sodium.deriveSubkey(out: out, id: 2, context: "cvkcheck", key: $0) }
        }
        let constant = Array("connection-vault master key check v1".utf8)
        return constant.withUnsafeBytes { message in
            subkey.withUnsafeBytes { Sodium.genericHash(message, key: $0, outCount: 16) }
        }
    }

    /// The fingerprint of a secret value: keyed BLAKE2b under the fingerprint subkey, first 8 bytes as hex.
    /// Equal values give equal fingerprints under the same master key, so admins can compare without seeing them.
    public func fingerprint(of value: SecretBytes) -> String {
        let digest = value.withUnsafeBytes { message in
            self.fingerprintKey.withUnsafeBytes { Sodium.genericHash(message, key: $0, outCount: 16) }
        }
        return Hashing.hex(digest.prefix(8))
    }

    /// The fingerprint of the first `count` bytes of `value` (a value opened into reused secret memory).
    package func fingerprint(of value: SecretBytes, count: Int) -> String {
        precondition(count <= value.count)
        let digest = value.withUnsafeBytes { message in
            self.fingerprintKey.withUnsafeBytes {
                Sodium.genericHash(UnsafeRawBufferPointer(rebasing: message.prefix(count)), key: $0, outCount: 16)
            }
        }
        return Hashing.hex(digest.prefix(8))
    }

    /// Copies the raw key into `buffer` (for writing the key file).
    public func withUnsafeKeyBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try self.key.withUnsafeBytes(body)
    }

    public var description: String { "MasterKey(id: \(self.id), redacted)" }
}
