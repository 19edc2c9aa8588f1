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
            let rows = try client.transport.call(.listConnections, Endpoint.listConnections.path(), as: Rows.self)
            Console.output(ViewRenderer.connectionList(rows.list))
        }
    }

    /// What the table shows of `GET /v1/connections`, decoded without the settings, secrets and rules it does not
    /// show (their strict decoding was most of the cost at 100,000 connections).
    struct Rows: Decodable {
        var connections: [Row]

        struct Row: Decodable {
            var id: String
            var provider: Provider
            var state: ConnectionState
            var revision: Int
            var grants: GrantCounts
            var updatedAt: String
            var lastError: String?

            enum CodingKeys: String, CodingKey {
                case id, provider, state, revision, grants
                case updatedAt = "updated_at"
                case lastError = "last_error"
            }
        }

        struct GrantCounts: Decodable {
            var uids: [UInt32]
            var groups: [String]
            var units: [String]
            var rules: [Skipped]
        }

        /// A value read past.
        struct Skipped: Decodable {
            init(from decoder: any Decoder) throws {}
        }

        /// Views with what the table shows; the rules stand in as empty ones, for their count.
        var list: ConnectionList {
            ConnectionList(
                connections: self.connections.map { row in
                    ConnectionView(
                        id: row.id,
                        provider: row.provider,
                        state: row.state,
                        revision: row.revision,
                        settings: ConnectionSettings(),
                        secrets: [:],
                        grants: Grants(
                            uids: row.grants.uids,
                            groups: row.grants.groups,
                            units: row.grants.units,
                            rules: Array(repeating: GrantRule(), count: row.grants.rules.count)
                        ),
                        createdAt: "",
                        updatedAt: row.updatedAt,
                        lastError: row.lastError,
                        disabledReason: nil
                    )
                }
            )
        }
    }
}
