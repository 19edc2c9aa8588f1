import ArgumentParser
import VaultAPI
import VaultClient

/// `connvaultctl list`.
struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List every connection.")

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let list = try await self.global.adminClient.connections()
        if self.global.json {
            try Console.json(list)
        } else {
            Console.output(ViewRenderer.connectionList(list))
        }
    }
}
