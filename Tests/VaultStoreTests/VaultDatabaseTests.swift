import Foundation
import TestSupport
import Testing
import VaultStore

#if canImport(Glibc)
import Glibc
#endif

@Suite struct VaultDatabaseTests {
    @Test func fileIsCreatedPrivateAndWALFilesAreNotGroupOrWorldReadable() async throws {
        try await StoreFixture.with { fixture, database in
            #expect(StoreFixture.mode(fixture.path) == 0o600)
            try await database.write { tx in
                try tx.activateMasterKey(Sample.masterKey(1))
                try Sample.insertFull(tx, "acme")
            }
            for suffix in ["", "-wal", "-shm"] {
                let mode = try #require(
                    StoreFixture.mode(fixture.path + suffix),
                    "\(suffix) exists while the store is open"
                )
                #expect(mode & 0o077 == 0, "\(fixture.path + suffix) has mode \(String(mode, radix: 8))")
            }
        }
    }

    @Test func anExistingFileWithLooseModeIsTightened() throws {
        let fixture = try StoreFixture()
        defer { fixture.directory.remove() }
        #expect(FileManager.default.createFile(atPath: fixture.path, contents: nil))
        #expect(chmod(fixture.path, 0o644) == 0)
        let database = try fixture.open()
        defer { try? database.close() }
        #expect(StoreFixture.mode(fixture.path) == 0o600)
    }

    @Test func aSymlinkedDatabasePathIsRefused() throws {
        let fixture = try StoreFixture()
        defer { fixture.directory.remove() }
        #expect(symlink(fixture.directory.file("elsewhere.sqlite3"), fixture.path) == 0)
        let error = #expect(throws: StoreError.self) { try fixture.open() }
        #expect(error?.code == .io)
        #expect(error?.message.contains(fixture.path) == true)
    }

    /// The pragmas are per connection, so they are read on the store's own connection, through SQLite's pragma
    /// table-valued functions, into a scratch row that is removed in the same transaction.
    @Test func pragmasAreInForce() async throws {
        try await StoreFixture.with { _, database in
            let values = try await database.write { tx -> String in
                try tx.executeForTesting(
                    """
                    INSERT INTO connections (id, provider, settings, state, revision, created_at, updated_at)
                    SELECT 'pragmas', 'test', printf('%s|%d|%d|%d',
                        (SELECT journal_mode FROM pragma_journal_mode), (SELECT synchronous FROM pragma_synchronous),
                        (SELECT secure_delete FROM pragma_secure_delete), (SELECT foreign_keys FROM pragma_foreign_keys)),
                        'active', 1, '', ''
                    """
                )
                let values = try #require(try tx.connection("pragmas")).settingsJSON
                try tx.executeForTesting("DELETE FROM connections WHERE id = 'pragmas'")
                return values
            }
            #expect(values == "wal|2|1|1", "journal_mode|synchronous|secure_delete|foreign_keys")
            #expect(try await database.read { try $0.connections() }.isEmpty)
        }
    }

    /// WAL mode is recorded in the file itself: header bytes 18 and 19 are 2.
    @Test func fileHeaderRecordsWALMode() async throws {
        let fixture = try StoreFixture()
        defer { fixture.directory.remove() }
        let database = try fixture.open()
        try await database.write { try $0.activateMasterKey(Sample.masterKey(1)) }
        try database.close()
        let header = try #require(FileManager.default.contents(atPath: fixture.path)).prefix(20)
        #expect(Array(header.prefix(16)) == Array("SQLite format 3\0".utf8))
        #expect(header[header.startIndex + 18] == 2)
        #expect(header[header.startIndex + 19] == 2)
    }

    @Test func foreignKeysAreEnforced() async throws {
        try await StoreFixture.with { _, database in
            try await database.write { try $0.activateMasterKey(Sample.masterKey(1)) }
            await #expect(throws: (any Error).self) {
                try await database.write { try $0.putDataKey(Sample.dataKey("nobody")) }
            }
            await #expect(throws: (any Error).self) {
                try await database.write { tx in
                    try tx.insertConnection(Sample.connection("acme"))
                    try tx.putDataKey(Sample.dataKey("acme", keyID: 99))
                }
            }
            #expect(try await database.read { try $0.connections() }.isEmpty)
        }
    }

    @Test func reopeningKeepsDataAndMigrationsRunOnce() async throws {
        let fixture = try StoreFixture()
        defer { fixture.directory.remove() }
        let first = try fixture.open()
        try await first.write { tx in
            try tx.activateMasterKey(Sample.masterKey(1))
            try Sample.insertFull(tx, "acme")
            try tx.appendAudit(Sample.audit(1))
        }
        try first.close()
        let second = try fixture.open()
        defer { try? second.close() }
        let (connections, secrets, audit) = try await second.read { tx in
            (try tx.connections(), try tx.secrets(of: "acme"), try tx.auditCount())
        }
        #expect(connections == [Sample.connection("acme")])
        #expect(secrets.count == 2)
        #expect(audit == 1)
        #expect(try await second.integrityCheck() == "ok")
    }

    @Test func aClosedStoreRefusesWork() async throws {
        let fixture = try StoreFixture()
        defer { fixture.directory.remove() }
        let database = try fixture.open()
        try database.close()
        try database.close()  // idempotent
        await #expect(throws: (any Error).self) { try await database.read { try $0.connections() } }
    }

    @Test func aFailedTransactionLeavesNothingBehind() async throws {
        struct Abort: Error {}
        try await StoreFixture.with { _, database in
            await #expect(throws: Abort.self) {
                try await database.write { tx in
                    try tx.activateMasterKey(Sample.masterKey(1))
                    try Sample.insertFull(tx, "acme")
                    try tx.appendAudit(Sample.audit(1))
                    throw Abort()
                }
            }
            let (connections, keys, audit) = try await database.read { tx in
                (try tx.connections(), try tx.masterKeys(), try tx.auditCount())
            }
            #expect(connections.isEmpty)
            #expect(keys.isEmpty)
            #expect(audit == 0)
        }
    }

    /// A constraint error must not echo the values bound to the statement (they could be ciphertext or settings).
    @Test func errorsDoNotContainBoundValues() async throws {
        try await StoreFixture.with { _, database in
            var bad = Sample.connection("acme")
            bad.settingsJSON = #"{"scope":"BOUND-VALUE-7f3a9c"}"#
            bad.state = "bogus"  // violates the CHECK constraint
            let record = bad
            let error = await #expect(throws: (any Error).self) {
                try await database.write { try $0.insertConnection(record) }
            }
            let text = "\(String(describing: error)) \(String(reflecting: error))"
            #expect(!text.contains("BOUND-VALUE-7f3a9c"))
            #expect(!text.contains("bogus"))
        }
    }

    @Test func checkpointTruncateEmptiesTheWAL() async throws {
        try await StoreFixture.with { fixture, database in
            try await database.write { tx in
                try tx.activateMasterKey(Sample.masterKey(1))
                try Sample.insertFull(tx, "acme")
            }
            #expect((StoreFixture.size(fixture.path + "-wal") ?? 0) > 0)
            try await database.checkpointTruncate()
            #expect(StoreFixture.size(fixture.path + "-wal") == 0)
            #expect(database.fileSize() > 0)
            #expect(database.fileSize() == Int64(StoreFixture.size(fixture.path) ?? -1))
        }
    }

    /// `secure_delete`: a deleted row's bytes are overwritten in the main file once checkpointed.
    @Test func deletedBytesDoNotLingerInTheFile() async throws {
        try await StoreFixture.with { fixture, database in
            try await database.write { tx in
                try tx.activateMasterKey(Sample.masterKey(1))
                try Sample.insertFull(tx, "shredme")
            }
            try await database.checkpointTruncate()
            let marker = Array("fake-ciphertext-shredme-client_secret".utf8)
            #expect(try Self.contents(fixture.path).containsSequence(marker), "the marker is found before the delete")
            try await database.write { try $0.deleteConnection("shredme") }
            try await database.checkpointTruncate()
            for suffix in ["", "-wal"] {
                #expect(!(try Self.contents(fixture.path + suffix).containsSequence(marker)), "\(suffix)")
            }
        }
    }

    static func contents(_ path: String) throws -> [UInt8] {
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        return [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    }
}

extension Array where Element == UInt8 {
    /// Whether `needle` occurs anywhere in these bytes.
    func containsSequence(_ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= self.count else { return needle.isEmpty }
        let first = needle[0]
        var index = 0
        while index <= self.count - needle.count {
            if self[index] == first && Array(self[index..<(index + needle.count)]) == needle { return true }
            index += 1
        }
        return false
    }
}
