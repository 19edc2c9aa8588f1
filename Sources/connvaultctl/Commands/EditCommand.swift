import ArgumentParser
import VaultAPI

/// `connvaultctl edit ID …`: changes settings, secrets or grants; every edit is a new, re-encrypted revision.
struct EditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edit",
        abstract: "Change a connection's settings, secrets or grants (writes a new, re-encrypted revision).",
        discussion: """
            Settings given are replaced (--permission replaces the whole list); --unset clears one. --allow-uid, \
            --allow-group and --allow-unit add to the current grants, like `grant`.
            --new-secret reads a new client secret (personio-v1/v2) or recruiting key (personio-recruiting); \
            --with-webhook-token reads a new webhook token, after it. They are read like `add` reads them: a \
            no-echo prompt on a terminal, else --secret-stdin or --secret-file, one line each.
            Changing --api-base-url (or clearing it) changes where the secrets are sent, so it needs the \
            connection's secrets again: give --new-secret, and for personio-v1/v2 also --client-id or the client \
            id as the first line read (as `add` reads it).
            """
    )

    @Argument(help: "The connection id.")
    var id: String

    @OptionGroup var settings: SettingOptions

    @Option(
        name: .customLong("unset"),
        help: ArgumentHelp(
            "Clear a setting: api-base-url, app-id, partner-id, scope, company-id, permissions or proxy-max-body "
                + "(repeatable).",
            valueName: "setting"
        )
    )
    var unset: [String] = []

    @Option(name: .customLong("client-id"), help: ArgumentHelp("A new client id (personio-v1/v2).", valueName: "id"))
    var clientID: String?

    @Flag(name: .customLong("new-secret"), help: "Read a new client secret or recruiting key.")
    var newSecret = false

    @Flag(name: .customLong("with-webhook-token"), help: "Read a new webhook token.")
    var withWebhookToken = false

    @OptionGroup var grants: GrantOptions

    @OptionGroup var secretOptions: SecretOptions

    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if self.settings.isEmpty && self.unset.isEmpty && self.clientID == nil && !self.newSecret
            && !self.withWebhookToken && self.grants.isEmpty
        {
            throw ValidationError(
                "nothing to change: give a setting, --unset, --client-id, --new-secret, --with-webhook-token "
                    + "or --allow-uid/--allow-group/--allow-unit"
            )
        }
        if self.clientID?.isEmpty == true {
            throw ValidationError("--client-id is empty")
        }
        do {
            _ = try self.settings.patch(unsetting: self.unset)
        } catch let error as CLIError {
            // argument-parser treats only ValidationError from validate() as a usage error.
            throw ValidationError(error.message)
        }
    }

    func run() async throws {
        let client = self.global.adminClient
        let patch = try self.settings.patch(unsetting: self.unset)
        // The provider decides which secret --new-secret reads; --allow-… adds to the current grants.
        let current: ConnectionView? =
            self.newSecret || !self.grants.isEmpty ? try client.connection(self.id) : nil

        var requests: [SecretRequest] = []
        if self.newSecret, let provider = current?.provider {
            // A new API base needs the whole credential again (the daemon refuses it otherwise), in add's order.
            if patch.apiBaseURL != .keep && provider != .personioRecruiting && self.clientID == nil {
                requests.append(.clientID)
            }
            requests.append(.primary(for: provider))
        }
        if self.withWebhookToken { requests.append(.webhookToken) }
        var secrets = SecretsInput()
        if !requests.isEmpty {
            secrets = SecretsInput(try SecretReader(options: self.secretOptions).read(requests))
        }
        if let clientID = self.clientID {
            secrets[.clientID] = SecretInput(bytes: Array(clientID.utf8))
        }
        let grants = self.grants.isEmpty ? nil : current.map { $0.grants.merging(self.grants.grants) }
        let request = EditConnectionRequest(settings: patch, secrets: secrets, grants: grants)
        let view = try client.editConnection(self.id, request)
        try Output.connection(view, global: self.global)
    }
}
