import VaultAPI
import VaultCrypto
import VaultStore

extension Vault {
    /// Connections re-wrapped per read of the tables: bounds what a rotation holds in memory at once.
    static let rotationChunk = 2_000

    /// Re-wraps every connection's data key from `old` to `new` and recomputes its secrets' fingerprints under `new`
    /// (they are keyed by a subkey of the master key), inside the rotation's transaction. Each data key is unwrapped
    /// once and opens its connection's secrets; the tables are read in chunks of ``rotationChunk`` connections and
    /// written through prepared statements, so that 100,000 connections re-wrap in seconds.
    /// - Returns: How many data keys were re-wrapped.
    /// - Throws: `decryption_failed` when a data key is not of its connection's revision or not wrapped by `old`,
    ///   or a ciphertext does not authenticate; the transaction then rolls back.
    func rewrapDataKeys(_ tx: StoreTransaction, from old: MasterKey, to new: MasterKey) throws -> Int {
        // Secret memory reused for every data key and every value: a `sodium_malloc` costs some ten system calls, and
        // three per connection were most of a rotation's time. Each is wiped after use and freed (zeroed) at the end.
        let dataKey = SecretBytes(zeroedCount: 32)
        let value = SecretBytes(zeroedCount: Self.maximumSecretBytes)
        var count = 0
        var after: String?
        while true {
            let chunk = try tx.dataKeysWithRevisions(after: after, limit: Self.rotationChunk)
            guard let first = chunk.first, let last = chunk.last else { break }
            let secrets = try tx.secrets(from: first.key.connectionID, through: last.key.connectionID)
            for (wrapped, revision) in chunk {
                let id = wrapped.connectionID
                guard wrapped.revision == revision else {
                    throw VaultError(
                        .decryptionFailed,
                        "connection '\(id)' data key is of revision \(wrapped.revision), not \(revision)"
                    )
                }
                guard wrapped.keyID == old.id else {
                    throw VaultError(
                        .decryptionFailed,
                        "connection '\(id)' data key is wrapped by master key \(wrapped.keyID), not the active \(old.id)"
                    )
                }
                try Envelope.unwrap(
                    SealedBox(
                        algorithm: try AEADAlgorithm.stored(wrapped.algorithm),
                        nonce: wrapped.nonce,
                        ciphertext: wrapped.wrapped
                    ),
                    with: old,
                    connectionID: id,
                    revision: revision,
                    into: dataKey
                )
                defer { dataKey.wipe(32) }
                let rewrapped = try Envelope.wrap(dataKey: dataKey, with: new, connectionID: id, revision: revision)
                var fingerprints: [(field: String, fingerprint: String)] = []
                // Fields this version does not know are left as they are (as `openSecrets` leaves them).
                for secret in secrets[id] ?? [] where SecretField(rawValue: secret.field) != nil {
                    let length = try Envelope.open(
                        SealedBox(
                            algorithm: try AEADAlgorithm.stored(secret.algorithm),
                            nonce: secret.nonce,
                            ciphertext: secret.ciphertext
                        ),
                        field: secret.field,
                        dataKey: dataKey,
                        connectionID: id,
                        revision: revision,
                        into: value
                    )
                    fingerprints.append((secret.field, new.fingerprint(of: value, count: length)))
                    value.wipe(length)
                }
                try tx.rewrapDataKey(
                    DataKeyRecord(
                        connectionID: id,
                        revision: revision,
                        keyID: new.id,
                        algorithm: Int(rewrapped.algorithm.rawValue),
                        nonce: rewrapped.nonce,
                        wrapped: rewrapped.ciphertext
                    ),
                    fingerprints: fingerprints
                )
                count += 1
            }
            after = last.key.connectionID
        }
        return count
    }
}
