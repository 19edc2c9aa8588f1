import ArgumentParser
import VaultAPI

/// `connvaultctl status`.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the daemon's status: connections by state, master key, audit size."
    )

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let status = try self.global.adminClient.status()
        if self.global.json {
            try Console.json(status)
        } else {
            Console.output(ViewRenderer.status(status))
        }
    }
}
