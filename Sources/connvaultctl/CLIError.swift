/// A failure decided by the CLI itself (as opposed to the daemon), with the exit status it leads to.
struct CLIError: Error, CustomStringConvertible, Equatable {
    var status: ExitStatus
    var message: String
    /// A snake_case code printed after the message, for failures (not for usage errors).
    var code: String?

    /// A usage error (exit 2): a missing or conflicting option, input that cannot be read.
    static func usage(_ message: String) -> CLIError {
        CLIError(status: .usage, message: message, code: nil)
    }

    /// A refused or failed operation (exit 1).
    static func failed(_ message: String, code: String) -> CLIError {
        CLIError(status: .failure, message: message, code: code)
    }

    var description: String {
        if let code { return "\(self.message) (\(code))" }
        return self.message
    }
}
