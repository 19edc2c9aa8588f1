import Foundation
import GRDB
import TestSupport
import Testing

@testable import VaultStore

/// The `v3-grant-rules` migration: a file written by the schema before it opens, keeps its grants as they were and
/// has no rules; rules are stored in order, replaced whole, and go with their connection.
@Suite struct GrantRulesMigrationTests {
    static let time = "2025-01-01T00:00:00Z"

    /// A file as the schema before grant rules left it (migrations up to `v2-issued-tokens`), with one connection
    /// and its grants.
    static func fileBeforeRules(_ fixture: StoreFixture) async throws {
        let queue = try DatabaseQueue(path: fixture.path)
        try VaultDatabase.migrator.migrate(queue, upTo: "v2-issued-tokens")
        try await queue.write { db in
            try db.execute(
                sql: """
                    INSERT INTO connections (id, provider, settings, state, revision, created_at, updated_at)
                    VALUES ('acme', 'personio-v2', '{}', 'active', 1, ?, ?)
                    """,
                arguments: [Self.time, Self.time]
            )
            for (kind, value) in [("unit", "app.service"), ("uid", "1000"), ("group", "payroll"), ("uid", "7")] {
                try db.execute(
                    sql: "INSERT INTO grants (connection_id, kind, value) VALUES ('acme', ?, ?)",
                    arguments: [kind, value]
                )
            }
        }
        #expect(try await queue.read { db in try db.tableExists("grant_rules") } == false)
        try queue.close()
    }

    @Test func aFileWrittenBeforeRulesOpensWithItsGrantsUnchangedAndNoRules() async throws {
        let fixture = try StoreFixture()
        defer { fixture.directory.remove() }
        try await Self.fileBeforeRules(fixture)
        let database = try fixture.open()
        defer { try? database.close() }
        let (grants, rules) = try await database.read { tx in
            (try tx.grants(of: "acme"), try tx.grantRules(of: "acme"))
        }
        #expect(
            grants == [
                GrantRecord(kind: .group, value: "payroll"), GrantRecord(kind: .uid, value: "1000"),
                GrantRecord(kind: .uid, value: "7"), GrantRecord(kind: .unit, value: "app.service"),
            ]
        )
        #expect(rules.isEmpty)
        let applied = try await database.read { tx in
            try String.fetchAll(tx.db, sql: "SELECT identifier FROM grdb_migrations ORDER BY identifier")
        }
        #expect(applied.contains("v3-grant-rules"))
    }

    @Test func rulesAreStoredInOrderReplacedWholeAndGoWithTheirConnection() async throws {
        let fixture = try StoreFixture()
        defer { fixture.directory.remove() }
        try await Self.fileBeforeRules(fixture)
        let database = try fixture.open()
        defer { try? database.close() }
        let rules = [#"{"unit":"z.service"}"#, #"{"uid":5}"#, #"{"group":"a"}"#]
        try await database.write { tx in try tx.replaceGrantRules(of: "acme", with: rules) }
        #expect(try await database.read { tx in try tx.grantRules(of: "acme").map(\.rule) } == rules)
        #expect(try await database.read { tx in try tx.grantRules(of: "acme").map(\.position) } == [0, 1, 2])

        try await database.write { tx in try tx.replaceGrantRules(of: "acme", with: [rules[1]]) }
        #expect(
            try await database.read { tx in try tx.grantRules(of: "acme") } == [
                GrantRuleRecord(position: 0, rule: rules[1])
            ]
        )
        // The one-selector lists are untouched by rule changes.
        #expect(try await database.read { tx in try tx.grants(of: "acme").count } == 4)

        try await database.write { tx in try tx.deleteConnection("acme") }
        let left = try await database.read { tx in
            try Int.fetchOne(tx.db, sql: "SELECT COUNT(*) FROM grant_rules") ?? -1
        }
        #expect(left == 0)
    }

    @Test func aRuleForAnUnknownConnectionIsRefusedByTheForeignKey() async throws {
        try await StoreFixture.with { _, database in
            await #expect(throws: DatabaseError.self) {
                try await database.write { tx in try tx.replaceGrantRules(of: "nobody", with: [#"{"uid":1}"#]) }
            }
        }
    }
}
