import ArgumentParser
import Testing
import VaultAPI

@testable import connvaultctl

/// The CLI's exit status (Testing has its own `ExitStatus`).
typealias Status = connvaultctl.ExitStatus

@Suite struct ExitStatusTests {
    static let problem = Problem(status: 404, code: .notFound, title: "Not Found", detail: "no connection 'nope'")
    static let rateLimited = Problem(status: 429, code: .rateLimited, title: "Rate limited", detail: "retry")
    static let notAllowed = Problem(status: 403, code: .notAllowed, title: "Not allowed", detail: "outside the rule")

    static let errors: [(String, any Error & Sendable, Status)] = [
        ("cannot connect", DaemonError(.cannotConnect, "cannot connect to /x.sock"), .unreachable),
        ("timed out", DaemonError(.timedOut, "no answer"), .unreachable),
        ("invalid request", DaemonError(.invalidRequest, "path too long"), .usage),
        ("invalid response", DaemonError(.invalidResponse, "garbage"), .failure),
        ("problem", DaemonError.problem(problem), .failure),
        ("rate limited", DaemonError.problem(rateLimited), .failure),
        ("not allowed by the rule", DaemonError.problem(notAllowed), .failure),
        ("CLI usage", CLIError.usage("no terminal"), .usage),
        ("CLI failure", CLIError.failed("confirmation did not match", code: "not_confirmed"), .failure),
        ("validation", ValidationError("bad"), .usage),
        ("explicit exit code", ExitCode(3), .unreachable),
        ("cancellation", CancellationError(), .failure),
    ]

    @Test("errors map to the fixed exit codes", arguments: errors)
    func mapping(_ name: String, _ error: any Error & Sendable, _ status: Status) {
        #expect(ErrorReport(for: error).status == status, "\(name)")
    }

    @Test("a refusal prints one line: connvaultctl: <detail> (<code>)")
    func messageFormat() {
        let report = ErrorReport(for: DaemonError.problem(Self.problem))
        #expect(report.text == "connvaultctl: no connection 'nope' (not_found)")
        #expect(!report.toStandardOutput)
        #expect(
            ErrorReport(for: CLIError.failed("nothing was deleted", code: "not_confirmed")).text
                == "connvaultctl: nothing was deleted (not_confirmed)"
        )
    }

    static let invocations: [([String], Status)] = [
        (["add"], .usage),
        (["add", "x"], .usage),
        (["add", "x", "--provider", "workday"], .usage),
        (["add", "x", "--provider", "personio-recruiting", "--client-id", "fake-id-1"], .usage),
        (["add", "x", "--provider", "personio-v2", "--allow-uid", "not-a-number"], .usage),
        (["add", "x", "--provider", "personio-v2", "--secret-stdin", "--secret-file", "/tmp/f"], .usage),
        (["edit", "x"], .usage),
        (["edit", "x", "--unset", "colour"], .usage),
        (["edit", "x", "--scope", "a", "--unset", "scope"], .usage),
        (["grant", "x"], .usage),
        (["audit", "x", "--verify"], .usage),
        (["token", "x", "--min-ttl", "-1"], .usage),
        (["bogus"], .usage),
        (["show"], .usage),
        ([], .usage),
        (["--help"], .success),
        (["help", "add"], .success),
    ]

    @Test("parse errors exit 2 (not 64), help exits 0", arguments: invocations)
    func parsing(_ arguments: [String], _ status: Status) async {
        #expect(await CommandRunner.run(arguments) == status)
    }

    @Test("an unreachable daemon exits 3, for admin and app commands")
    func unreachable() async {
        let path = "/tmp/cv-none-\(UInt32.random(in: 0...UInt32.max)).sock"
        #expect(await CommandRunner.run(["list", "--admin-socket", path]) == .unreachable)
        #expect(await CommandRunner.run(["--json", "--admin-socket", path, "status"]) == .unreachable)
        #expect(await CommandRunner.run(["token", "acme", "--app-socket", path]) == .unreachable)
    }
}
