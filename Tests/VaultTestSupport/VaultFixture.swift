import Foundation
import Logging
import TestSupport
import VaultAPI
import VaultCore
import VaultCrypto
import VaultStore

#if canImport(Glibc)
import Glibc
#endif

/// A vault on a real SQLite file and key file in a fresh temporary directory, with its logs captured.
public struct VaultFixture: Sendable {
    public let directory: TemporaryDirectory
    public let logs = LogCapture()

    public var databasePath: String { self.directory.file("vault.sqlite3") }
    public var keyFilePath: String { self.directory.file("master.key") }
    public var stagedKeyPath: String { KeyFile.stagedPath(for: self.keyFilePath) }

    public init() throws {
        self.directory = try TemporaryDirectory()
    }

    public func configuration(createKeyIfMissing: Bool = true) -> VaultConfiguration {
        VaultConfiguration(
            databasePath: self.databasePath,
            keyFilePath: self.keyFilePath,
            createKeyIfMissing: createKeyIfMissing,
            // The Personio stand-in listens on plain http://127.0.0.1, as under `connvaultd --dev`.
            allowInsecureUpstream: true
        )
    }

    public func open(createKeyIfMissing: Bool = true) async throws -> Vault {
        try await Vault.open(self.configuration(createKeyIfMissing: createKeyIfMissing), logger: self.logs.logger())
    }

    /// Opens a vault, runs `body`, closes the vault and removes the directory, whatever happens.
    public static func with(_ body: (VaultFixture, Vault) async throws -> Void) async throws {
        let fixture = try VaultFixture()
        defer { fixture.directory.remove() }
        let vault = try await fixture.open()
        do {
            try await body(fixture, vault)
        } catch {
            try? await vault.close()
            throw error
        }
        try await vault.close()
    }

    // MARK: - The database file, beside the vault

    /// Runs `body` on a second connection to the database file, as a tamperer or an auditor would.
    public func store<T: Sendable>(_ body: @escaping @Sendable (StoreTransaction) throws -> T) async throws -> T {
        let database = try VaultDatabase(
            path: self.databasePath,
            chainHash: Hashing.blake2b256,
            logger: Logger(label: "raw") { _ in SwiftLogNoOpLogHandler() }
        )
        defer { try? database.close() }
        return try await database.write(body)
    }

    /// The current master key, read from the key file.
    public func masterKey(id: Int64) throws -> MasterKey {
        MasterKey(id: id, key: try KeyFile.load(path: self.keyFilePath))
    }

    /// Every byte of the database, WAL and shared-memory files as they are now.
    public func databaseFiles() throws -> [String: [UInt8]] {
        var files: [String: [UInt8]] = [:]
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let path = self.databasePath + suffix
            if FileManager.default.fileExists(atPath: path) {
                files[path] = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            }
        }
        return files
    }

    public static func size(_ path: String) -> Int? {
        var info = stat()
        return stat(path, &info) == 0 ? Int(info.st_size) : nil
    }
}

// MARK: - Requests and values

/// Whoever the tests act as.
public let admin = AuditActor(uid: 1000, pid: 4242, comm: "connvaultctl")

public func secretInput(_ value: String) -> SecretInput { SecretInput(bytes: Array(value.utf8)) }

public func secrets(_ values: [SecretField: String]) -> SecretsInput {
    SecretsInput(values.mapValues(secretInput))
}

public func v2Request(
    _ id: String,
    clientID: String = "fake-client-id",
    clientSecret: String? = nil,
    settings: ConnectionSettings = .init(),
    grants: Grants = .init()
) -> CreateConnectionRequest {
    CreateConnectionRequest(
        id: id,
        provider: .personioV2,
        settings: settings,
        secrets: secrets([.clientID: clientID, .clientSecret: clientSecret ?? "fake-secret-\(id)"]),
        grants: grants
    )
}

public func recruitingRequest(
    _ id: String,
    token: String? = nil,
    companyID: String = "12345"
) -> CreateConnectionRequest {
    CreateConnectionRequest(
        id: id,
        provider: .personioRecruiting,
        settings: ConnectionSettings(companyID: companyID),
        secrets: secrets([.recruitingToken: token ?? "fake-recruiting-\(id)"])
    )
}

public func text(_ secret: SecretBytes?) -> String? {
    secret?.withUnsafeBytes { String(decoding: $0, as: UTF8.self) }
}

public func secretBytes(_ value: String) -> SecretBytes {
    Array(value.utf8).withUnsafeBytes { SecretBytes(copying: $0) }
}

/// The decrypted value of one field of a connection (fake values only).
public func decrypted(_ vault: Vault, _ id: String, _ field: SecretField) async throws -> String? {
    text(try await vault.credentials(id).secrets[field])
}

/// Everything an operation could change, to prove a refused one changed nothing.
public struct VaultState: Equatable, Sendable {
    public var views: [ConnectionView]
    public var auditCount: Int
    public var secrets: [SecretRecord]
    public var dataKeys: [DataKeyRecord]
    public var grants: [String: [GrantRecord]]
    public var masterKeys: [MasterKeyRecord]

    public static func of(_ vault: Vault, _ fixture: VaultFixture) async throws -> VaultState {
        let views = try await vault.list()
        let ids = views.map(\.id)
        let raw = try await fixture.store { tx in
            (
                try tx.auditCount(), try ids.flatMap { try tx.secrets(of: $0) }, try tx.dataKeys(),
                try Dictionary(uniqueKeysWithValues: ids.map { ($0, try tx.grants(of: $0)) }), try tx.masterKeys()
            )
        }
        return VaultState(
            views: views,
            auditCount: raw.0,
            secrets: raw.1,
            dataKeys: raw.2,
            grants: raw.3,
            masterKeys: raw.4
        )
    }
}

/// Blob literal for tamper SQL.
public func blob(_ bytes: [UInt8]) -> String { "X'\(Hashing.hex(bytes))'" }

extension Array where Element == UInt8 {
    /// Whether `needle` occurs anywhere in these bytes.
    public func containsSequence(_ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty else { return true }
        guard needle.count <= self.count else { return false }
        var index = 0
        while index <= self.count - needle.count {
            if self[index] == needle[0] && self[index..<(index + needle.count)].elementsEqual(needle) { return true }
            index += 1
        }
        return false
    }
}
