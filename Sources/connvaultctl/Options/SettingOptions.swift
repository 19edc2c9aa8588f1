import ArgumentParser
import VaultAPI

/// The plain settings of a connection, shared by `add` and `edit`.
struct SettingOptions: ParsableArguments {
    @Option(
        name: .customLong("api-base-url"),
        help: ArgumentHelp("Personio API base URL (default https://api.personio.de).", valueName: "url")
    )
    var apiBaseURL: String?

    @Option(name: .customLong("app-id"), help: ArgumentHelp("Sent as X-Personio-App-ID.", valueName: "id"))
    var appID: String?

    @Option(name: .customLong("partner-id"), help: ArgumentHelp("Sent as X-Personio-Partner-ID.", valueName: "id"))
    var partnerID: String?

    @Option(
        name: .customLong("scope"),
        help: ArgumentHelp("Space-separated OAuth scopes to request (personio-v2).", valueName: "scopes")
    )
    var scope: String?

    @Option(
        name: .customLong("company-id"),
        help: ArgumentHelp("Personio company id (personio-recruiting).", valueName: "id")
    )
    var companyID: String?

    @Option(
        name: .customLong("permission"),
        help: ArgumentHelp(
            "An access right granted on Personio's admin screen, recorded for `show` "
                + "(repeatable; edit replaces the list).",
            valueName: "area:read|write"
        )
    )
    var permissions: [String] = []

    @Option(
        name: .customLong("proxy-max-body"),
        help: ArgumentHelp(
            "The largest request body the proxy route accepts for this connection, in bytes or with a KiB, MiB or "
                + "GiB suffix (1KiB to 1GiB; default 64MiB).",
            valueName: "bytes"
        )
    )
    var proxyMaxBody: ByteCount?

    /// Whether no setting was given.
    var isEmpty: Bool {
        self.apiBaseURL == nil && self.appID == nil && self.partnerID == nil && self.scope == nil
            && self.companyID == nil && self.permissions.isEmpty && self.proxyMaxBody == nil
    }

    /// The settings for a new connection.
    var settings: ConnectionSettings {
        ConnectionSettings(
            apiBaseURL: self.apiBaseURL,
            appID: self.appID,
            partnerID: self.partnerID,
            scope: self.scope,
            companyID: self.companyID,
            permissions: self.permissions.isEmpty ? nil : self.permissions,
            proxyMaxBody: self.proxyMaxBody?.bytes
        )
    }

    /// The names `--unset` accepts; dashes and underscores both work.
    static let unsettableNames = [
        "api-base-url", "app-id", "partner-id", "scope", "company-id", "permissions", "proxy-max-body",
    ]

    /// Clears the string setting called `name` in `patch`; false when there is none or it is already changed.
    private static func clear(_ name: String, in patch: inout SettingsPatch) -> Bool? {
        func clear(_ change: inout SettingsPatch.Change<String>) -> Bool {
            guard change == .keep else { return false }
            change = .clear
            return true
        }
        switch name {
        case "api-base-url": return clear(&patch.apiBaseURL)
        case "app-id": return clear(&patch.appID)
        case "partner-id": return clear(&patch.partnerID)
        case "scope": return clear(&patch.scope)
        case "company-id": return clear(&patch.companyID)
        case "permissions", "permission":
            guard patch.permissions == .keep else { return false }
            patch.permissions = .clear
            return true
        case "proxy-max-body":
            guard patch.proxyMaxBody == .keep else { return false }
            patch.proxyMaxBody = .clear
            return true
        default: return nil
        }
    }

    /// A patch setting the given options and clearing the `unset` ones.
    ///
    /// - Throws: `CLIError.usage` for an unknown setting name, or one both set and unset.
    func patch(unsetting unset: [String]) throws -> SettingsPatch {
        var patch = SettingsPatch()
        if let value = self.apiBaseURL { patch.apiBaseURL = .set(value) }
        if let value = self.appID { patch.appID = .set(value) }
        if let value = self.partnerID { patch.partnerID = .set(value) }
        if let value = self.scope { patch.scope = .set(value) }
        if let value = self.companyID { patch.companyID = .set(value) }
        if !self.permissions.isEmpty { patch.permissions = .set(self.permissions) }
        if let value = self.proxyMaxBody { patch.proxyMaxBody = .set(value.bytes) }
        for rawName in unset {
            switch Self.clear(rawName.replacingUnderscores(), in: &patch) {
            case true?:
                continue
            case false?:
                throw CLIError.usage(
                    "--unset \(TableFormatter.sanitize(rawName)) conflicts with another change to the same setting"
                )
            case nil:
                let known = Self.unsettableNames.joined(separator: ", ")
                throw CLIError.usage("--unset \(TableFormatter.sanitize(rawName)): not a setting; use one of \(known)")
            }
        }
        return patch
    }
}

extension String {
    fileprivate func replacingUnderscores() -> String {
        String(self.map { $0 == "_" ? "-" : $0 }).lowercased()
    }
}
