import ArgumentParser
import VaultAPI

/// `connvaultctl disconnect ID [--yes]`: deletes a connection for good (crypto-shred).
struct DisconnectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disconnect",
        abstract: "Delete a connection and destroy its secrets for good; only the audit trail remains.",
        discussion: """
            Without --yes, asks you to type the connection id to confirm; without --yes and without a terminal on \
            standard input, refuses (exit 2).
            """
    )

    @Argument(help: "The connection id.")
    var id: String

    @Flag(name: .customLong("yes"), help: "Do not ask for confirmation.")
    var yes = false

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let client = self.global.adminClient
        if !self.yes {
            guard TerminalPrompt.standardInputIsTerminal else {
                throw CLIError.usage(
                    "refusing to disconnect '\(TableFormatter.sanitize(self.id))' without confirmation: "
                        + "pass --yes (standard input is not a terminal)"
                )
            }
            // Fails with not_found before asking about a connection that does not exist.
            let view = try client.connection(self.id)
            Console.error(
                "This deletes connection '\(TableFormatter.sanitize(view.id))' (\(view.provider.rawValue)) "
                    + "and destroys its secrets for good; only the audit trail remains."
            )
            var typed = try TerminalPrompt.readLine(prompt: "Type the connection id to confirm: ", echo: true) ?? []
            defer { SecretMemory.zero(&typed) }
            guard typed == Array(self.id.utf8) else {
                throw CLIError.failed("confirmation did not match; nothing was deleted", code: "not_confirmed")
            }
        }
        try client.disconnect(self.id)
        if !self.global.json {
            Console.output("\(TableFormatter.sanitize(self.id)): disconnected; its secrets are destroyed")
            // Personio v1 cannot revoke the tokens already handed out: say until when they keep working.
            if let until = try? client.status().tokensValidUntil[self.id] {
                Console.output(ViewRenderer.v1Validity(until))
            }
        }
    }
}
