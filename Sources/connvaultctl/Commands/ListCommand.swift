import ArgumentParser
import VaultAPI

/// `connvaultctl list`.
struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List every connection.")

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let client = self.global.adminClient
        if self.global.json {
            // The daemon's bytes re-indented: decoding and encoding 100,000 connections again took seconds.
            let response = try client.transport.send(.listConnections, Endpoint.listConnections.path(), body: nil)
            try Console.json(
                reindenting: response.body,
                rootMember: "connections",
                of: "\(ConnectionList.self)",
                response: response,
                socketPath: client.socketPath
            )
        } else {
            let list = try client.connections()
            Console.output(ViewRenderer.connectionList(list))
        }
    }
}
