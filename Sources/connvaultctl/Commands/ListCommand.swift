import ArgumentParser
import VaultAPI

/// `connvaultctl list`.
struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List every connection.")

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let list = try self.global.adminClient.connections()
        if self.global.json {
            try Console.json(list)
        } else {
            Console.output(ViewRenderer.connectionList(list))
        }
    }
}
