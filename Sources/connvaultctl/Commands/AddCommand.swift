import ArgumentParser
import VaultAPI

/// `connvaultctl add ID --provider P …`: creates a connection.
struct AddCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add",
        abstract: "Add a connection; its secrets are read from a prompt, standard input or a file.",
        discussion: """
            Secrets are never taken as arguments. They are read one per line, in this order:
              personio-v1, personio-v2: 1. the client id (only without --client-id)
                                        2. the client secret
                                        3. the webhook token (with --with-webhook-token)
              personio-recruiting:      1. the recruiting key
                                        2. the webhook token (with --with-webhook-token)
            On a terminal they are prompted for (secrets without echo). Otherwise pass \
            --secret-stdin (one line per value on standard input) or --secret-file FILE (same format; \
            the file must not be readable by other users). A trailing newline is stripped; an empty \
            value is refused.
            """
    )

    @Argument(help: "The connection id: a-z and 0-9, then also '.', '_' and '-'; at most 63 characters.")
    var id: String

    @Option(
        name: .customLong("provider"),
        help: ArgumentHelp("personio-v2, personio-v1 or personio-recruiting.", valueName: "provider"),
        completion: .list(Provider.allCases.map(\.rawValue))
    )
    var provider: String

    @Option(
        name: .customLong("client-id"),
        help: ArgumentHelp("The Personio client id (v1/v2); read like a secret when omitted.", valueName: "id")
    )
    var clientID: String?

    @OptionGroup var settings: SettingOptions

    @OptionGroup var grants: GrantOptions

    @Flag(name: .customLong("with-webhook-token"), help: "Also read a webhook token, after the other secrets.")
    var withWebhookToken = false

    @OptionGroup var secretOptions: SecretOptions

    @OptionGroup var global: GlobalOptions

    func validate() throws {
        let provider = try ProviderName.parse(self.provider)
        if provider == .personioRecruiting && self.clientID != nil {
            throw ValidationError(
                "--client-id is for personio-v1 and personio-v2; personio-recruiting uses a recruiting key"
            )
        }
        if self.clientID?.isEmpty == true {
            throw ValidationError("--client-id is empty")
        }
    }

    /// The values to read, in order (see the discussion above).
    static func secretRequests(provider: Provider, clientIDGiven: Bool, webhook: Bool) -> [SecretRequest] {
        var requests: [SecretRequest] = []
        if provider != .personioRecruiting && !clientIDGiven { requests.append(.clientID) }
        requests.append(.primary(for: provider))
        if webhook { requests.append(.webhookToken) }
        return requests
    }

    func run() async throws {
        let provider = try ProviderName.parse(self.provider)
        let requests = Self.secretRequests(
            provider: provider,
            clientIDGiven: self.clientID != nil,
            webhook: self.withWebhookToken
        )
        let reader = try SecretReader(options: self.secretOptions)
        var secrets = SecretsInput(try reader.read(requests))
        if let clientID = self.clientID {
            secrets[.clientID] = SecretInput(bytes: Array(clientID.utf8))
        }
        let request = CreateConnectionRequest(
            id: self.id,
            provider: provider,
            settings: self.settings.settings,
            secrets: secrets,
            grants: self.grants.grants
        )
        let view = try self.global.adminClient.createConnection(request)
        try Output.connection(view, global: self.global)
    }
}

/// Parses a provider name with a helpful error.
enum ProviderName {
    static func parse(_ name: String) throws -> Provider {
        guard let provider = Provider(rawValue: name) else {
            let known = Provider.allCases.map(\.rawValue).joined(separator: ", ")
            throw ValidationError("unknown provider '\(TableFormatter.sanitize(name))'; use one of \(known)")
        }
        return provider
    }
}
