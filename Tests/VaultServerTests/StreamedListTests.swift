import NIOCore
import NIOHTTP1
import Synchronization
import TestSupport
import Testing
import VaultAPI

@testable import VaultServer

/// `GET /v1/connections` streams its body a page at a time (`AdminRoutes.streamedListResponse`): the bytes must be
/// those of the whole list written at once (`AdminRoutes.listResponse`, itself `Response.json`'s), at every page
/// boundary.
@Suite("The streamed connection list")
struct StreamedListTests {
    /// What a body stream writes, piece by piece.
    final class Collected: Sendable {
        let pieces = Mutex<[[UInt8]]>([])
        var writer: ResponseBodyWriter {
            ResponseBodyWriter { buffer in self.pieces.withLock { $0.append(Array(buffer.readableBytesView)) } }
        }
    }

    /// `count` generated views with distinct ids, in id order.
    static func views(_ count: Int, seed: UInt64) -> [ConnectionView] {
        var generator = RandomConnectionViews(seed: seed)
        return (0..<count).map { index in
            var view = generator.view()
            view.id = "c-\(String(repeating: "0", count: 5 - String(index).count))\(index)"
            return view
        }
    }

    static func streamed(_ views: [ConnectionView], pageSize: Int) async throws -> (Response, [[UInt8]]) {
        let first = Array(views.prefix(pageSize))
        let response = AdminRoutes.streamedListResponse(first: first, pageSize: pageSize) { after in
            Array(views.drop { $0.id <= after }.prefix(pageSize))
        }
        let collected = Collected()
        let stream = try #require(response.bodyStream)
        try await stream(collected.writer)
        return (response, collected.pieces.withLock { $0 })
    }

    @Test("the pages written one after another are the whole list's bytes, at every page boundary")
    func samePieces() async throws {
        for count in [0, 1, 6, 7, 8, 13, 14, 15, 300] {
            let views = Self.views(count, seed: UInt64(count) + 1)
            let (response, pieces) = try await Self.streamed(views, pageSize: 7)
            let whole = AdminRoutes.listResponse(views)
            #expect(response.status == .ok)
            #expect(response.body == nil)
            #expect(response.headers["Content-Type"] == whole.headers["Content-Type"])
            #expect(pieces.flatMap { $0 } == Array(whole.body!.readableBytesView), "\(count) connections")
            // One piece per page, and one more when the last page is full (it may be followed by an empty one).
            #expect(pieces.count == count / 7 + 1, "\(count) connections: \(pieces.count) pieces")
            #expect(!response.framedHeaders.contains(name: "Content-Length"))
        }
    }

    @Test("a page that cannot be read ends the body with an error after the pages before it")
    func failedPage() async throws {
        struct Failed: Error {}
        let views = Self.views(20, seed: 9)
        let response = AdminRoutes.streamedListResponse(first: Array(views.prefix(5)), pageSize: 5) { _ in
            throw Failed()
        }
        let collected = Collected()
        await #expect(throws: Failed.self) { try await response.bodyStream!(collected.writer) }
        #expect(collected.pieces.withLock { $0.count } == 1)
    }
}
