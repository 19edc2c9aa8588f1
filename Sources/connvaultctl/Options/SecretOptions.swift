import ArgumentParser

/// Where secrets come from when a command needs them: a no-echo prompt (the default on a terminal), standard input,
/// or a file.
struct SecretOptions: ParsableArguments {
    @Flag(
        name: .customLong("secret-stdin"),
        help: "Read the secrets from standard input, one line each (a trailing newline is stripped)."
    )
    var secretStdin = false

    @Option(
        name: .customLong("secret-file"),
        help: ArgumentHelp(
            "Read the secrets from a file, one line each; it must not be readable by other users.",
            valueName: "file"
        ),
        completion: .file()
    )
    var secretFile: String?

    func validate() throws {
        if self.secretStdin && self.secretFile != nil {
            throw ValidationError("--secret-stdin and --secret-file cannot be combined")
        }
    }
}
