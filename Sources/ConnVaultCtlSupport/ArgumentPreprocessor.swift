/// Checks and adjusts the raw arguments before argument-parser sees them. A library of its own (pure, no I/O), so that
/// the fuzz harness can feed it arguments as well as connvaultctl.
package enum ArgumentPreprocessor {
    /// Flags that would put a secret on the command line, where any user can read it in `ps` or `/proc/PID/cmdline`.
    package static let secretFlags = [
        "--client-secret", "--secret", "--recruiting-key", "--recruiting-token", "--webhook-token", "--token",
        "--password",
    ]

    package static let secretRefusal =
        "secrets are never taken on the command line (visible in ps); "
        + "use the no-echo prompt, --secret-stdin or --secret-file"

    /// The first secret-carrying flag in `arguments` (`--flag` or `--flag=value`), by name only: the value is never
    /// returned, so it cannot be echoed.
    package static func secretFlag(in arguments: [String]) -> String? {
        for argument in arguments {
            for flag in Self.secretFlags where argument == flag || argument.hasPrefix(flag + "=") {
                return flag
            }
        }
        return nil
    }

    /// connvaultctl's subcommands, for callers that cannot read them from its command configuration (the fuzz
    /// harness); a test keeps this list equal to `ConnVaultCtl.subcommandNames`.
    package static let subcommandNames: Set<String> = [
        "add", "list", "show", "edit", "disable", "enable", "reset", "disconnect", "verify", "grant", "rotate-key",
        "audit", "status", "token",
    ]

    /// Options every subcommand takes (see ``GlobalOptions``); the value-taking ones.
    package static let globalOptionsWithValue: Set<String> = ["--admin-socket", "--app-socket"]
    package static let globalFlags: Set<String> = ["--json"]

    /// Moves global options written before the subcommand (`connvaultctl --json list`) after it, where
    /// argument-parser looks for them. Anything else is returned unchanged.
    package static func hoistingGlobalOptions(_ arguments: [String], subcommands: Set<String>) -> [String] {
        var leading: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            let name = argument.split(separator: "=", maxSplits: 1).first.map(String.init) ?? argument
            if Self.globalFlags.contains(argument) {
                leading.append(argument)
                index += 1
            } else if Self.globalOptionsWithValue.contains(name) && argument.contains("=") {
                leading.append(argument)
                index += 1
            } else if Self.globalOptionsWithValue.contains(argument) && index + 1 < arguments.count {
                leading.append(contentsOf: arguments[index...index + 1])
                index += 2
            } else {
                break
            }
        }
        guard !leading.isEmpty, index < arguments.count, subcommands.contains(arguments[index]) else {
            return arguments
        }
        return [arguments[index]] + leading + arguments[(index + 1)...]
    }
}
