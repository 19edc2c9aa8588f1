import VaultAPI
import VaultCrypto
import VaultLocks
import VaultStore

/// Validated secret values, in locked memory, by field.
typealias SecretValues = [SecretField: SecretBytes]

extension Vault {
    /// Longest secret accepted; Personio's are far shorter.
    static let maximumSecretBytes = 4096

    /// Copies the request's secrets into `SecretBytes`, checking each is allowed for `provider` and well-formed.
    static func secretValues(_ input: SecretsInput, provider: Provider) throws(VaultError) -> SecretValues {
        var values: SecretValues = [:]
        for (field, value) in input.values.sorted(by: { $0.key < $1.key }) {
            guard provider.allowedSecrets.contains(field) else {
                throw VaultError(.invalidSecret, "\(field.rawValue) is not a secret of \(provider.rawValue)")
            }
            let secret = value.withUnsafeBytes { SecretBytes(copying: $0) }
            guard (1...Self.maximumSecretBytes).contains(secret.count), secret.isPrintableText else {
                throw VaultError(
                    .invalidSecret,
                    "\(field.rawValue) must be 1 to \(Self.maximumSecretBytes) bytes of printable text without control characters"
                )
            }
            values[field] = secret
        }
        return values
    }

    /// Decrypts every secret of the connection's current revision. Runs inside a store transaction.
    func openSecrets(_ tx: StoreTransaction, _ record: ConnectionRecord) throws -> SecretValues {
        guard let wrapped = try tx.dataKey(of: record.id) else {
            throw VaultError(.decryptionFailed, "connection '\(record.id)' has no data key")
        }
        guard wrapped.revision == record.revision else {
            throw VaultError(
                .decryptionFailed,
                "connection '\(record.id)' data key is of revision \(wrapped.revision), not \(record.revision)"
            )
        }
        let masterKey = self.masterKey.withLock { $0 }
        guard wrapped.keyID == masterKey.id else {
            throw VaultError(
                .decryptionFailed,
                "connection '\(record.id)' data key is wrapped by master key \(wrapped.keyID), not the active \(masterKey.id)"
            )
        }
        let dataKey = try Envelope.unwrap(
            SealedBox(
                algorithm: try AEADAlgorithm.stored(wrapped.algorithm),
                nonce: wrapped.nonce,
                ciphertext: wrapped.wrapped
            ),
            with: masterKey,
            connectionID: record.id,
            revision: record.revision
        )
        var values: SecretValues = [:]
        for secret in try tx.secrets(of: record.id) {
            guard let field = SecretField(rawValue: secret.field) else { continue }
            values[field] = try Envelope.open(
                SealedBox(
                    algorithm: try AEADAlgorithm.stored(secret.algorithm),
                    nonce: secret.nonce,
                    ciphertext: secret.ciphertext
                ),
                field: secret.field,
                dataKey: dataKey,
                connectionID: record.id,
                revision: record.revision
            )
        }
        return values
    }

    /// Makes `record` its next revision (an edit, a reset): every secret is opened and sealed again under a new data
    /// key, with `newValues` replacing the fields they name; `revision` and `updatedAt` move on. The caller stores
    /// `record`, in the same transaction.
    func sealNextRevision(
        _ tx: StoreTransaction,
        _ record: inout ConnectionRecord,
        replacing newValues: SecretValues
    ) throws {
        let previous = try tx.secrets(of: record.id)
        var values = try self.openSecrets(tx, record)
        values.merge(newValues) { _, new in new }
        record.revision += 1
        record.updatedAt = Timestamp.now()
        try self.sealRevision(
            tx,
            id: record.id,
            revision: record.revision,
            values: values,
            previous: previous,
            changed: Set(newValues.keys)
        )
    }

    /// Seals `values` as revision `revision` under a fresh data key (fresh nonces too) and stores them, replacing
    /// the previous revision's data key and ciphertexts. Fingerprints and `updated_at` carry over for values that
    /// did not change. Runs inside a store write transaction.
    func sealRevision(
        _ tx: StoreTransaction,
        id: String,
        revision: Int64,
        values: SecretValues,
        previous: [SecretRecord],
        changed: Set<SecretField>
    ) throws {
        let masterKey = self.masterKey.withLock { $0 }
        let dataKey = Envelope.generateDataKey()
        let now = Timestamp.now()
        var records: [SecretRecord] = []
        for (field, value) in values.sorted(by: { $0.key < $1.key }) {
            let box = try Envelope.seal(
                value,
                field: field.rawValue,
                dataKey: dataKey,
                connectionID: id,
                revision: revision
            )
            let old = previous.first { $0.field == field.rawValue }
            let keep = !changed.contains(field) && old != nil
            records.append(
                SecretRecord(
                    connectionID: id,
                    field: field.rawValue,
                    revision: revision,
                    algorithm: Int(box.algorithm.rawValue),
                    nonce: box.nonce,
                    ciphertext: box.ciphertext,
                    fingerprint: keep ? old!.fingerprint : masterKey.fingerprint(of: value),
                    updatedAt: keep ? old!.updatedAt : now
                )
            )
        }
        let wrapped = try Envelope.wrap(dataKey: dataKey, with: masterKey, connectionID: id, revision: revision)
        try tx.putDataKey(
            DataKeyRecord(
                connectionID: id,
                revision: revision,
                keyID: masterKey.id,
                algorithm: Int(wrapped.algorithm.rawValue),
                nonce: wrapped.nonce,
                wrapped: wrapped.ciphertext
            )
        )
        try tx.replaceSecrets(of: id, with: records)
    }
}
