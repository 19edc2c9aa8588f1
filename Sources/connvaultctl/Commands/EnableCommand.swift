import ArgumentParser
import VaultAPI

/// `connvaultctl enable ID`.
struct EnableCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enable",
        abstract: "Enable a disabled connection (enabling an active one changes nothing)."
    )

    @Argument(help: "The connection id.")
    var id: String

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let view = try self.global.adminClient.enable(self.id)
        try Output.stateChange(view, global: self.global)
    }
}
