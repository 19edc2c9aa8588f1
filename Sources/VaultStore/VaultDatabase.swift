import GRDB
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The vault's SQLite file: schema, migrations, and one serial writer.
///
/// All access runs on GRDB's serial dispatch queue, never on Swift's cooperative pool: a `DatabaseQueue` serialises
/// reads and writes alike, so a transaction that uses the master key is never interleaved with a key rotation.
/// The store knows ciphertext and never plaintext.
public final class VaultDatabase: Sendable {
    private let queue: DatabaseQueue
    /// Set by `close()`. GRDB treats any use of a closed queue as a programming error (it crashes in SQLite), so
    /// every entry point checks this first and throws instead.
    private let closed = Atomic<Bool>(false)
    public let path: String
    let chainHash: @Sendable ([UInt8]) -> [UInt8]

    /// Opens (creating with mode 0600 when missing) and migrates the database.
    /// - Parameters:
    ///   - path: the database file.
    ///   - chainHash: the hash of the audit chain (BLAKE2b-256 from the crypto module).
    public init(path: String, chainHash: @escaping @Sendable ([UInt8]) -> [UInt8], logger: Logger) throws {
        try Self.createPrivately(path)
        var configuration = Configuration()
        configuration.journalMode = .wal
        configuration.foreignKeysEnabled = true
        configuration.label = "connvault.store"
        // Bound values stay out of error messages (the GRDB default, kept explicit for reviewers).
        configuration.publicStatementArguments = false
        configuration.busyMode = .timeout(5)
        configuration.prepareDatabase { db in
            // FULL: an acknowledged change survives power loss, not only a crash. secure_delete: freed pages are
            // overwritten, so shredded ciphertext does not linger in the main file.
            try db.execute(sql: "PRAGMA synchronous = FULL")
            try db.execute(sql: "PRAGMA secure_delete = ON")
        }
        let queue = try DatabaseQueue(path: path, configuration: configuration)
        // GRDB's WAL set-up runs after `prepareDatabase` and lowers synchronous to NORMAL; put FULL back on the one
        // connection a DatabaseQueue keeps.
        try queue.inDatabase { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        self.queue = queue
        self.path = path
        self.chainHash = chainHash
        try Self.migrator.migrate(self.queue)
        logger.debug("database ready", metadata: ["store.path": "\(path)"])
    }

    /// Closes the database; further use throws.
    public func close() throws {
        self.closed.store(true, ordering: .sequentiallyConsistent)
        try self.queue.close()
    }

    private func ensureOpen() throws {
        if self.closed.load(ordering: .sequentiallyConsistent) {
            throw StoreError(.io, "database \(self.path) is closed")
        }
    }

    /// Runs `body` in one write transaction: everything it does commits together, or nothing does.
    public func write<T: Sendable>(_ body: @escaping @Sendable (StoreTransaction) throws -> T) async throws -> T {
        try self.ensureOpen()
        return try await self.queue.write { db in try body(StoreTransaction(db: db, chainHash: self.chainHash)) }
    }

    /// Runs `body` with a consistent read-only view.
    public func read<T: Sendable>(_ body: @escaping @Sendable (StoreTransaction) throws -> T) async throws -> T {
        try self.ensureOpen()
        return try await self.queue.read { db in try body(StoreTransaction(db: db, chainHash: self.chainHash)) }
    }

    /// Synchronous write, for start-up only.
    public func writeNow<T>(_ body: (StoreTransaction) throws -> T) throws -> T {
        try self.ensureOpen()
        return try self.queue.write { db in try body(StoreTransaction(db: db, chainHash: self.chainHash)) }
    }

    /// Moves every WAL frame into the database file and truncates the WAL, so that shredded ciphertext does not
    /// linger in the WAL after a disconnect or a credential change.
    public func checkpointTruncate() async throws {
        try self.ensureOpen()
        _ = try await self.queue.writeWithoutTransaction { db in
            try db.checkpoint(.truncate)
        }
    }

    /// `PRAGMA integrity_check`: "ok" when the file is sound.
    public func integrityCheck() async throws -> String {
        try self.ensureOpen()
        return try await self.queue.read { db in
            try String.fetchAll(db, sql: "PRAGMA integrity_check").joined(separator: "; ")
        }
    }

    /// Size of the database file in bytes (without the WAL).
    public func fileSize() -> Int64 {
        var info = stat()
        return stat(self.path, &info) == 0 ? Int64(info.st_size) : 0
    }

    /// Creates the file with mode 0600 before SQLite opens it; SQLite gives `-wal` and `-shm` the same mode.
    static func createPrivately(_ path: String) throws {
        let fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw StoreError(.io, "cannot open database file \(path): \(String(cString: strerror(errno)))")
        }
        var info = stat()
        fstat(fd, &info)
        if info.st_mode & 0o077 != 0 {
            fchmod(fd, 0o600)
        }
        Glibc.close(fd)
    }
}

/// An error from the store, free of bound values.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable { case io, corrupt, constraint }
        private let value: Value
        private init(_ value: Value) { self.value = value }
        public static let io = Code(.io)
        public static let corrupt = Code(.corrupt)
        public static let constraint = Code(.constraint)
        public var description: String { "\(self.value)" }
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { self.message }
}
