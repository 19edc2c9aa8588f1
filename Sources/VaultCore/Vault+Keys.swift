import Logging
import VaultAPI
import VaultCrypto
import VaultLocks
import VaultStore

#if canImport(Glibc)
import Glibc
#endif

extension Vault {
    /// Rotates the master key online: a new key re-wraps every data key in one transaction while token requests
    /// continue (they wait for the transaction, microseconds per connection).
    ///
    /// Crash safety: the new key is written to `<key file>.new` first; the database commit then makes it the
    /// active key; only after the commit is the file renamed over the old one. A crash between the two steps is
    /// finished at the next start (`Vault.open` recognises the staged key by its check value).
    /// - Throws: `key_file_read_only` when the key file's directory cannot take the new key (e.g. a read-only
    ///   systemd credential); nothing changes then.
    public func rotateMasterKey(by actor: AuditActor) async throws -> KeyRotationResult {
        let path = self.configuration.keyFilePath
        guard KeyFile.isDirectoryWritable(for: path) else {
            throw VaultError(
                .keyFileReadOnly,
                "cannot rotate: the directory of the master key file \(path) is not writable (a read-only credential?); provision a new key file instead"
            )
        }
        let result: KeyRotationResult
        do {
            result = try await self.write { tx in
                let old = self.masterKey.withLock { $0 }
                let newID = (try tx.masterKeys().map(\.id).max() ?? old.id) + 1
                let new = MasterKey.generate(id: newID)
                do {
                    try KeyFile.stage(path: path, key: new)
                } catch let error as VaultCryptoError {
                    // The disk under the key file failed (full, I/O error, read-only): a storage fault like the
                    // database's, and nothing has changed.
                    throw VaultError(.storageFailed, "cannot rotate: \(error.message)")
                }
                // The new key's row comes first: every re-wrapped data key references it (foreign key).
                let newRecord = MasterKeyRecord(
                    id: new.id,
                    createdAt: Timestamp.now(),
                    state: "active",
                    checkValue: new.checkValue
                )
                try tx.activateMasterKey(newRecord)
                let count = try self.rewrapDataKeys(tx, from: old, to: new)
                // Tokens waiting for revocation must stay revocable under the new key (DESIGN §11).
                let tokens = try self.rewrapIssuedTokens(tx, from: old, to: new)
                try tx.appendAudit(
                    Self.auditEntry(
                        actor,
                        action: "key.rotate",
                        connection: nil,
                        detail: "master key \(old.id) -> \(new.id); \(count) data keys re-wrapped"
                            + (tokens > 0 ? "; \(tokens) issued token keys re-wrapped" : "")
                    )
                )
                // The store runs one transaction at a time and nothing runs between this closure and its COMMIT,
                // so no other transaction can see the new key before the commit. A failed commit restores the old
                // key below.
                self.masterKey.withLock { $0 = new }
                return KeyRotationResult(keyID: new.id, rewrappedDataKeys: count)
            }
        } catch {
            // The closure may have installed the new key before its COMMIT failed. The key file still holds the
            // key the database kept (the new one is only staged), so take that one back.
            let active = try? await self.database.read({ try $0.activeMasterKey() })
            if let active, active.id != self.masterKey.withLock({ $0.id }) {
                if let bytes = try? KeyFile.load(path: path),
                    MasterKey(id: active.id, key: bytes).checkValue == active.checkValue
                {
                    self.masterKey.withLock { $0 = MasterKey(id: active.id, key: bytes) }
                    self.logger.error("master key rotation failed to commit; the previous key stays in force")
                } else {
                    self.logger.critical("master key in memory does not match the database after a failed rotation")
                }
            }
            // A commit that failed below SQLite (its WAL write or fsync) leaves its frames in the WAL until the
            // store recovers, and a crash before that would bring the rotation back: the database would then use
            // the new key, which only the staged file holds. So the staged key is discarded only once the store
            // has recovered and kept the old key; otherwise it stays, and `Vault.open` settles it at the next start
            // (it discards the staged key when the database kept the key file's key, else installs it).
            if !self.database.isRecovering, let active, active.id == self.masterKey.withLock({ $0.id }) {
                KeyFile.discardStaged(path: path)
            } else {
                self.logger.warning(
                    "kept the staged master key file until the database has recovered from a failed write",
                    metadata: ["key.file": "\(KeyFile.stagedPath(for: path))"]
                )
            }
            throw error
        }
        do {
            try KeyFile.commitStaged(path: path)
        } catch {
            // The database already uses the new key; the staged file is picked up at the next start.
            self.logger.critical(
                "new master key committed but not yet renamed into place; it will be at the next start",
                metadata: ["error": "\(error)"]
            )
        }
        self.logger.notice(
            "master key rotated",
            metadata: ["key.id": "\(result.keyID)", "data_keys": "\(result.rewrappedDataKeys)"]
        )
        return result
    }
}
