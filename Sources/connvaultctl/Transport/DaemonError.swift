import VaultAPI

/// An error talking to the daemon: it could not be reached, did not answer in time, answered something that is not
/// HTTP/JSON, or answered with a problem. Descriptions never contain a secret; `description` is the line
/// `connvaultctl` prints.
struct DaemonError: Error, Sendable, CustomStringConvertible, Equatable {
    /// What went wrong, stable for callers to switch on.
    struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String, Hashable, Sendable {
            case cannotConnect = "cannot_connect"
            case timedOut = "timed_out"
            case invalidResponse = "invalid_response"
            case invalidRequest = "invalid_request"
            case untrustedServer = "untrusted_server"
            case problem
        }

        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The socket is missing, refuses connections, or may not be opened by this user.
        static let cannotConnect = Code(.cannotConnect)
        /// No complete answer arrived within the time-out.
        static let timedOut = Code(.timedOut)
        /// The peer answered, but not with well-formed HTTP/1.1 or the expected JSON.
        static let invalidResponse = Code(.invalidResponse)
        /// The request could not be sent as asked (socket path too long, a secret that is not UTF-8, …).
        static let invalidRequest = Code(.invalidRequest)
        /// The socket is served by a user the client does not trust with its requests (not root, not itself, not the
        /// owner of the socket's protected directory); nothing was sent.
        static let untrustedServer = Code(.untrustedServer)
        /// The daemon answered with an `application/problem+json` error; see ``problem``.
        static let problem = Code(.problem)

        /// The snake_case name, as printed by `connvaultctl`.
        var description: String { self.value.rawValue }
    }

    var code: Code
    /// One line for a human, without the code.
    var message: String
    /// The socket the request went to, when known.
    var socketPath: String?
    /// The daemon's problem, when `code == .problem`.
    var problem: Problem?
    /// The `errno` behind a `cannotConnect`, when there was one.
    var osError: Int32?

    init(
        _ code: Code,
        _ message: String,
        socketPath: String? = nil,
        problem: Problem? = nil,
        osError: Int32? = nil
    ) {
        self.code = code
        self.message = message
        self.socketPath = socketPath
        self.problem = problem
        self.osError = osError
    }

    /// The daemon refused the request; the message is the problem's `detail`.
    static func problem(_ problem: Problem, socketPath: String? = nil) -> DaemonError {
        DaemonError(.problem, problem.detail, socketPath: socketPath, problem: problem)
    }

    /// The code to show a user: the problem's own code for `.problem`, the client's code otherwise.
    var displayCode: String { self.problem?.code.rawValue ?? self.code.description }

    var description: String { "\(self.message) (\(self.displayCode))" }

    /// Equal by code (and problem code), as the house style asks.
    static func == (lhs: DaemonError, rhs: DaemonError) -> Bool {
        lhs.code == rhs.code && lhs.problem?.code == rhs.problem?.code
    }
}
