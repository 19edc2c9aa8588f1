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
    /// Set when a write failed below SQLite; cleared by `recover()`.
    private let needsRecovery = Atomic<Bool>(false)
    /// Whether a task retries `recover()` (see `scheduleRecovery()`).
    private let recoveryScheduled = Atomic<Bool>(false)
    private let logger: Logger
    public let path: String
    let chainHash: @Sendable ([UInt8]) -> [UInt8]

    /// Opens (creating with mode 0600 when missing) and migrates the database.
    /// - Parameters:
    ///   - path: the database file.
    ///   - chainHash: the hash of the audit chain (BLAKE2b-256 from the crypto module).
    public init(path: String, chainHash: @escaping @Sendable ([UInt8]) -> [UInt8], logger: Logger) throws {
        try Self.createPrivately(path)
        Self.removeStaleWriteProbes(in: Self.directory(of: path), logger: logger)
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
        self.logger = logger
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
    ///
    /// A write that fails below SQLite (an I/O error, a failed fsync, a full disk, a read-only file system) throws a
    /// `StoreError` `.io` that names the fault, and leaves the database to be recovered: every later write first
    /// runs `recover()`, and is refused with the same kind of error, without running `body`, until recovery succeeds;
    /// a task also retries it every second meanwhile.
    /// Nothing of a failed write is acknowledged.
    public func write<T: Sendable>(_ body: @escaping @Sendable (StoreTransaction) throws -> T) async throws -> T {
        try self.ensureOpen()
        try await self.recover()
        do {
            return try await self.queue.write { db in try body(StoreTransaction(db: db, chainHash: self.chainHash)) }
        } catch let error as DatabaseError where Self.isStorageFault(error) {
            self.needsRecovery.store(true, ordering: .sequentiallyConsistent)
            let systemErrno = try? await self.queue.writeWithoutTransaction { db in Self.systemErrno(db) }
            let reason = Self.reason(error, systemErrno: systemErrno ?? 0, readOnly: self.isFileSystemReadOnly)
            // A passing fault (one failed fsync) is over at once: recover now rather than at the next write, which
            // shortens the time in which a crash could bring the failed commit back (see `recover()`).
            try? await self.recover()
            self.scheduleRecovery()
            throw StoreError(.io, reason)
        }
    }

    /// Whether a write failed below SQLite and the database has not been recovered since.
    public var isRecovering: Bool { self.needsRecovery.load(ordering: .sequentiallyConsistent) }

    /// Recovers after a write that failed below SQLite; does nothing when none did. Returns when the database holds
    /// exactly what was acknowledged, durably, and nothing of the failed write can come back; throws `StoreError`
    /// `.io` while the fault lasts.
    ///
    /// A commit whose WAL write or fsync failed leaves its frames in the WAL file, past the last frame SQLite counts
    /// as committed. This connection ignores them, but a crash (or closing and reopening the file) would run SQLite's
    /// WAL recovery, which scans the file and would bring a complete failed commit back: a change the client was told
    /// had failed. A `wal_checkpoint(TRUNCATE)` on this same connection copies the committed frames into the
    /// database file, syncs it, and truncates the WAL to nothing, failed frames included. (Reopening the connection
    /// instead, as one might after a failed fsync, would run exactly that WAL recovery; the checkpoint also rewrites,
    /// and syncs, every page whose earlier write-back may have been lost with the failed fsync.)
    public func recover() async throws {
        guard self.needsRecovery.load(ordering: .sequentiallyConsistent) else { return }
        try self.ensureOpen()
        do {
            let (walFrames, checkpointed) = try await self.queue.writeWithoutTransaction { db in
                try db.checkpoint(.truncate)
            }
            guard walFrames == checkpointed else {
                throw StoreError(
                    .io,
                    "the WAL checkpoint is incomplete; not recovered yet from an earlier failed write"
                )
            }
        } catch let error as DatabaseError {
            let systemErrno = try? await self.queue.writeWithoutTransaction { db in Self.systemErrno(db) }
            let reason = Self.reason(error, systemErrno: systemErrno ?? 0, readOnly: self.isFileSystemReadOnly)
            throw StoreError(.io, "\(reason); not recovered yet from an earlier failed write")
        }
        if self.needsRecovery.exchange(false, ordering: .sequentiallyConsistent) {
            self.logger.notice("database recovered from a failed write", metadata: ["store.path": "\(self.path)"])
        }
    }

    /// While the store is recovering, retries `recover()` every second, so that it recovers by itself soon after the
    /// fault is gone, without waiting for the next write (until then a crash could bring a failed commit back).
    private func scheduleRecovery() {
        guard self.isRecovering,
            self.recoveryScheduled.compareExchange(expected: false, desired: true, ordering: .sequentiallyConsistent)
                .exchanged
        else { return }
        Task {
            while self.isRecovering && !self.closed.load(ordering: .sequentiallyConsistent) {
                try? await Task.sleep(for: .seconds(1))
                guard !self.closed.load(ordering: .sequentiallyConsistent) else { break }
                try? await self.recover()
            }
            self.recoveryScheduled.store(false, ordering: .sequentiallyConsistent)
        }
    }

    /// Faults below SQLite (the disk, the file system), as opposed to a refused statement (a constraint) or a bug.
    static func isStorageFault(_ error: DatabaseError) -> Bool {
        switch error.resultCode {
        case .SQLITE_IOERR, .SQLITE_FULL, .SQLITE_READONLY, .SQLITE_CANTOPEN, .SQLITE_NOLFS, .SQLITE_PROTOCOL:
            true
        default: false
        }
    }

    /// Whether the database's file system refuses writes as read-only: `access(W_OK)` says so after an ordinary
    /// remount; after the kernel's own (ext4 `errors=remount-ro`) only a write does, so an empty probe file is
    /// created and removed. Called on failure paths only.
    var isFileSystemReadOnly: Bool {
        let directory = Self.directory(of: self.path)
        if access(directory, W_OK) != 0 { return errno == EROFS }
        let probe = "\(directory)/\(Self.writeProbePrefix)\(getpid())"
        let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return errno == EROFS }
        Glibc.close(fd)
        unlink(probe)
        return false
    }

    static let writeProbePrefix = ".write-probe-"

    /// The directory `path` is in.
    static func directory(of path: String) -> String {
        let slash = path.lastIndex(of: "/")
        return slash.map { String(path[..<$0]) }.map { $0.isEmpty ? "/" : $0 } ?? "."
    }

    /// Removes the probe files of `isFileSystemReadOnly` that a process killed between creating and removing one left
    /// behind: empty regular files named `.write-probe-` and digits, nothing else. A stale one named with a pid this
    /// process has again would make the probe's exclusive create fail with EEXIST and miss a read-only file system.
    /// Best effort: on a read-only file system they stay.
    static func removeStaleWriteProbes(in directory: String, logger: Logger) {
        guard let stream = opendir(directory) else { return }
        defer { closedir(stream) }
        let descriptor = dirfd(stream)
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard name.hasPrefix(Self.writeProbePrefix) else { continue }
            let suffix = name.utf8.dropFirst(Self.writeProbePrefix.utf8.count)
            guard !suffix.isEmpty, suffix.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
                continue
            }
            var information = stat()
            guard fstatat(descriptor, name, &information, AT_SYMLINK_NOFOLLOW) == 0,
                information.st_mode & S_IFMT == S_IFREG, information.st_size == 0
            else { continue }
            if unlinkat(descriptor, name, 0) == 0 {
                logger.notice("removed a stale write probe", metadata: ["store.file": "\(directory)/\(name)"])
            }
        }
    }

    /// The `errno` of the system call behind SQLite's last failure on this connection (`sqlite3_system_errno`,
    /// looked up at run time: the store's modules do not import SQLite's C module), or 0.
    static func systemErrno(_ db: Database) -> Int32 {
        typealias Function = @convention(c) (OpaquePointer?) -> Int32
        guard let connection = db.sqliteConnection, let symbol = dlsym(nil, "sqlite3_system_errno") else { return 0 }
        return unsafeBitCast(symbol, to: Function.self)(connection)
    }

    /// The fault in words an operator acts on, with SQLite's code and the system's (bound values never appear:
    /// GRDB keeps them out).
    static func reason(_ error: DatabaseError, systemErrno: Int32 = 0, readOnly: Bool = false) -> String {
        var code = "SQLite error \(error.extendedResultCode.rawValue)"
        if systemErrno != 0 { code += ", \(String(cString: strerror(systemErrno)))" }
        // SQLite reports a write refused by a read-only file system as an I/O error, and its errno is not always
        // kept by then: the file system tells.
        if systemErrno == EROFS || (error.resultCode == .SQLITE_IOERR && readOnly) {
            return "the file system is read-only (\(code))"
        }
        switch systemErrno {
        case ENOSPC, EDQUOT: return "the disk is full (\(code))"
        default: break
        }
        switch error.resultCode {
        case .SQLITE_FULL: return "the disk is full (\(code))"
        case .SQLITE_READONLY: return "the file system is read-only (\(code))"
        case .SQLITE_IOERR:
            if error.extendedResultCode == .SQLITE_IOERR_FSYNC || error.extendedResultCode == .SQLITE_IOERR_DIR_FSYNC {
                return "the disk did not confirm a write (fsync failed; \(code))"
            }
            return "an I/O error on the disk (\(code))"
        case .SQLITE_CANTOPEN: return "a database file cannot be opened (\(code))"
        default: return code
        }
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
