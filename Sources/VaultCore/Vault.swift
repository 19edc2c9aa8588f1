import Logging
import VaultAPI
import VaultCrypto
import VaultLocks
import VaultStore

#if canImport(Glibc)
import Glibc
#endif

/// Where the vault keeps its state.
public struct VaultConfiguration: Sendable {
    /// The SQLite database file (`vault.sqlite3`); `-wal` and `-shm` live beside it.
    public var databasePath: String
    /// The master key file (32 raw bytes, 0600, owned by the daemon's user).
    public var keyFilePath: String
    /// Create the key file (and a new vault) when it does not exist: `--dev` and `--init` only.
    public var createKeyIfMissing: Bool
    /// Accept plain `http://` API base URLs (to a loopback host): `--dev` and `--allow-insecure-upstream` only. A
    /// secret sent over plain HTTP can be read by any local process that can listen on that port.
    public var allowInsecureUpstream: Bool

    public init(
        databasePath: String,
        keyFilePath: String,
        createKeyIfMissing: Bool = false,
        allowInsecureUpstream: Bool = false
    ) {
        self.databasePath = databasePath
        self.keyFilePath = keyFilePath
        self.createKeyIfMissing = createKeyIfMissing
        self.allowInsecureUpstream = allowInsecureUpstream
    }
}

/// The one orchestrator: policy, lifecycle, audit. Routes call it; it calls the store and the crypto.
///
/// Every change runs inside one store write transaction together with its audit row. Every use of the master key
/// happens inside a store transaction too, and the store runs one transaction at a time, so a key rotation is
/// serialised against every other reader and writer without a lock of its own.
public final class Vault: Sendable {
    public static let version = "0.1.0"

    let configuration: VaultConfiguration
    let database: VaultDatabase
    let logger: Logger
    /// The active master key. Read and replaced only inside store transactions (see the type's comment).
    let masterKey: Locked<MasterKey>
    let startedAt: ContinuousClock.Instant
    /// Committed changes, for the token broker to read (nothing here calls up into it).
    public let changes: ChangeFeed

    init(configuration: VaultConfiguration, database: VaultDatabase, masterKey: MasterKey, logger: Logger) {
        self.configuration = configuration
        self.database = database
        self.masterKey = Locked(masterKey)
        self.logger = logger
        self.startedAt = .now
        self.changes = ChangeFeed()
    }

    /// Opens the vault: loads and checks the master key, opens and migrates the database, and finishes a key
    /// rotation that was interrupted between its database commit and its key-file rename.
    /// - Throws: `VaultError` naming the key file or database and the reason.
    public static func open(_ configuration: VaultConfiguration, logger: Logger) async throws -> Vault {
        let database: VaultDatabase
        do {
            database = try VaultDatabase(
                path: configuration.databasePath,
                chainHash: Hashing.blake2b256,
                logger: logger
            )
        } catch {
            throw VaultError(.storageFailed, "cannot open database \(configuration.databasePath)", cause: error)
        }
        do {
            let masterKey = try Self.loadMasterKey(configuration, database: database, logger: logger)
            return Vault(configuration: configuration, database: database, masterKey: masterKey, logger: logger)
        } catch {
            try? database.close()
            throw error
        }
    }

    /// Closes the database.
    public func close() async throws {
        try self.database.close()
    }

    /// Publishes a committed change (disable, reset, edit, disconnect, needs_reset…) on `changes`.
    func notify(_ change: ConnectionChange) {
        self.changes.publish(change)
    }

    // MARK: - Master key

    static func loadMasterKey(
        _ configuration: VaultConfiguration,
        database: VaultDatabase,
        logger: Logger
    ) throws -> MasterKey {
        let path = configuration.keyFilePath
        let active: MasterKeyRecord?
        do {
            active = try database.writeNow { try $0.activeMasterKey() }
        } catch {
            throw VaultError(.storageFailed, "cannot read database \(configuration.databasePath)", cause: error)
        }
        guard let active else {
            return try Self.initialiseMasterKey(configuration, database: database, logger: logger)
        }
        let staged = KeyFile.stagedPath(for: path)
        if let key = try? KeyFile.load(path: path), MasterKey(id: active.id, key: key).checkValue == active.checkValue {
            KeyFile.discardStaged(path: path)
            return MasterKey(id: active.id, key: key)
        }
        // A rotation committed in the database but was stopped before it renamed the new key into place.
        if let key = try? KeyFile.load(path: staged), MasterKey(id: active.id, key: key).checkValue == active.checkValue
        {
            try Self.mapKeyFileError { try KeyFile.commitStaged(path: path) }
            logger.notice("finished an interrupted master key rotation", metadata: ["key.id": "\(active.id)"])
            return MasterKey(id: active.id, key: key)
        }
        // Load again to report the precise reason (missing, mode, owner, size) if there is one.
        _ = try Self.mapKeyFileError { try KeyFile.load(path: path) }
        throw VaultError(
            .decryptionFailed,
            "master key file \(path) does not match the database \(configuration.databasePath) (key \(active.id)); is it the right key file?"
        )
    }

