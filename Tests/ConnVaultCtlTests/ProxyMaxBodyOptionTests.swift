import ArgumentParser
import Testing
import VaultAPI

@testable import connvaultctl

/// `--proxy-max-body BYTES` on `add` and `edit`: bytes, or KiB / MiB / GiB.
@Suite struct ProxyMaxBodyOptionTests {
    @Test(
        "byte counts: plain digits or a binary suffix, any case",
        arguments: [
            ("65536", 65_536), ("1KiB", 1024), ("512kib", 512 * 1024), ("2MiB", 2 << 20), ("64MIB", 64 << 20),
            ("1GiB", 1 << 30), ("0", 0), ("4096GiB", 4096 << 30),
        ]
    )
    func parses(_ text: String, _ bytes: Int) {
        #expect(ByteCount(argument: text) == ByteCount(bytes: bytes))
    }

    @Test(
        "anything else is not a byte count",
        arguments: [
            "", "MiB", "-1", "+1", "1.5MiB", "2 MiB", " 2MiB", "2MB", "2M", "2mb", "2KB", "0x10", "2MiBs", "MiB2",
            "99999999999999999999", "9999999999GiB", "１２", "2MiB\n",
        ]
    )
    func refuses(_ text: String) {
        #expect(ByteCount(argument: text) == nil)
    }

    @Test("add sends the value in bytes; the daemon checks the range")
    func addSetting() throws {
        let options = try SettingOptions.parse(["--proxy-max-body", "2MiB"])
        #expect(!options.isEmpty)
        #expect(options.settings.proxyMaxBody == 2 << 20)
        #expect(try SettingOptions.parse([]).settings.proxyMaxBody == nil)
        // Out of range is the daemon's call (`invalid_setting`), so the CLI passes it on.
        #expect(try SettingOptions.parse(["--proxy-max-body", "1"]).settings.proxyMaxBody == 1)
    }

    @Test("edit sets it, --unset clears it, both at once is a usage error")
    func editPatch() throws {
        let set = try SettingOptions.parse(["--proxy-max-body", "512KiB"]).patch(unsetting: [])
        #expect(set.proxyMaxBody == .set(512 * 1024))
        #expect(set.appID == .keep)
        for name in ["proxy-max-body", "proxy_max_body", "PROXY-MAX-BODY"] {
            #expect(try SettingOptions.parse([]).patch(unsetting: [name]).proxyMaxBody == .clear)
        }
        let both = try SettingOptions.parse(["--proxy-max-body", "4096"])
        let error = try #require(throws: CLIError.self) { try both.patch(unsetting: ["proxy-max-body"]) }
        #expect(error.status == .usage)
        #expect(SettingOptions.unsettableNames.contains("proxy-max-body"))
    }

    @Test("a malformed value is argument-parser's error, reported as usage (exit 2)")
    func malformedIsUsage() {
        #expect(throws: (any Error).self) { try SettingOptions.parse(["--proxy-max-body", "2MB"]) }
        do {
            _ = try SettingOptions.parse(["--proxy-max-body", "2MB"])
        } catch {
            #expect(ErrorReport(for: error).status == .usage)
        }
    }

    @Test("show prints the limit in bytes and binary units, and says when it is the default")
    func rendering() {
        #expect(ViewRenderer.proxyMaxBody(ConnectionSettings()) == "67108864 (64 MiB, default)")
        #expect(ViewRenderer.proxyMaxBody(ConnectionSettings(proxyMaxBody: 2 << 20)) == "2097152 (2 MiB)")
        #expect(ViewRenderer.proxyMaxBody(ConnectionSettings(proxyMaxBody: 1 << 30)) == "1073741824 (1 GiB)")
        #expect(ViewRenderer.proxyMaxBody(ConnectionSettings(proxyMaxBody: 1536)) == "1536")
        #expect(ViewRenderer.proxyMaxBody(ConnectionSettings(proxyMaxBody: 3072)) == "3072 (3 KiB)")
    }
}
