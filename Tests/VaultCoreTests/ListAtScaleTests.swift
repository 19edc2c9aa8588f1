import Foundation
import Testing
import VaultAPI
import VaultCore
import VaultTestSupport

/// `list` reads each table once for every connection (not five queries per connection, which made listing 100,000
/// connections take seconds); each view it returns must still be exactly the one `show` builds for that connection.
/// 420 connections of every kind: v1, v2 and recruiting, edited (revision 2), disabled with a reason, with grant
/// lists and rules, with tokens handed out and then withdrawn (pending revocation for v2, unrevocable until expiry for
/// v1), and with none of these; 420 is where the kinds, which repeat every 2, 3, 4, 5, 6, 7 and 10 connections, have
/// met in every combination.
@Suite("list at scale", .timeLimit(.minutes(3)))
struct ListAtScaleTests {
    static let count = 420

    @Test("list returns, for 420 connections of every kind, exactly the views show returns")
    func listMatchesShow() async throws {
        try await VaultFixture.with { _, vault in
            let ids = (0..<Self.count).map { "scale-\($0)" }
            for (index, id) in ids.enumerated() {
                _ = try await vault.create(Self.request(index, id), by: admin)
            }
            let expiry = Date().timeIntervalSince1970 + 3_600
            for (index, id) in ids.enumerated() {
                if index % 7 == 0, index % 3 != 2 {
                    _ = try await vault.edit(
                        id,
                        EditConnectionRequest(secrets: secrets([.clientID: "fake-edited-\(index)"])),
                        by: admin
                    )
                }
                if index % 5 == 0, index % 3 != 2, let snapshot = try await vault.snapshot(id) {
                    _ = try await vault.recordIssuedToken(snapshot, token: "fake-token-\(index)-a", expiresAt: expiry)
                    _ = try await vault.recordIssuedToken(snapshot, token: "fake-token-\(index)-b", expiresAt: expiry)
                }
                if index % 10 == 0 { _ = try await vault.disable(id, reason: "scale test \(index)", by: admin) }
            }

            let listed = try await vault.list()
            var shown: [ConnectionView] = []
            for id in ids.sorted() { shown.append(try await vault.view(id)) }
            #expect(listed.count == Self.count)
            #expect(listed.map(\.id) == ids.sorted())
            for (list, show) in zip(listed, shown) where list != show {
                Issue.record("list and show differ for \(show.id):\nlist: \(list)\nshow: \(show)")
            }
            // The fixture reaches every part of a view.
            #expect(listed.contains { $0.pendingRevocations == 2 })
            #expect(listed.contains { $0.tokensValidUntil != nil })
            #expect(listed.contains { !$0.grants.rules.isEmpty && !$0.grants.uids.isEmpty })
            #expect(listed.contains { $0.revision == 2 && $0.disabledReason != nil })
            #expect(listed.contains { $0.provider == .personioRecruiting })
        }
    }

    /// Connection `index`: v1 when `index % 3 == 1`, recruiting when 2, else v2; grants on most of them.
    static func request(_ index: Int, _ id: String) -> CreateConnectionRequest {
        var grants = Grants()
        if index % 2 == 0 { grants.uids = [UInt32(20_000 + index % 17), 0] }
        if index % 4 == 1 { grants.groups = ["root"] }
        if index % 6 == 0 {
            grants.rules = [GrantRule(uid: UInt32(30_000 + index)), GrantRule(group: "root")]
        }
        switch index % 3 {
        case 1:
            return CreateConnectionRequest(
                id: id,
                provider: .personioV1,
                secrets: secrets([.clientID: "fake-v1-\(index)", .clientSecret: "fake-secret-\(index)"]),
                grants: grants
            )
        case 2:
            return CreateConnectionRequest(
                id: id,
                provider: .personioRecruiting,
                settings: ConnectionSettings(companyID: "\(10_000 + index)"),
                secrets: secrets([.recruitingToken: "fake-recruiting-\(index)"]),
                grants: grants
            )
        default:
            return v2Request(id, clientID: "fake-v2-\(index)", grants: grants)
        }
    }
}
