import ArgumentParser
import VaultAPI

/// `connvaultctl disable ID [--reason R]`.
struct DisableCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disable",
        abstract: "Disable a connection: tokens are refused, cached ones dropped and revoked, until `enable`."
    )

    @Argument(help: "The connection id.")
    var id: String

    @Option(name: .customLong("reason"), help: ArgumentHelp("Why, recorded in the audit trail.", valueName: "text"))
    var reason: String?

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let view = try self.global.adminClient.disable(self.id, reason: self.reason)
        try Output.stateChange(view, global: self.global)
    }
}
