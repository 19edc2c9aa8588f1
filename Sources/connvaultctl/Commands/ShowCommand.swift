import ArgumentParser
import VaultAPI

/// `connvaultctl show ID`.
struct ShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show a connection: settings, secrets (as fingerprints only), grants, state, revision, last error."
    )

    @Argument(help: "The connection id.")
    var id: String

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let view = try self.global.adminClient.connection(self.id)
        try Output.connection(view, global: self.global)
    }
}
