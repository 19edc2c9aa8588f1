import Foundation
import Logging
import VaultAPI
import VaultCore

/// Fills a vault with `connections` connections and an audit trail of `auditRows` rows through VaultCore's own
/// operations, as the daemon runs them: `Vault.create` (what `connvaultctl add` reaches: validation, a fresh data key,
/// every secret sealed, fingerprints, grants, the `connection.create` audit row, one transaction each) and
/// `Vault.recordVerification` (a `connection.verify` row chained through the store's append path, one transaction
/// each). The vault lives on a memory file system while it is filled (each commit's fsync would otherwise cost the
/// disk's latency, 1.1 million times), and is then copied to the measured directory.
struct ScaleSeed {
    var connections: Int
    var auditRows: Int

    /// The id of connection `index` (0-based): `scale-000000`…
    static func id(_ index: Int) -> String {
        let digits = String(index)
        return "scale-" + String(repeating: "0", count: max(0, 6 - digits.count)) + digits
    }

    /// What `seed.txt` says of a seeded state directory, so a cached one is reused only for the same figures.
    var label: String { "connections=\(self.connections) audit_rows=\(self.auditRows) format=1\n" }

    /// Seeds a fresh `--dev` state directory `state` (created, mode 0700).
    func seed(into state: String, log: (String) -> Void) async throws {
        try FileManager.default.createDirectory(
            atPath: state,
            withIntermediateDirectories: true,
            attributes: [.posixPermissions: 0o700]
        )
        var logger = Logger(label: "connvault-scale")
        logger.logLevel = .warning
        let vault = try await Vault.open(
            VaultConfiguration(
                databasePath: "\(state)/vault.sqlite3",
                keyFilePath: "\(state)/master.key",
                createKeyIfMissing: true,
                allowInsecureUpstream: true
            ),
            logger: logger
        )
        let actor = AuditActor(uid: getuid(), pid: getpid(), comm: "connvaultctl")
        let started = ContinuousClock.now
        try await Self.inParallel(count: self.connections) { index in
            _ = try await vault.create(Self.request(index), by: actor)
        }
        log("seeded \(self.connections) connections in \(Seconds(ContinuousClock.now - started))")
        // The trail so far: vault.init and one connection.create per connection.
        let more = max(0, self.auditRows - 1 - self.connections)
        let trailStarted = ContinuousClock.now
        try await Self.inParallel(count: more) { index in
            try await vault.recordVerification(
                Self.id(index % max(1, self.connections)),
                by: actor,
                ok: true,
                detail: "scale seed: verified row \(index)"
            )
        }
        log("appended \(more) audit rows in \(Seconds(ContinuousClock.now - trailStarted))")
        try await vault.close()
        try self.label.write(toFile: "\(state)/seed.txt", atomically: true, encoding: .utf8)
    }

    /// A personio-v2 connection as `connvaultctl add` makes one: client id and secret, a scope, a uid grant.
    static func request(_ index: Int) -> CreateConnectionRequest {
        CreateConnectionRequest(
            id: Self.id(index),
            provider: .personioV2,
            settings: ConnectionSettings(scope: "personio:persons:read"),
            secrets: SecretsInput([
                .clientID: SecretInput(bytes: Array("scale-client-\(index)".utf8)),
                .clientSecret: SecretInput(bytes: Array("CANARY-scale-secret-\(index)".utf8)),
            ]),
            grants: Grants(uids: [UInt32(20_000 + index % 1_000)])
        )
    }

    /// Runs `body(0..<count)` with a few calls in flight (the store runs one transaction at a time; the rest of each
    /// call, validation and the hops, overlaps).
    static func inParallel(
        count: Int,
        width: Int = 8,
        _ body: @escaping @Sendable (Int) async throws -> Void
    ) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            var next = 0
            while next < min(width, count) {
                let index = next
                group.addTask { try await body(index) }
                next += 1
            }
            while try await group.next() != nil {
                if next < count {
                    let index = next
                    group.addTask { try await body(index) }
                    next += 1
                }
            }
        }
    }
}

/// A duration printed in seconds with three decimals.
struct Seconds: CustomStringConvertible {
    var value: Double

    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self.value = Double(seconds) + Double(attoseconds) / 1e18
    }

    var description: String { String(format: "%.3f s", self.value) }
}
