import Foundation
import PersonioStandIn
import TestSupport
import Testing
import VaultAPI
import VaultClient

/// The examples of README.md's "Using tokens from programs", taken from the README itself and run against a live
/// daemon and the Personio stand-in, so that the README cannot drift from what works. The one change made to them:
/// `https://api.personio.de` becomes the stand-in's URL.
@Suite("README examples end to end", .offCooperativePool, .timeLimit(.minutes(2)))
struct ReadmeExamplesEndToEndTests {
    static let clientID = "fake-client-id-readme"
    static let secret = "fake-secret-readme-0001"
    static let recruitingKey = "fake-recruiting-key-readme-0001"

    // MARK: - Examples

    @Test(
        "the README's token examples (curl and connvaultctl) work",
        .enabled(if: Self.which("curl") != nil, "curl is not installed: the README's curl examples are not run")
    )
    func curlTokenExamples() async throws {
        let commands = try Self.commands(inBlock: "sh", containing: "/token")
        try #require(commands.count == 3, "expected curl …/token, connvaultctl token, curl -H …: \(commands)")
        try await BrokerFixture.run { fixture in
            try await fixture.addV2(
                "acme",
                clientID: Self.clientID,
                secret: Self.secret,
                options: ["--app-id", "README_EXAMPLE"]
            )

            let whole = try await Self.shell(commands[0], fixture)
            #expect(whole.status == 0, "\(whole)")
            let answer = try VaultJSON.decoder().decode(TokenResponse.self, from: Data(whole.stdout.utf8))
            let issued = try #require(fixture.standIn.issuedTokens.last)
            #expect(answer.accessToken == issued)
            #expect(answer.headers["X-Personio-App-ID"] == "README_EXAMPLE")

            let plain = try await Self.shell(commands[1], fixture)
            #expect(plain.status == 0, "\(plain)")
            #expect(plain.stdout == issued + "\n")

            let personio = try await Self.shell(commands[2], fixture)
            #expect(personio.status == 0, "\(personio)")
            #expect(personio.stdout.contains("\"_data\""), "\(personio)")
            #expect(fixture.standIn.lastRequest(.resource)?.header("Authorization") == "Bearer \(issued)")
            #expect(fixture.standIn.calls(.v2Token) == 1)
        }
    }

    @Test(
        "the README's Python example works",
        .enabled(if: Self.which("python3") != nil, "python3 is not installed: the README's Python example is not run")
    )
    func pythonExample() async throws {
        let blocks = try Self.blocks("python")
        let script = try #require(blocks.first, "no ```python block in the README section")
        try await BrokerFixture.run { fixture in
            try await fixture.addV2("acme", clientID: Self.clientID, secret: Self.secret)
            let file = fixture.daemon.directory.file("example.py")
            try script.replacingOccurrences(of: "https://api.personio.de", with: fixture.baseURL)
                .write(toFile: file, atomically: true, encoding: .utf8)

            let result = try await Blocking.run { [environment = Self.environment(fixture)] in
                try Command.run(Self.which("python3")!, [file], environment: environment, timeout: .seconds(30))
            }
            #expect(result.status == 0, "\(result)")
            #expect(result.stdout == "1 persons\n", "\(result)")
            let issued = try #require(fixture.standIn.issuedTokens.last)
            #expect(fixture.standIn.lastRequest(.resource)?.header("Authorization") == "Bearer \(issued)")

            // Its error path: a connection not granted to the caller raises with the problem's code.
            let refused = try await Blocking.run { [environment = Self.environment(fixture)] in
                try Command.run(
                    Self.which("python3")!,
                    [
                        "-c",
                        script.replacingOccurrences(of: "personio_token(\"acme\")", with: "personio_token(\"nope\")"),
                    ],
                    environment: environment,
                    timeout: .seconds(30)
                )
            }
            #expect(refused.status != 0, "\(refused)")
            #expect(refused.stderr.contains("forbidden"), "\(refused)")
        }
    }

    @Test("the README's Swift example: AppClient().token gives the stand-in's token")
    func swiftExample() async throws {
        let swift = try #require(try Self.blocks("swift").first)
        #expect(swift.contains("import VaultClient") && swift.contains("AppClient().token(\"acme\")"))
        try await BrokerFixture.run { fixture in
            try await fixture.addV2("acme", clientID: Self.clientID, secret: Self.secret)
            // As `AppClient()` would, but with this daemon's socket in the environment it resolves.
            let client = AppClient(environment: ["CONNVAULT_APP_SOCKET": fixture.daemon.appSocket])
            let token = try await client.token("acme")
            #expect(token.accessToken == fixture.standIn.issuedTokens.last)
            #expect(token.apiBaseURL == fixture.baseURL)
            #expect(token.headers["Authorization"] == "Bearer \(token.accessToken)")
            let fresh = try await client.token("acme", minTTL: 300)
            #expect(fresh.accessToken == token.accessToken)

            let error = await #expect(throws: VaultClientError.self) { try await client.token("nope") }
            #expect(error?.problem?.code == .forbidden)
        }
    }

