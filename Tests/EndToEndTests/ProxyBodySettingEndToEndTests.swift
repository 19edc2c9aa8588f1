import Foundation
import TestSupport
import Testing
import VaultAPI

/// `connvaultctl add|edit --proxy-max-body` against the built daemon: the value is stored, shown and changed, and a
/// bad value is refused with the documented exit code without changing anything.
@Suite("proxy_max_body end to end", .offCooperativePool, .timeLimit(.minutes(3)))
struct ProxyBodySettingEndToEndTests {
    func view(_ daemon: DaemonProcess, _ id: String) throws -> ConnectionView {
        let shown = try daemon.ctl(["show", id, "--json"])
        try #require(shown.status == 0, "\(shown)")
        return try VaultJSON.decoder().decode(ConnectionView.self, from: Data(shown.stdout.utf8))
    }

    @Test("add, show, edit, unset, and refused values")
    func addShowEdit() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let daemon = DaemonProcess(directory: directory)
        try daemon.start()
        defer { daemon.stop() }

        let added = try daemon.ctl(
            [
                "add", "acme", "--provider", "personio-v2", "--client-id", "fake-client-id-1", "--proxy-max-body",
                "2MiB", "--secret-stdin", "--json",
            ],
            stdin: "fake-secret-proxy-body-1\n"
        )
        #expect(added.status == 0, "\(added)")
        var shown = try self.view(daemon, "acme")
        #expect(shown.settings.proxyMaxBody == 2 << 20)
        #expect(shown.settings.effectiveProxyMaxBody == 2 << 20)
        let revision = shown.revision

        let table = try daemon.ctl(["show", "acme"])
        #expect(table.status == 0, "\(table)")
        #expect(table.stdout.contains("proxy_max_body") && table.stdout.contains("2097152 (2 MiB)"), "\(table)")

        let edited = try daemon.ctl(["edit", "acme", "--proxy-max-body", "512KiB"])
        #expect(edited.status == 0, "\(edited)")
        shown = try self.view(daemon, "acme")
        #expect(shown.settings.proxyMaxBody == 512 * 1024)
        #expect(shown.revision == revision + 1)

        // Malformed: argument-parser refuses it, nothing is sent (exit 2, usage).
        let malformed = try daemon.ctl(["edit", "acme", "--proxy-max-body", "2MB"])
        #expect(malformed.status == 2, "\(malformed)")
        #expect(malformed.stderr.contains("--proxy-max-body"), "\(malformed)")
        // Out of range: the daemon refuses it (exit 1, invalid_setting) with the range in the message.
        for value in ["1023", "2GiB", "0"] {
            let refused = try daemon.ctl(["edit", "acme", "--proxy-max-body", value])
            #expect(refused.status == 1, "\(value): \(refused)")
            #expect(refused.stderr.contains("proxy_max_body must be a number of bytes from 1024"), "\(refused)")
            #expect(refused.stderr.contains("invalid_setting"), "\(refused)")
        }
        let refusedAdd = try daemon.ctl(
            [
                "add", "other", "--provider", "personio-v2", "--client-id", "fake-client-id-2", "--proxy-max-body",
                "100", "--secret-stdin",
            ],
            stdin: "fake-secret-proxy-body-2\n"
        )
        #expect(refusedAdd.status == 1, "\(refusedAdd)")
        // Nothing changed: same value, same revision, no second connection.
        shown = try self.view(daemon, "acme")
        #expect(shown.settings.proxyMaxBody == 512 * 1024)
        #expect(shown.revision == revision + 1)
        #expect(try daemon.ctl(["show", "other"]).status == 1)

        let unset = try daemon.ctl(["edit", "acme", "--unset", "proxy-max-body"])
        #expect(unset.status == 0, "\(unset)")
        shown = try self.view(daemon, "acme")
        #expect(shown.settings.proxyMaxBody == nil)
        #expect(shown.settings.effectiveProxyMaxBody == ConnectionSettings.defaultProxyMaxBody)
        let defaultTable = try daemon.ctl(["show", "acme"])
        #expect(defaultTable.stdout.contains("67108864 (64 MiB, default)"), "\(defaultTable)")
    }
}
