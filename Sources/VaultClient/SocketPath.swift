#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which of the daemon's two sockets a client talks to.
public enum SocketKind: String, Sendable, CaseIterable {
    /// Control operations (`connvaultctl`); served to root, the daemon's uid and `--admin-group`.
    case admin
    /// Token requests from local programs; served to the uids, groups and units a connection grants.
    case app

    /// The environment variable that overrides the default path.
    public var environmentVariable: String {
        switch self {
        case .admin: "CONNVAULT_ADMIN_SOCKET"
        case .app: "CONNVAULT_APP_SOCKET"
        }
    }

    /// The `connvaultctl` option that selects this socket.
    public var optionName: String {
        switch self {
        case .admin: "--admin-socket"
        case .app: "--app-socket"
        }
    }

    /// Where the daemon listens when nothing else is configured (DESIGN §1).
    public var defaultPath: String {
        switch self {
        case .admin: "/run/connvault/admin.sock"
        case .app: "/run/connvault/app.sock"
        }
    }
}

/// Resolves and checks Unix socket paths.
public enum SocketPath {
    /// `sun_path` holds 108 bytes on Linux including the terminating NUL.
    public static let maximumLength = 107

    /// The socket to use: `explicit` when given, else the kind's environment variable when set and non-empty, else
    /// the default path.
    ///
    /// - Parameters:
    ///   - explicit: A path from a flag or the caller, taking precedence.
    ///   - kind: Admin or app socket.
    ///   - environment: The environment to consult; nil reads the process environment.
    public static func resolve(_ explicit: String?, kind: SocketKind, environment: [String: String]? = nil) -> String {
        if let explicit, !explicit.isEmpty { return explicit }
        let fromEnvironment: String?
        if let environment {
            fromEnvironment = environment[kind.environmentVariable]
        } else {
            fromEnvironment = getenv(kind.environmentVariable).map { String(cString: $0) }
        }
        if let fromEnvironment, !fromEnvironment.isEmpty { return fromEnvironment }
        return kind.defaultPath
    }

    /// Checks that `path` fits in `sockaddr_un`.
    ///
    /// - Throws: `VaultClientError` with code `.invalidRequest` naming the path and the limit.
    public static func validate(_ path: String, kind: SocketKind? = nil) throws {
        let hint = kind.map { " (set with \($0.optionName) or \($0.environmentVariable))" } ?? ""
        if path.isEmpty {
            throw VaultClientError(.invalidRequest, "the socket path is empty\(hint)", socketPath: path)
        }
        if path.utf8.contains(0) {
            throw VaultClientError(.invalidRequest, "the socket path contains a NUL byte\(hint)", socketPath: path)
        }
        let length = path.utf8.count
        if length > Self.maximumLength {
            throw VaultClientError(
                .invalidRequest,
                "the socket path \(path) is \(length) bytes; Unix socket paths must be at most \(Self.maximumLength)"
                    + " bytes: use a shorter path or a relative one\(hint)",
                socketPath: path
            )
        }
    }
}
