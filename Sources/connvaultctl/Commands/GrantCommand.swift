import ArgumentParser
import VaultAPI

/// `connvaultctl grant ID …`: adds to (or with --replace, replaces) who may get tokens.
struct GrantCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "grant",
        abstract: "Allow uids, groups or systemd units to get a connection's tokens.",
        discussion: """
            Adds to the current grants unless --replace is given, which sets exactly the grants listed \
            (`grant ID --replace` with none removes them all).
            """
    )

    @Argument(help: "The connection id.")
    var id: String

    @OptionGroup var grants: GrantOptions

    @Flag(name: .customLong("replace"), help: "Replace the current grants instead of adding to them.")
    var replace = false

    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if self.grants.isEmpty && !self.replace {
            throw ValidationError("nothing to grant: give --allow-uid, --allow-group or --allow-unit")
        }
    }

    func run() async throws {
        let client = self.global.adminClient
        var grants = self.grants.grants
        if !self.replace {
            grants = try client.connection(self.id).grants.merging(grants)
        }
        let view = try client.setGrants(self.id, grants)
        try Output.connection(view, global: self.global)
    }
}