    /// A new vault: adopt the key file if there is one, else create it when allowed.
    static func initialiseMasterKey(
        _ configuration: VaultConfiguration,
        database: VaultDatabase,
        logger: Logger
    ) throws -> MasterKey {
        let path = configuration.keyFilePath
        let masterKey: MasterKey
        if access(path, F_OK) == 0 || !configuration.createKeyIfMissing {
            masterKey = MasterKey(id: 1, key: try Self.mapKeyFileError { try KeyFile.load(path: path) })
        } else {
            masterKey = MasterKey.generate(id: 1)
            try Self.mapKeyFileError { try KeyFile.create(path: path, key: masterKey) }
            logger.notice("created master key file", metadata: ["key.file": "\(path)"])
        }
        do {
            try database.writeNow { tx in
                try tx.activateMasterKey(
                    MasterKeyRecord(
                        id: masterKey.id,
                        createdAt: Timestamp.now(),
                        state: "active",
                        checkValue: masterKey.checkValue
                    )
                )
                try tx.appendAudit(
                    Self.auditEntry(
                        Self.daemonActor,
                        action: "vault.init",
                        connection: nil,
                        detail: "master key \(masterKey.id)"
                    )
                )
            }
        } catch {
            throw VaultError(.storageFailed, "cannot initialise database \(configuration.databasePath)", cause: error)
        }
        return masterKey
    }

    static func mapKeyFileError<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as VaultCryptoError {
            throw VaultError(.internalError, error.message)
        }
    }

    // MARK: - Helpers shared by the operations

    /// Runs `body` in one write transaction and maps store failures to `storage_failed`. A task cancelled before or
    /// during it gets `CancellationError` (nothing was written): the caller went away, the store did not fail.
    func write<T: Sendable>(_ body: @escaping @Sendable (StoreTransaction) throws -> T) async throws -> T {
        do {
            return try await self.database.write(body)
        } catch let error as VaultError {
            throw error
        } catch is CancellationError {
            throw CancellationError()
        } catch let error as VaultCryptoError {
            throw VaultError(.decryptionFailed, error.message)
        } catch let error as StoreError where error.code == .io {
            // A fault below SQLite (disk full, I/O error, failed fsync, read-only): say which; nothing is acknowledged.
            self.logger.error("store write failed", metadata: ["error": "\(error)"])
            throw VaultError(.storageFailed, "the vault could not write its database: \(error.message)", cause: error)
        } catch {
            self.logger.error("store write failed", metadata: ["error": "\(error)"])
            throw VaultError(.storageFailed, "the vault could not write its database", cause: error)
        }
    }

    /// Runs `body` in one read transaction, with the failures of ``write(_:)``.
    func read<T: Sendable>(_ body: @escaping @Sendable (StoreTransaction) throws -> T) async throws -> T {
        do {
            return try await self.database.read(body)
        } catch let error as VaultError {
            throw error
        } catch is CancellationError {
            throw CancellationError()
        } catch let error as VaultCryptoError {
            throw VaultError(.decryptionFailed, error.message)
        } catch {
            self.logger.error("store read failed", metadata: ["error": "\(error)"])
            throw VaultError(.storageFailed, "the vault could not read its database", cause: error)
        }
    }

    /// The daemon itself, as the actor of what it decides on its own (start-up, Personio's rejections).
    static var daemonActor: AuditActor { AuditActor(uid: getuid(), pid: getpid(), comm: "connvaultd") }

    static func auditEntry(
        _ actor: AuditActor,
        action: String,
        connection: String?,
        outcome: String = "ok",
        detail: String
    ) -> NewAuditEntry {
        NewAuditEntry(
            time: Timestamp.now(),
            actorUID: Int64(actor.uid),
            actorPID: Int64(actor.pid),
            actorComm: actor.comm,
            actorUnit: actor.unit,
            action: action,
            connectionID: connection,
            outcome: outcome,
            detail: detail
        )
    }
}
