import ArgumentParser

/// `connvaultctl`'s exit codes (DESIGN §8). Fixed: scripts and tests rely on them.
enum ExitStatus: Int32, Sendable {
    case success = 0
    /// The daemon refused the operation, or it failed. Temporary refusals (`rate_limited`, `upstream_unavailable`)
    /// too: the code printed on standard error tells a script whether to retry. A grant rule's refusals
    /// (`not_allowed`, `token_not_exportable`) are refusals like `forbidden`.
    case failure = 1
    /// Bad arguments or input (including argument-parser's own errors, which would otherwise exit 64).
    case usage = 2
    /// The daemon cannot be reached: socket missing, refused, not permitted, no answer in time, or served by a user
    /// that is not the daemon's (nothing was sent to it).
    case unreachable = 3
}

/// What to print, where, and which status to exit with, for any error a command throws.
struct ErrorReport: Equatable {
    var status: ExitStatus
    var text: String
    /// Help and version requests go to standard output; everything else to standard error.
    var toStandardOutput: Bool

    init(status: ExitStatus, text: String, toStandardOutput: Bool = false) {
        self.status = status
        self.text = text
        self.toStandardOutput = toStandardOutput
    }

    static let prefix = "connvaultctl: "

    /// Classifies `error`. Never includes a secret: messages come from the daemon's problem details (secret-free by
    /// contract) or from the CLI's own texts.
    init(for error: any Error) {
        switch error {
        case let error as CLIError:
            self.init(status: error.status, text: Self.prefix + error.description)
        case let error as DaemonError:
            self.init(status: Self.status(for: error), text: Self.prefix + error.description)
        case is CancellationError:
            self.init(status: .failure, text: Self.prefix + "interrupted")
        default:
            let code = ConnVaultCtl.exitCode(for: error)
            let message = ConnVaultCtl.fullMessage(for: error)
            if code == .success {
                self.init(status: .success, text: message, toStandardOutput: true)
            } else if code == .validationFailure {
                self.init(status: .usage, text: message)
            } else if error is ExitCode {
                self.init(status: ExitStatus(rawValue: code.rawValue) ?? .failure, text: message)
            } else {
                self.init(status: .failure, text: Self.prefix + ConnVaultCtl.message(for: error))
            }
        }
    }

    /// Client errors: unreachable (3) when no daemon answered, usage (2) for a request the client would not send,
    /// failure (1) when something answered and refused or misbehaved.
    static func status(for error: DaemonError) -> ExitStatus {
        switch error.code {
        case .cannotConnect, .timedOut, .untrustedServer: .unreachable
        case .invalidRequest: .usage
        default: .failure
        }
    }
}
