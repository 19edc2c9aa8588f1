import ConnVaultCtlSupport
import Testing

@testable import connvaultctl

@Suite struct ArgumentPreprocessorTests {
    static let refused: [([String], String)] = [
        (["add", "x", "--provider", "personio-v2", "--client-secret", "fake-secret-1"], "--client-secret"),
        (["add", "x", "--client-secret=fake-secret-1"], "--client-secret"),
        (["add", "x", "--secret", "fake-secret-1"], "--secret"),
        (["add", "x", "--secret=fake-secret-1"], "--secret"),
        (["add", "x", "--recruiting-key", "fake-key-1"], "--recruiting-key"),
        (["add", "x", "--recruiting-token=fake-key-1"], "--recruiting-token"),
        (["edit", "x", "--webhook-token", "fake-hook-1"], "--webhook-token"),
        (["reset", "x", "--token=fake-token-1"], "--token"),
        (["--password", "fake-password-1", "list"], "--password"),
        (["reset", "x", "--password="], "--password"),
    ]

    @Test("a secret-carrying flag anywhere is found by name", arguments: refused)
    func refusesSecretFlags(_ arguments: [String], _ flag: String) {
        #expect(ArgumentPreprocessor.secretFlag(in: arguments) == flag)
    }

    static let allowed: [[String]] = [
        ["add", "x", "--provider", "personio-v2", "--secret-stdin"],
        ["add", "x", "--secret-file", "/run/secrets/x"],
        ["token", "acme", "--min-ttl", "60"],
        ["edit", "x", "--new-secret", "--with-webhook-token"],
        ["add", "x", "--client-id", "fake-id-1"],
        ["add", "x", "--secretive"],
        ["show", "token"],
        [],
    ]

    @Test("ordinary arguments pass", arguments: allowed)
    func allowsOthers(_ arguments: [String]) {
        #expect(ArgumentPreprocessor.secretFlag(in: arguments) == nil)
    }

    @Test("the refusal exits 2, names the way out and never echoes the value")
    func refusalRun() async {
        let status = await CommandRunner.run(["add", "x", "--provider", "personio-v2", "--client-secret=fake-secret-1"])
        #expect(status == .usage)
        #expect(ArgumentPreprocessor.secretRefusal.contains("--secret-stdin"))
        #expect(ArgumentPreprocessor.secretRefusal.contains("--secret-file"))
        #expect(!ArgumentPreprocessor.secretRefusal.contains("fake"))
    }

    static let hoisting: [([String], [String])] = [
        (["--json", "list"], ["list", "--json"]),
        (["--admin-socket", "/tmp/a.sock", "show", "acme"], ["show", "--admin-socket", "/tmp/a.sock", "acme"]),
        (["--admin-socket=/tmp/a.sock", "--json", "status"], ["status", "--admin-socket=/tmp/a.sock", "--json"]),
        (["--app-socket", "/tmp/b.sock", "token", "acme"], ["token", "--app-socket", "/tmp/b.sock", "acme"]),
        (["list", "--json"], ["list", "--json"]),
        (["--json"], ["--json"]),
        (["--json", "--help"], ["--json", "--help"]),
        (["--json", "bogus"], ["--json", "bogus"]),
        (["--admin-socket"], ["--admin-socket"]),
    ]

    @Test("global options before the subcommand move after it", arguments: hoisting)
    func hoistsGlobalOptions(_ arguments: [String], _ expected: [String]) {
        #expect(
            ArgumentPreprocessor.hoistingGlobalOptions(arguments, subcommands: ConnVaultCtl.subcommandNames) == expected
        )
    }
}
