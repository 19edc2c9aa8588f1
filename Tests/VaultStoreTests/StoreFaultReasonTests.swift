import Foundation
import GRDB
import Logging
import Testing

@testable import VaultStore

#if canImport(Glibc)
import Glibc
#endif

/// How a write that failed below SQLite is named to the operator (the end-to-end faults are in
/// FaultInjectionEndToEndTests), and which SQLite failures count as faults of the disk.
@Suite("Store fault reasons")
struct StoreFaultReasonTests {
    @Test(
        "each fault below SQLite is named in words an operator acts on",
        arguments: [
            (ResultCode.SQLITE_FULL, Int32(0), false, "the disk is full (SQLite error 13)"),
            (
                ResultCode.SQLITE_IOERR_WRITE, ENOSPC, false,
                "the disk is full (SQLite error 778, No space left on device)"
            ),
            (
                ResultCode.SQLITE_IOERR_WRITE, EROFS, false,
                "the file system is read-only (SQLite error 778, Read-only file system)"
            ),
            (ResultCode.SQLITE_IOERR_WRITE, Int32(0), true, "the file system is read-only (SQLite error 778)"),
            (
                ResultCode.SQLITE_IOERR_WRITE, EIO, false,
                "an I/O error on the disk (SQLite error 778, Input/output error)"
            ),
            (
                ResultCode.SQLITE_IOERR_FSYNC, EIO, false,
                "the disk did not confirm a write (fsync failed; SQLite error 1034, Input/output error)"
            ),
            (ResultCode.SQLITE_READONLY, Int32(0), false, "the file system is read-only (SQLite error 8)"),
            (ResultCode.SQLITE_CANTOPEN, Int32(0), false, "a database file cannot be opened (SQLite error 14)"),
        ]
    )
    func reason(code: ResultCode, systemErrno: Int32, readOnly: Bool, expected: String) {
        let error = DatabaseError(resultCode: code, message: "ignored")
        #expect(VaultDatabase.reason(error, systemErrno: systemErrno, readOnly: readOnly) == expected)
    }

    @Test("disk and file-system failures leave the store recovering; refused statements do not")
    func storageFaults() {
        for code in [
            ResultCode.SQLITE_IOERR_FSYNC, .SQLITE_IOERR_WRITE, .SQLITE_FULL, .SQLITE_READONLY, .SQLITE_CANTOPEN,
        ] {
            #expect(VaultDatabase.isStorageFault(DatabaseError(resultCode: code)), "\(code)")
        }
        for code in [ResultCode.SQLITE_CONSTRAINT_UNIQUE, .SQLITE_BUSY, .SQLITE_CORRUPT, .SQLITE_ERROR, .SQLITE_MISUSE]
        {
            #expect(!VaultDatabase.isStorageFault(DatabaseError(resultCode: code)), "\(code)")
        }
    }

    @Test("a store that never failed is not recovering, and recover() does nothing")
    func noFault() async throws {
        let directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent(
            "cv-fault-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        )
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let database = try VaultDatabase(
            path: directory.appendingPathComponent("vault.sqlite3").path,
            chainHash: { $0 },
            logger: Logger(label: "test")
        )
        defer { try? database.close() }
        #expect(!database.isRecovering)
        try await database.recover()
        #expect(!database.isRecovering)
        #expect(!database.isFileSystemReadOnly)
    }
}
