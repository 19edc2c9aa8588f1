import Foundation
import TestSupport
import Testing
import VaultAPI

/// A list of more than one page (1,000 connections) is streamed, chunked, a page at a time: through the real daemon,
/// its answer must hold every connection, once, in id order, each exactly as `show` returns it, and be the bytes
/// `JSONEncoder` writes for that list (what the unstreamed route sent); `list --json` must print the same list.
@Suite("The streamed list end to end", .offCooperativePool, .timeLimit(.minutes(5)))
struct StreamedListEndToEndTests {
    static let count = 2_000

    @Test("a list of 2,000 connections (two full pages), streamed, is complete and the unstreamed answer's bytes")
    func streamedListIsComplete() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let daemon = DaemonProcess(directory: directory)
        try daemon.start()
        defer { _ = daemon.stop() }

        // Created out of id order, some with grants, settings and a disabled state, so that pages hold every kind.
        let ids = (0..<Self.count).map { "s-\(($0 * 7_919) % Self.count)" }
        for (index, id) in ids.enumerated() {
            let grants = index % 3 == 0 ? #","grants":{"uids":[\#(1_000 + index)],"units":["u\#(index).service"]}"# : ""
            let settings =
                index % 4 == 0 ? #","settings":{"app_id":"app-\#(index)","scope":"personio:persons:read"}"# : ""
            let body =
                #"{"id":"\#(id)","provider":"personio-v2","secrets":{"client_id":"fake-\#(index)","client_secret":"fake-secret-\#(index)"}\#(settings)\#(grants)}"#
            let created = try RawHTTP.exchange(
                socket: daemon.adminSocket,
                "/v1/connections",
                method: "POST",
                headers: [("Content-Type", "application/json")],
                body: body
            )
            try #require(created.status == 201, "\(id): \(created.raw)")
            if index % 10 == 0 {
                let disabled = try RawHTTP.exchange(
                    socket: daemon.adminSocket,
                    "/v1/connections/\(id)/disable",
                    method: "POST",
                    headers: [("Content-Type", "application/json")],
                    body: #"{"reason":"page \#(index)"}"#
                )
                try #require(disabled.status == 200, "\(id): \(disabled.raw)")
            }
        }

        let listed = try RawHTTP.exchange(socket: daemon.adminSocket, "/v1/connections", timeout: .seconds(60))
        try #require(listed.status == 200, "\(listed.head)")
        #expect(listed.header("Transfer-Encoding")?.lowercased() == "chunked", "\(listed.head)")
        #expect(listed.header("Content-Length") == nil)
        let content = listed.content
        let list = try VaultJSON.decoder().decode(ConnectionList.self, from: Data(content.utf8))
        #expect(list.connections.map(\.id) == ids.sorted())

        var shown: [ConnectionView] = []
        for id in ids.sorted() {
            let show = try RawHTTP.exchange(socket: daemon.adminSocket, "/v1/connections/\(id)")
            try #require(show.status == 200, "\(id): \(show.head)")
            shown.append(try VaultJSON.decoder().decode(ConnectionView.self, from: Data(show.content.utf8)))
        }
        let whole = String(
            decoding: try VaultJSON.encoder().encode(ConnectionList(connections: shown)),
            as: UTF8.self
        )
        #expect(content == whole, "the streamed list is not the encoder's list of what show returns")

        let printed = try daemon.ctl(["list", "--json"])
        #expect(printed.status == 0, "\(printed.stderr)")
        #expect(
            printed.stdout
                == String(
                    decoding: try VaultJSON.encoder(pretty: true).encode(ConnectionList(connections: shown)),
                    as: UTF8.self
                )
                + "\n"
        )
        let table = try daemon.ctl(["list"])
        #expect(table.status == 0, "\(table.stderr)")
        #expect(table.stdout.split(separator: "\n").count >= Self.count)
    }
}
