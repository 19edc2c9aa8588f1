import VaultAPI

/// Resolves and checks Unix socket paths for the clients.
public enum SocketPath {
    /// `sun_path` holds 108 bytes on Linux including the terminating NUL.
    public static let maximumLength = SocketKind.maximumPathLength

    /// The socket to use: `explicit` when given, else the kind's environment variable when set and non-empty, else
    /// the default path.
    ///
    /// - Parameters:
    ///   - explicit: A path from a flag or the caller, taking precedence.
    ///   - kind: Admin or app socket.
    ///   - environment: The environment to consult; nil reads the process environment.
    public static func resolve(_ explicit: String?, kind: SocketKind, environment: [String: String]? = nil) -> String {
        kind.resolvePath(explicit, environment: environment)
    }

    /// Checks that `path` fits in `sockaddr_un`.
    ///
    /// - Throws: `VaultClientError` with code `.invalidRequest` naming the path and the limit.
    public static func validate(_ path: String, kind: SocketKind? = nil) throws {
        let problem = kind.map { $0.pathProblem(path) } ?? SocketKind.pathProblem(path)
        if let problem {
            throw VaultClientError(.invalidRequest, problem, socketPath: path)
        }
    }
}
