import Testing
import VaultStore

@Suite struct AuditChainTests {
    /// A store with `count` chained audit rows (one transaction, so one commit).
    func withChain(_ count: Int, _ body: (VaultDatabase) async throws -> Void) async throws {
        try await StoreFixture.with { _, database in
            try await database.write { tx in
                for n in 1...count {
                    try tx.appendAudit(
                        Sample.audit(
                            n,
                            connection: n % 3 == 0 ? nil : "acme",
                            unit: n.isMultiple(of: 2) ? "app.service" : nil
                        )
                    )
                }
            }
            try await body(database)
        }
    }

    @Test func rowsAreNumberedAndChainedByPrevHash() async throws {
        try await self.withChain(6) { database in
            let rows = try await database.read { try $0.audit(connection: nil, since: nil, limit: 100) }
            #expect(rows.map(\.seq) == [1, 2, 3, 4, 5, 6])
            #expect(rows[0].prevHash == [UInt8](repeating: 0, count: 32))
            for (previous, row) in zip(rows, rows.dropFirst()) {
                #expect(row.prevHash == previous.hash)
            }
            #expect(Set(rows.map(\.hash)).count == 6)
            #expect(rows.allSatisfy { $0.hash.count == 32 })
            #expect(rows[1].actorUnit == "app.service")
            #expect(rows[0].actorUnit == nil)
            #expect(rows[2].connectionID == nil)
        }
    }

    @Test func appendReturnsTheStoredRow() async throws {
        try await StoreFixture.with { _, database in
            let appended = try await database.write { tx in
                (try tx.appendAudit(Sample.audit(1)), try tx.appendAudit(Sample.audit(2)))
            }
            let stored = try await database.read { try $0.audit(connection: nil, since: nil, limit: 10) }
            #expect(stored == [appended.0, appended.1])
        }
    }

    @Test func anIntactChainVerifies() async throws {
        try await self.withChain(5) { database in
            let (report, rows) = try await database.read { tx in
                (try tx.verifyAuditChain(), try tx.audit(connection: nil, since: nil, limit: 100))
            }
            #expect(report.brokenAt == nil)
            #expect(report.reason == nil)
            #expect(report.entries == 5)
            #expect(report.head == rows.last?.hash)
        }
    }

    @Test func anEmptyChainVerifies() async throws {
        try await StoreFixture.with { _, database in
            let report = try await database.read { try $0.verifyAuditChain() }
            #expect(report.entries == 0)
            #expect(report.head == nil)
            #expect(report.brokenAt == nil)
            #expect(report.reason == nil)
        }
    }

    /// Any edit of a hashed column of row 3 breaks the chain at row 3.
    @Test(arguments: [
        "UPDATE audit SET detail = 'revision 99' WHERE seq = 3",
        "UPDATE audit SET action = 'connection.create' WHERE seq = 3",
        "UPDATE audit SET time = '2030-01-01T00:00:00Z' WHERE seq = 3",
        "UPDATE audit SET actor_uid = 0 WHERE seq = 3",
        "UPDATE audit SET actor_pid = 1 WHERE seq = 3",
        "UPDATE audit SET actor_comm = 'evil' WHERE seq = 3",
        "UPDATE audit SET actor_unit = 'evil.service' WHERE seq = 3",
        "UPDATE audit SET connection_id = 'acme' WHERE seq = 3",
        "UPDATE audit SET outcome = 'denied' WHERE seq = 3",
        "UPDATE audit SET hash = zeroblob(32) WHERE seq = 3",
    ])
    func anEditedRowBreaksTheChainThere(tamper: String) async throws {
        try await self.withChain(5) { database in
            try await database.write { try $0.executeForTesting(tamper) }
            let report = try await database.read { try $0.verifyAuditChain() }
            #expect(report.brokenAt == 3)
            #expect(report.reason?.contains("do not match its hash") == true)
            #expect(report.entries == 3)
        }
    }

    @Test func aChangedPrevHashBreaksTheChainThere() async throws {
        try await self.withChain(5) { database in
            try await database.write {
                try $0.executeForTesting("UPDATE audit SET prev_hash = zeroblob(32) WHERE seq = 4")
            }
            let report = try await database.read { try $0.verifyAuditChain() }
            #expect(report.brokenAt == 4)
            #expect(report.reason?.contains("prev_hash") == true)
        }
    }

    @Test func aDeletedMiddleRowBreaksTheChainAtTheNextRow() async throws {
        try await self.withChain(5) { database in
            let rows = try await database.read { try $0.audit(connection: nil, since: nil, limit: 100) }
            try await database.write { try $0.executeForTesting("DELETE FROM audit WHERE seq = 3") }
            let report = try await database.read { try $0.verifyAuditChain() }
            #expect(report.brokenAt == 4)
            #expect(report.reason?.contains("row 3 is missing") == true)
            #expect(report.head == rows[1].hash, "the last intact row is 2")
        }
    }

    @Test func aRenumberedRowAfterADeleteStillBreaksTheChain() async throws {
        try await self.withChain(5) { database in
            try await database.write { tx in
                try tx.executeForTesting("DELETE FROM audit WHERE seq = 3")
                try tx.executeForTesting("UPDATE audit SET seq = 3 WHERE seq = 4")
                try tx.executeForTesting("UPDATE audit SET seq = 4 WHERE seq = 5")
            }
            let report = try await database.read { try $0.verifyAuditChain() }
            #expect(report.brokenAt == 3)
        }
    }

    @Test func appendingAfterTheLastRowKeepsChaining() async throws {
        try await self.withChain(3) { database in
            _ = try await database.write { try $0.appendAudit(Sample.audit(4)) }
            let report = try await database.read { try $0.verifyAuditChain() }
            #expect(report.entries == 4)
            #expect(report.brokenAt == nil)
        }
    }

    @Test func auditQueriesFilterByConnectionSinceAndLimit() async throws {
        try await self.withChain(9) { database in
            let (acme, after, limited, count) = try await database.read { tx in
                (
                    try tx.audit(connection: "acme", since: nil, limit: 100),
                    try tx.audit(connection: nil, since: 6, limit: 100),
                    try tx.audit(connection: nil, since: nil, limit: 2),
                    try tx.auditCount()
                )
            }
            #expect(acme.map(\.seq) == [1, 2, 4, 5, 7, 8])
            #expect(after.map(\.seq) == [7, 8, 9])
            #expect(limited.map(\.seq) == [1, 2])
            #expect(count == 9)
        }
    }
}