    @Test(
        "the README's proxy examples work",
        .enabled(if: Self.which("curl") != nil, "curl is not installed: the README's curl examples are not run")
    )
    func curlProxyExamples() async throws {
        let commands = try Self.commands(inBlock: "sh", containing: "/proxy/").filter { $0.hasPrefix("curl ") }
        try #require(commands.count == 2, "expected the recruiting and the v2 proxy examples: \(commands)")
        try await BrokerFixture.run { fixture in
            try await fixture.addV2("acme", clientID: Self.clientID, secret: Self.secret)
            try await fixture.addRecruiting("jobs", key: Self.recruitingKey, companyID: "123")

            let recruiting = try await Self.shell(commands[0], fixture)
            #expect(recruiting.status == 0, "\(recruiting)")
            #expect(recruiting.stdout.contains("\"success\":true"), "\(recruiting)")
            let seen = fixture.standIn.lastRequest(.resource)
            #expect(seen?.header("Authorization") == "Bearer \(Self.recruitingKey)")
            #expect(seen?.header("X-Company-Id") == "123")

            let persons = try await Self.shell(commands[1], fixture)
            #expect(persons.status == 0, "\(persons)")
            #expect(persons.stdout.contains("\"_data\""), "\(persons)")
        }
    }

    // MARK: - README

    static var readmePath: String {
        // Tests/EndToEndTests/ReadmeExamplesEndToEndTests.swift → package root.
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
            .appendingPathComponent("README.md").path
    }

    /// The text of "## Using tokens from programs", up to the next `## ` heading.
    static func section() throws -> String {
        let readme = try String(contentsOfFile: Self.readmePath, encoding: .utf8)
        guard let start = readme.range(of: "\n## Using tokens from programs\n") else {
            throw TestSupportError("README.md has no section \"Using tokens from programs\"")
        }
        let rest = readme[start.upperBound...]
        let end = rest.range(of: "\n## ")?.lowerBound ?? rest.endIndex
        return String(rest[..<end])
    }

    /// The contents of the section's fenced blocks in `language`, in order.
    static func blocks(_ language: String) throws -> [String] {
        var blocks: [String] = []
        var current: [Substring]?
        for line in try Self.section().split(separator: "\n", omittingEmptySubsequences: false) {
            if current == nil, line == "```\(language)" {
                current = []
            } else if current != nil, line == "```" {
                blocks.append(current!.joined(separator: "\n") + "\n")
                current = nil
            } else if current != nil {
                current!.append(line)
            }
        }
        return blocks
    }

    /// The commands (comments dropped, `\` continuations joined) of the section's `language` blocks, from the first
    /// block that has a command containing `needle`.
    static func commands(inBlock language: String, containing needle: String) throws -> [String] {
        for block in try Self.blocks(language) {
            var commands: [String] = []
            var pending = ""
            for line in block.split(separator: "\n") {
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
                if trimmed.hasSuffix("\\") {
                    pending += trimmed.dropLast() + " "
                } else {
                    commands.append(pending + trimmed)
                    pending = ""
                }
            }
            if commands.contains(where: { $0.contains(needle) }) { return commands }
        }
        throw TestSupportError("no ```\(language) block with \(needle) in the README section")
    }

    // MARK: - Running

    /// The environment a reader of the README has: the sockets exported, `connvaultctl` on PATH, and no HTTP proxy
    /// between the examples and the stand-in.
    static func environment(_ fixture: BrokerFixture) -> [String: String] {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return fixture.daemon.clientEnvironment.merging([
            "PATH": "\(Binaries.directory):\(path)",
            "http_proxy": "", "HTTP_PROXY": "", "https_proxy": "", "HTTPS_PROXY": "", "all_proxy": "", "ALL_PROXY": "",
            "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost",
        ]) { _, new in new }
    }

    /// Runs one README command with `/bin/sh -c`, the production API base replaced by the stand-in's.
    static func shell(_ command: String, _ fixture: BrokerFixture) async throws -> CommandResult {
        let command = command.replacingOccurrences(of: "https://api.personio.de", with: fixture.baseURL)
        return try await Blocking.run { [environment = Self.environment(fixture)] in
            try Command.run(
                "/bin/sh",
                ["-c", command],
                environment: environment,
                directory: fixture.daemon.directory.path,
                timeout: .seconds(30)
            )
        }
    }

    /// The full path of `tool` on PATH, if it is installed.
    static func which(_ tool: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") where !directory.isEmpty {
            let candidate = "\(directory)/\(tool)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
