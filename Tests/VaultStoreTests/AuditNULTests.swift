import Testing
import VaultStore

/// Found by the store-records fuzz target: SQLite keeps a NUL inside TEXT, but the text read back ends at it, so a
/// row appended with one never verified again and `audit verify` reported the chain broken. Such an entry is now
/// refused when appended, and the trail stays intact.
@Suite struct AuditNULTests {
    @Test(
        "an audit entry with a NUL in any text field is refused, and the chain still verifies",
        arguments: ["time", "comm", "unit", "action", "connection", "outcome", "detail"]
    )
    func nulIsRefused(field: String) async throws {
        try await StoreFixture.with { _, database in
            try await database.write { tx in _ = try tx.appendAudit(Sample.audit(1)) }
            var entry = Sample.audit(2, unit: "app.service")
            switch field {
            case "time": entry.time += "\u{0}x"
            case "comm": entry.actorComm = "a\u{0}b"
            case "unit": entry.actorUnit = "app.service\u{0}evil"
            case "action": entry.action += "\u{0}"
            case "connection": entry.connectionID = "acme\u{0}other"
            case "outcome": entry.outcome = "ok\u{0}"
            default: entry.detail = "before\u{0}after"
            }
            let refused = entry
            await #expect(throws: StoreError.self) {
                try await database.write { tx in _ = try tx.appendAudit(refused) }
            }
            let report = try await database.read { try $0.verifyAuditChain() }
            #expect(report.brokenAt == nil)
            #expect(report.entries == 1)
        }
    }
}
