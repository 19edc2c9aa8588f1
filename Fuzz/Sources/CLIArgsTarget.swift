import ConnVaultCtlSupport

/// connvaultctl's argument preprocessing: the refusal of secret-carrying flags and the hoisting of global options
/// before the subcommand. Input: the arguments, separated by NUL bytes.
final class CLIArgsTarget: FuzzTarget {
    static let subcommands = ArgumentPreprocessor.subcommandNames

    func run(_ input: [UInt8]) {
        let arguments = input.split(separator: 0, omittingEmptySubsequences: false).map {
            String(decoding: $0, as: UTF8.self)
        }
        let flag = ArgumentPreprocessor.secretFlag(in: arguments)
        let carriesSecret = arguments.contains { argument in
            ArgumentPreprocessor.secretFlags.contains { argument == $0 || argument.hasPrefix($0 + "=") }
        }
        FuzzTargets.check((flag != nil) == carriesSecret, "a secret flag was missed or invented")
        if let flag {
            FuzzTargets.check(ArgumentPreprocessor.secretFlags.contains(flag), "secretFlag returned a value")
        }

        let hoisted = ArgumentPreprocessor.hoistingGlobalOptions(arguments, subcommands: Self.subcommands)
        FuzzTargets.check(hoisted.sorted() == arguments.sorted(), "hoisting added or dropped an argument")
        if hoisted != arguments {
            FuzzTargets.check(Self.subcommands.contains(hoisted[0]), "hoisting put a non-subcommand first")
        }
        FuzzTargets.check(
            ArgumentPreprocessor.hoistingGlobalOptions(hoisted, subcommands: Self.subcommands) == hoisted,
            "hoisting is not idempotent"
        )
        FuzzTargets.check(
            (ArgumentPreprocessor.secretFlag(in: hoisted) != nil) == carriesSecret,
            "hoisting hid a secret flag"
        )
    }
}
