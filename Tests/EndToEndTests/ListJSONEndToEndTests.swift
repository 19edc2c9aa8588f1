import Foundation
import TestSupport
import Testing
import VaultAPI

/// `connvaultctl list --json` re-indents the daemon's answer instead of decoding and encoding it: what it prints must
/// be what `VaultJSON.encoder(pretty: true)` prints for the list the daemon sent, through the real binaries.
@Suite("list --json end to end", .offCooperativePool, .timeLimit(.minutes(3)))
struct ListJSONEndToEndTests {
    @Test("list --json prints JSONEncoder's pretty form of the daemon's own answer, byte for byte")
    func listJSONMatchesEncoder() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let daemon = DaemonProcess(directory: directory)
        try daemon.start()
        defer { _ = daemon.stop() }

        let empty = try daemon.ctl(["list", "--json"])
        #expect(empty.status == 0, "\(empty)")
        #expect(
            empty.stdout == String(
                decoding: try VaultJSON.encoder(pretty: true).encode(ConnectionList(connections: [])),
                as: UTF8.self
            ) + "\n"
        )

        let commands: [([String], String?)] = [
            (
                [
                    "add", "acme", "--provider", "personio-v2", "--client-id", "fake-acme", "--secret-stdin",
                    "--scope", "personio:persons:read", "--app-id", "app.1", "--permission", "employees:read",
                    "--proxy-max-body", "4096",
                ],
                "fake-secret-acme\n"
            ),
            (
                ["add", "legacy", "--provider", "personio-v1", "--client-id", "fake-legacy", "--secret-stdin"],
                "fake-1\n"
            ),
            (["add", "plain", "--provider", "personio-v2", "--client-id", "fake-plain", "--secret-stdin"], "fake-2\n"),
            (["grant", "acme", "--allow-uid", "65534", "--allow-unit", "payroll.service"], nil),
            (["disable", "legacy", "--reason", "audit \"week\" \\ é / ü"], nil),
        ]
        for (arguments, stdin) in commands {
            let result = try daemon.ctl(arguments, stdin: stdin)
            try #require(result.status == 0, "\(arguments): \(result)")
        }

        let raw = try RawHTTP.request(
            socket: daemon.adminSocket,
            "GET /v1/connections HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        try #require(raw.status == 200, "\(raw.head)")
        let list = try VaultJSON.decoder().decode(ConnectionList.self, from: Data(raw.body.utf8))
        #expect(list.connections.count == 3)
        let expected = String(decoding: try VaultJSON.encoder(pretty: true).encode(list), as: UTF8.self) + "\n"

        let printed = try daemon.ctl(["list", "--json"])
        #expect(printed.status == 0, "\(printed)")
        #expect(printed.stdout == expected)

        let table = try daemon.ctl(["list"])
        #expect(table.status == 0, "\(table)")
        #expect(table.stdout.contains("acme") && table.stdout.contains("legacy") && table.stdout.contains("plain"))
    }
}
