import ArgumentParser

/// The root command: a list of subcommands and the help text shared by all of them.
struct ConnVaultCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "connvaultctl",
        abstract: "Manage Connection Vault: Personio connections, grants, keys and the audit trail.",
        discussion: """
            Admin commands talk to connvaultd's admin socket (--admin-socket, $CONNVAULT_ADMIN_SOCKET, else \
            /run/connvault/admin.sock); `token` talks to the app socket (--app-socket, $CONNVAULT_APP_SOCKET, else \
            /run/connvault/app.sock). Every command takes --json to print the daemon's JSON for scripts.

            Secrets are never taken as arguments (they would show in ps): they are read from a no-echo prompt, from \
            standard input with --secret-stdin, or from a file with --secret-file.

            Exit codes: 0 ok; 1 the operation was refused or failed (one line on stderr: message and code); \
            2 usage error; 3 the daemon cannot be reached.
            """,
        subcommands: [
            AddCommand.self, ListCommand.self, ShowCommand.self, EditCommand.self, DisableCommand.self,
            EnableCommand.self, ResetCommand.self, DisconnectCommand.self, VerifyCommand.self, GrantCommand.self,
            RotateKeyCommand.self, AuditCommand.self, StatusCommand.self, TokenCommand.self,
        ]
    )

    /// The subcommand names, for moving global options given before them (see ``ArgumentPreprocessor``).
    static var subcommandNames: Set<String> {
        Set(Self.configuration.subcommands.compactMap { $0.configuration.commandName })
    }

    func run() async throws {
        throw CLIError.usage("missing command; see 'connvaultctl --help'")
    }
}
