import ArgumentParser
import VaultAPI

/// `connvaultctl verify ID`: asks Personio for a token with the stored credentials.
struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check a connection's credentials against Personio (exit 1 when they are refused)."
    )

    @Argument(help: "The connection id.")
    var id: String

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let result = try self.global.adminClient.verify(self.id)
        if self.global.json {
            try Console.json(result)
        } else if result.ok {
            Console.output(ViewRenderer.verification(result))
        }
        guard result.ok else {
            let detail = result.error.map { TableFormatter.sanitize($0.detail) } ?? "Personio refused the credentials"
            let code = result.error?.code.rawValue ?? "upstream_rejected"
            throw CLIError.failed(
                "\(TableFormatter.sanitize(result.connection)): \(detail); the connection is \(result.state.rawValue)",
                code: code
            )
        }
    }
}
