import Testing
import VaultAPI
import VaultCore
import VaultTestSupport

/// The streamed list reads a page at a time (`Vault.listPage(after:limit:)`), each page a read of its own: the pages
/// together must be `list`, and a list that runs beside an add and a disconnect must show what docs/decisions.md
/// ("The streamed connection list") says: every connection that exists throughout, once, in id order; one added or
/// disconnected meanwhile listed or not by where its id falls.
@Suite("The connection list a page at a time", .timeLimit(.minutes(2)))
struct ListPageTests {
    /// Every page after `after`, `limit` at a time, until a short one.
    static func pages(
        _ vault: Vault,
        limit: Int,
        between: (String) async throws -> Void = { _ in }
    ) async throws
        -> [ConnectionView]
    {
        var listed: [ConnectionView] = []
        var after: String?
        while true {
            let page = try await vault.listPage(after: after, limit: limit)
            #expect(page.count <= limit)
            listed += page
            guard page.count == limit, let last = page.last?.id else { return listed }
            try await between(last)
            after = last
        }
    }

    @Test("pages of 1, 7 and 40 together are exactly list")
    func pagesAreTheList() async throws {
        try await VaultFixture.with { _, vault in
            for index in 0..<40 {
                var grants = Grants()
                if index % 3 == 0 { grants.uids = [UInt32(20_000 + index)] }
                if index % 5 == 0 { grants.rules = [GrantRule(uid: UInt32(30_000 + index))] }
                _ = try await vault.create(v2Request("page-\(index)", grants: grants), by: admin)
                if index % 4 == 0 { _ = try await vault.disable("page-\(index)", reason: "page \(index)", by: admin) }
            }
            let whole = try await vault.list()
            #expect(whole.count == 40)
            for limit in [1, 7, 40] {
                #expect(try await Self.pages(vault, limit: limit) == whole, "pages of \(limit)")
            }
            #expect(try await vault.listPage(after: whole.last!.id, limit: 5).isEmpty)
            #expect(try await vault.listPage(after: "page-5", limit: 2).map(\.id) == ["page-6", "page-7"])
        }
    }

    @Test("a list beside an add and a disconnect: each connection once, in order; changes by where their ids fall")
    func concurrentChanges() async throws {
        try await VaultFixture.with { _, vault in
            for letter in ["b", "d", "f", "h", "j", "l"] {
                _ = try await vault.create(v2Request("c-\(letter)"), by: admin)
            }
            var changed = false
            let listed = try await Self.pages(vault, limit: 2) { last in
                guard !changed, last == "c-d" else { return }
                changed = true
                // After the first page (c-b, c-d): one added before the cursor, one after; one listed already and
                // one not yet listed disconnected.
                _ = try await vault.create(v2Request("c-a"), by: admin)
                _ = try await vault.create(v2Request("c-g"), by: admin)
                try await vault.disconnect("c-b", by: admin)
                try await vault.disconnect("c-j", by: admin)
            }
            #expect(changed)
            #expect(listed.map(\.id) == ["c-b", "c-d", "c-f", "c-g", "c-h", "c-l"])
        }
    }
}
