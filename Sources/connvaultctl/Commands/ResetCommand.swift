import ArgumentParser
import VaultAPI

/// `connvaultctl reset ID [--client-id NEW]`: new credentials, new revision, old tokens revoked, back to active.
struct ResetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reset",
        abstract: "Replace a connection's credentials (e.g. after needs_reset): new revision, old tokens revoked.",
        discussion: """
            Reads the new client secret (personio-v1/v2) or recruiting key (personio-recruiting): from a no-echo \
            prompt on a terminal, else one line from --secret-stdin or --secret-file. The client id stays as it is \
            unless --client-id gives a new one.
            """
    )

    @Argument(help: "The connection id.")
    var id: String

    @Option(name: .customLong("client-id"), help: ArgumentHelp("A new client id (personio-v1/v2).", valueName: "id"))
    var clientID: String?

    @OptionGroup var secretOptions: SecretOptions

    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if self.clientID?.isEmpty == true {
            throw ValidationError("--client-id is empty")
        }
    }

    func run() async throws {
        let client = self.global.adminClient
        let current = try client.connection(self.id)
        if current.provider == .personioRecruiting && self.clientID != nil {
            throw CLIError.usage(
                "--client-id is for personio-v1 and personio-v2; '\(current.id)' is personio-recruiting"
            )
        }
        var secrets = SecretsInput(
            try SecretReader(options: self.secretOptions).read([.primary(for: current.provider)])
        )
        if let clientID = self.clientID {
            secrets[.clientID] = SecretInput(bytes: Array(clientID.utf8))
        }
        let view = try client.reset(self.id, secrets: secrets)
        try Output.connection(view, global: self.global)
    }
}
