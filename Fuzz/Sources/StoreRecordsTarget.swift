import Foundation
import Logging
import VaultAPI
import VaultCrypto
import VaultStore

#if canImport(Glibc)
import Glibc
#endif

/// What the vault reads back from its own database: a connection's settings JSON and a grant rule's canonical JSON
/// (decoded as `Vault` decodes them), and the audit chain (`StoreTransaction.canonical`, `appendAudit`,
/// `verifyAuditChain` on a real SQLite file). The first byte picks which; the rest is the stored text, or the fields
/// of an audit entry separated by 0xFF bytes (never part of UTF-8, so that a field may hold any character, NUL too).
///
/// Invariants: a stored record that decodes re-encodes to a fixed point (decode → encode → decode → encode gives the
/// same value and the same bytes); the canonical encoding of an audit row decodes back to that row (so no two rows
/// encode alike); a row the store appended verifies, and its hash is `H(prev_hash ‖ canonical)`.
final class StoreRecordsTarget: FuzzTarget {
    private var database: VaultDatabase?
    private var appended = 0

    init() {
        let path = ScratchDirectories.make("store") + "/audit.sqlite3"
        do {
            self.database = try VaultDatabase(
                path: path,
                chainHash: Hashing.blake2b256,
                logger: Logger(label: "fuzz") { _ in SwiftLogNoOpLogHandler() }
            )
        } catch {
            FuzzTargets.fail("cannot open \(path): \(error)")
        }
    }

    func run(_ input: [UInt8]) {
        guard let first = input.first else { return }
        let rest = Array(input.dropFirst())
        switch first % 3 {
        case 0: Self.fixedPoint(ConnectionSettings.self, stored: rest)
        case 1: Self.fixedPoint(GrantRule.self, stored: rest)
        default: self.audit(rest)
        }
    }

    /// Decoded as the vault decodes the column, then written back as the vault writes it.
    static func fixedPoint<T: Codable & Equatable>(_ type: T.Type, stored: [UInt8]) {
        guard let value = try? VaultJSON.decoder().decode(T.self, from: Data(stored)) else { return }
        do {
            let text = try VaultJSON.encoder().encode(value)
            let again = try VaultJSON.decoder().decode(T.self, from: text)
            FuzzTargets.check(again == value, "stored \(T.self) changed through encode → decode")
            FuzzTargets.check(try VaultJSON.encoder().encode(again) == text, "stored \(T.self) encoding not canonical")
        } catch {
            FuzzTargets.fail("a stored \(T.self) does not survive being written back: \(error)")
        }
    }

    private func audit(_ input: [UInt8]) {
        var reader = InputReader(input)
        let flags = reader.byte()
        func field() -> String { reader.string(separator: 0xFF) }
        let entry = NewAuditEntry(
            time: field(),
            actorUID: reader.int64(),
            actorPID: reader.int64(),
            actorComm: field(),
            actorUnit: flags & 1 == 0 ? nil : field(),
            action: field(),
            connectionID: flags & 2 == 0 ? nil : field(),
            outcome: field(),
            detail: field()
        )
        let record = AuditRecord(seq: reader.int64(), entry: entry, prevHash: [], hash: [])
        let canonical = StoreTransaction.canonical(record)
        FuzzTargets.check(CanonicalAuditRow.decode(canonical) == record, "canonical audit encoding is ambiguous")

        guard let database = self.database else { return }
        let texts = [entry.time, entry.actorComm, entry.actorUnit, entry.action, entry.connectionID, entry.outcome]
        let holdsNUL = (texts + [entry.detail]).contains { $0?.utf8.contains(0) ?? false }
        do {
            let (stored, report) = try database.writeNow { transaction in
                // A fresh trail now and then: verifying walks all of it.
                if self.appended % 200 == 0 { try transaction.executeForTesting("DELETE FROM audit") }
                let stored = try transaction.appendAudit(entry)
                return (stored, try transaction.verifyAuditChain())
            }
            self.appended += 1
            FuzzTargets.check(
                stored.hash == Hashing.blake2b256(stored.prevHash + StoreTransaction.canonical(stored)),
                "appended audit hash is not H(prev ‖ canonical)"
            )
            FuzzTargets.check(
                report.brokenAt == nil,
                "a row the store appended does not verify: \(report.reason ?? "")"
            )
        } catch let error as StoreError where holdsNUL && error.code == .constraint {
            // Refused, as it must be: SQLite would hand the text back cut at the NUL, and the row would not verify.
        } catch {
            FuzzTargets.fail("appending an audit row failed: \(error)")
        }
    }
}

/// The inverse of `StoreTransaction.canonical`, written independently from its documentation: big-endian Int64s and
/// optional strings as a presence byte, a big-endian UInt32 length and the UTF-8 bytes.
enum CanonicalAuditRow {
    static func decode(_ bytes: [UInt8]) -> AuditRecord? {
        var position = 0
        func int64() -> Int64? {
            guard position + 8 <= bytes.count else { return nil }
            defer { position += 8 }
            return Int64(bitPattern: bytes[position..<position + 8].reduce(0) { $0 << 8 | UInt64($1) })
        }
        func string() -> String?? {
            guard position < bytes.count else { return nil }
            let present = bytes[position]
            position += 1
            if present == 0 { return .some(nil) }
            guard present == 1, position + 4 <= bytes.count else { return nil }
            let count = Int(bytes[position..<position + 4].reduce(0) { $0 << 8 | UInt32($1) })
            position += 4
            guard position + count <= bytes.count else { return nil }
            defer { position += count }
            return .some(String(decoding: bytes[position..<position + count], as: UTF8.self))
        }
        guard let seq = int64(), let time = string() ?? nil, let uid = int64(), let pid = int64(),
            let comm = string() ?? nil, let unit = string(), let action = string() ?? nil, let connection = string(),
            let outcome = string() ?? nil, let detail = string() ?? nil, position == bytes.count
        else { return nil }
        let entry = NewAuditEntry(
            time: time,
            actorUID: uid,
            actorPID: pid,
            actorComm: comm,
            actorUnit: unit,
            action: action,
            connectionID: connection,
            outcome: outcome,
            detail: detail
        )
        return AuditRecord(seq: seq, entry: entry, prevHash: [], hash: [])
    }
}
