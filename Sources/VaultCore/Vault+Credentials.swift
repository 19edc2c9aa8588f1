import VaultAPI
import VaultCrypto
import VaultStore

/// What the token broker may know of a connection without decrypting anything.
public struct ConnectionSnapshot: Sendable, Equatable {
    public var id: String
    public var provider: Provider
    public var state: ConnectionState
    public var revision: Int64
    public var settings: ConnectionSettings
    public var grants: Grants
}

/// A connection's decrypted credentials, in locked memory, for one upstream call. Drop it as soon as possible.
public struct ConnectionCredentials: Sendable {
    public var snapshot: ConnectionSnapshot
    public var secrets: [SecretField: SecretBytes]
}

/// The seam for the token broker: metadata, and decrypted credentials of one connection at a time.
extension Vault {
    /// The connection's metadata, or nil when there is none.
    public func snapshot(_ id: String) async throws -> ConnectionSnapshot? {
        guard ConnectionID.isValid(id) else { return nil }
        return try await self.read { tx in try tx.connection(id).map { try Self.snapshot(tx, $0) } }
    }

    /// Every connection's metadata.
    public func snapshots() async throws -> [ConnectionSnapshot] {
        try await self.read { tx in try tx.connections().map { try Self.snapshot(tx, $0) } }
    }

    /// Decrypts the connection's current credentials.
    /// - Throws: `not_found`, or `decryption_failed` when a ciphertext does not authenticate.
    public func credentials(_ id: String) async throws -> ConnectionCredentials {
        guard ConnectionID.isValid(id) else { throw Self.invalidID }
        return try await self.read { tx in
            guard let record = try tx.connection(id) else { throw VaultError.notFound(id) }
            return ConnectionCredentials(
                snapshot: try Self.snapshot(tx, record),
                secrets: try self.openSecrets(tx, record)
            )
        }
    }

    static func snapshot(_ tx: StoreTransaction, _ record: ConnectionRecord) throws -> ConnectionSnapshot {
        ConnectionSnapshot(
            id: record.id,
            provider: try Self.provider(record),
            state: try Self.state(record),
            revision: record.revision,
            settings: try Self.settings(record),
            grants: try Self.grants(tx, of: record.id)
        )
    }
}
