import Foundation
import Logging
import TestSupport
import VaultStore

#if canImport(Glibc)
import Glibc
#endif

/// A store in a fresh temporary directory. The crypto module is not linked here, so the audit chain uses a small
/// deterministic stand-in hash: these tests are about chaining and storage, not about the hash function.
struct StoreFixture {
    let directory: TemporaryDirectory
    let path: String

    init() throws {
        self.directory = try TemporaryDirectory()
        self.path = self.directory.file("vault.sqlite3")
    }

    func open() throws -> VaultDatabase {
        try VaultDatabase(
            path: self.path,
            chainHash: testChainHash,
            logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        )
    }

    /// Opens a store, runs `body`, closes the store and removes the directory.
    @discardableResult
    static func with<T>(_ body: (StoreFixture, VaultDatabase) async throws -> T) async throws -> T {
        let fixture = try StoreFixture()
        defer { fixture.directory.remove() }
        let database = try fixture.open()
        do {
            let result = try await body(fixture, database)
            try database.close()
            return result
        } catch {
            try? database.close()
            throw error
        }
    }

    /// Mode bits of `path`, or nil when it does not exist.
    static func mode(_ path: String) -> mode_t? {
        var info = stat()
        return stat(path, &info) == 0 ? info.st_mode & 0o7777 : nil
    }

    /// Size of `path` in bytes, or nil when it does not exist.
    static func size(_ path: String) -> Int? {
        var info = stat()
        return stat(path, &info) == 0 ? Int(info.st_size) : nil
    }
}

/// 32 bytes from four FNV-1a passes with different offsets: deterministic, and any changed byte changes it.
@Sendable func testChainHash(_ bytes: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    for lane in UInt64(0)..<4 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325 &+ lane &* 0x9E37_79B9_7F4A_7C15
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        withUnsafeBytes(of: hash.bigEndian) { out.append(contentsOf: $0) }
    }
    return out
}

/// Rows for tests, with obviously fake bytes.
enum Sample {
    static func connection(_ id: String, state: String = "active", revision: Int64 = 1) -> ConnectionRecord {
        ConnectionRecord(
            id: id,
            provider: "personio-v2",
            settingsJSON: #"{"scope":"fake"}"#,
            state: state,
            revision: revision,
            createdAt: "2025-01-01T00:00:00Z",
            updatedAt: "2025-01-01T00:00:00Z"
        )
    }

    static func secret(_ id: String, field: String, revision: Int64 = 1) -> SecretRecord {
        SecretRecord(
            connectionID: id,
            field: field,
            revision: revision,
            algorithm: 2,
            nonce: [UInt8](repeating: 1, count: 24),
            ciphertext: Array("fake-ciphertext-\(id)-\(field)".utf8),
            fingerprint: "00112233aabbccdd",
            updatedAt: "2025-01-01T00:00:00Z"
        )
    }

    static func dataKey(_ id: String, revision: Int64 = 1, keyID: Int64 = 1) -> DataKeyRecord {
        DataKeyRecord(
            connectionID: id,
            revision: revision,
            keyID: keyID,
            algorithm: 2,
            nonce: [UInt8](repeating: 2, count: 24),
            wrapped: [UInt8](repeating: 3, count: 48)
        )
    }

    static func masterKey(_ id: Int64) -> MasterKeyRecord {
        MasterKeyRecord(
            id: id,
            createdAt: "2025-01-01T00:00:00Z",
            state: "active",
            checkValue: [UInt8](repeating: UInt8(id), count: 16)
        )
    }

    static func audit(_ n: Int, connection: String? = "acme", unit: String? = nil) -> NewAuditEntry {
        NewAuditEntry(
            time: "2025-01-01T00:00:\(String(format: "%02d", n % 60))Z",
            actorUID: 1000,
            actorPID: Int64(4000 + n),
            actorComm: "connvaultctl",
            actorUnit: unit,
            action: "connection.edit",
            connectionID: connection,
            outcome: "ok",
            detail: "revision \(n)"
        )
    }

    /// A connection with a master key, data key, two secrets and two grants.
    static func insertFull(_ tx: StoreTransaction, _ id: String) throws {
        try tx.insertConnection(Self.connection(id))
        try tx.putDataKey(Self.dataKey(id))
        try tx.replaceSecrets(
            of: id,
            with: [Self.secret(id, field: "client_id"), Self.secret(id, field: "client_secret")]
        )
        try tx.replaceGrants(
            of: id,
            with: [GrantRecord(kind: .uid, value: "1000"), GrantRecord(kind: .unit, value: "app.service")]
        )
    }
}
