import ArgumentParser
import VaultAPI

/// Who may ask the app socket for a connection's tokens: uids, groups, systemd units. Repeatable.
struct GrantOptions: ParsableArguments {
    @Option(name: .customLong("allow-uid"), help: ArgumentHelp("Grant a numeric uid (repeatable).", valueName: "uid"))
    var uids: [UInt32] = []

    @Option(
        name: .customLong("allow-group"),
        help: ArgumentHelp("Grant a group by name (repeatable).", valueName: "group")
    )
    var groups: [String] = []

    @Option(
        name: .customLong("allow-unit"),
        help: ArgumentHelp("Grant a systemd unit such as app.service (repeatable).", valueName: "unit")
    )
    var units: [String] = []

    var isEmpty: Bool { self.uids.isEmpty && self.groups.isEmpty && self.units.isEmpty }

    var grants: Grants { Grants(uids: self.uids, groups: self.groups, units: self.units).normalized }
}
