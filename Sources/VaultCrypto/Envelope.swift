/// Envelope encryption (DESIGN §3): the master key wraps a per-revision data key; the data key seals each field.
///
/// Associated data binds every ciphertext to where it belongs, so a ciphertext copied to another connection, field
/// or revision, or an old revision replayed, fails to authenticate:
/// - field: `"cv-field" ‖ version ‖ len16(connection id) ‖ connection id ‖ len16(field) ‖ field ‖ be64(revision)`
/// - data key: `"cv-dek" ‖ version ‖ len16(connection id) ‖ connection id ‖ be64(revision) ‖ be64(master key id)`
public enum Envelope {
    /// Version of the associated-data layout; part of every associated data.
    public static let formatVersion: UInt8 = 1

    // MARK: - Data keys

    /// A fresh random data key.
    public static func generateDataKey() -> SecretBytes { SecretBytes(randomCount: 32) }

    /// Wraps `dataKey` under `masterKey` for one revision of one connection.
    public static func wrap(
        dataKey: SecretBytes,
        with masterKey: MasterKey,
        connectionID: String,
        revision: Int64,
        algorithm: AEADAlgorithm = .preferred
    ) throws -> SealedBox {
        try AEAD.seal(
            dataKey,
            key: masterKey.key,
            associatedData: Self.dataKeyAD(connectionID: connectionID, revision: revision, keyID: masterKey.id),
            algorithm: algorithm
        )
    }

    /// Unwraps the data key of one revision of one connection.
    /// - Throws: `VaultCryptoError` `.decryptionFailed` when the master key or binding is wrong.
    public static func unwrap(
        _ box: SealedBox,
        with masterKey: MasterKey,
        connectionID: String,
        revision: Int64
    ) throws -> SecretBytes {
        let key = try AEAD.open(
            box,
            key: masterKey.key,
            associatedData: Self.dataKeyAD(connectionID: connectionID, revision: revision, keyID: masterKey.id)
        )
        guard key.count == 32 else { throw VaultCryptoError(.malformed, "data key has the wrong length") }
        return key
    }

    /// ``unwrap(_:with:connectionID:revision:)`` into `buffer` (32 bytes of reused secret memory) instead of fresh
    /// memory: for a loop over every connection.
    package static func unwrap(
        _ box: SealedBox,
        with masterKey: MasterKey,
        connectionID: String,
        revision: Int64,
        into buffer: SecretBytes
    ) throws {
        let count = try AEAD.open(
            box,
            key: masterKey.key,
            associatedData: Self.dataKeyAD(connectionID: connectionID, revision: revision, keyID: masterKey.id),
            into: buffer
        )
        guard count == 32, buffer.count == 32 else {
            throw VaultCryptoError(.malformed, "data key has the wrong length")
        }
    }

    // MARK: - Fields

    /// Seals one secret field's value under the revision's data key.
    public static func seal(
        _ value: SecretBytes,
        field: String,
        dataKey: SecretBytes,
        connectionID: String,
        revision: Int64,
        algorithm: AEADAlgorithm = .preferred
    ) throws -> SealedBox {
        try AEAD.seal(
            value,
            key: dataKey,
            associatedData: Self.fieldAD(connectionID: connectionID, field: field, revision: revision),
            algorithm: algorithm
        )
    }

    /// Opens one secret field.
    /// - Throws: `VaultCryptoError` `.decryptionFailed` when the ciphertext is not this field's of this revision.
    public static func open(
        _ box: SealedBox,
        field: String,
        dataKey: SecretBytes,
        connectionID: String,
        revision: Int64
    ) throws -> SecretBytes {
        try AEAD.open(
            box,
            key: dataKey,
            associatedData: Self.fieldAD(connectionID: connectionID, field: field, revision: revision)
        )
    }

    /// ``open(_:field:dataKey:connectionID:revision:)`` into the first bytes of `buffer` (reused secret memory);
    /// returns the value's length.
    package static func open(
        _ box: SealedBox,
        field: String,
        dataKey: SecretBytes,
        connectionID: String,
        revision: Int64,
        into buffer: SecretBytes
    ) throws -> Int {
        try AEAD.open(
            box,
            key: dataKey,
            associatedData: Self.fieldAD(connectionID: connectionID, field: field, revision: revision),
            into: buffer
        )
    }

    // MARK: - Associated data

    static func fieldAD(connectionID: String, field: String, revision: Int64) -> [UInt8] {
        var ad = Array("cv-field".utf8)
        ad.append(Self.formatVersion)
        Self.appendLengthPrefixed(connectionID, to: &ad)
        Self.appendLengthPrefixed(field, to: &ad)
        Self.appendBigEndian(UInt64(bitPattern: revision), to: &ad)
        return ad
    }

    static func dataKeyAD(connectionID: String, revision: Int64, keyID: Int64) -> [UInt8] {
        var ad = Array("cv-dek".utf8)
        ad.append(Self.formatVersion)
        Self.appendLengthPrefixed(connectionID, to: &ad)
        Self.appendBigEndian(UInt64(bitPattern: revision), to: &ad)
        Self.appendBigEndian(UInt64(bitPattern: keyID), to: &ad)
        return ad
    }

    private static func appendLengthPrefixed(_ string: String, to bytes: inout [UInt8]) {
        let utf8 = Array(string.utf8)
        bytes.append(UInt8(truncatingIfNeeded: utf8.count >> 8))
        bytes.append(UInt8(truncatingIfNeeded: utf8.count))
        bytes.append(contentsOf: utf8)
    }

    private static func appendBigEndian(_ value: UInt64, to bytes: inout [UInt8]) {
        for shift in stride(from: 56, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift)))
        }
    }
}
