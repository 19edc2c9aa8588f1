#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Which of the daemon's two sockets a route lives on, or a client talks to.
public enum SocketKind: String, Sendable, Hashable, CaseIterable {
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

    /// The socket to use: `explicit` when given, else this kind's environment variable when set and non-empty, else
    /// the default path.
    ///
    /// - Parameters:
    ///   - explicit: A path from a flag or the caller, taking precedence.
    ///   - environment: The environment to consult; nil reads the process environment.
    public func resolvePath(_ explicit: String?, environment: [String: String]? = nil) -> String {
        if let explicit, !explicit.isEmpty { return explicit }
        let fromEnvironment: String?
        if let environment {
            fromEnvironment = environment[self.environmentVariable]
        } else {
            fromEnvironment = getenv(self.environmentVariable).map { String(cString: $0) }
        }
        if let fromEnvironment, !fromEnvironment.isEmpty { return fromEnvironment }
        return self.defaultPath
    }

    /// `sun_path` holds 108 bytes on Linux including the terminating NUL.
    public static let maximumPathLength = 107

    /// Why `path` cannot name a Unix socket (empty, a NUL byte, longer than `sun_path`), or nil when it can.
    public func pathProblem(_ path: String) -> String? {
        let hint = " (set with \(self.optionName) or \(self.environmentVariable))"
        return Self.pathProblem(path, hint: hint)
    }

    /// As ``pathProblem(_:)``, without naming a flag.
    public static func pathProblem(_ path: String, hint: String = "") -> String? {
        if path.isEmpty { return "the socket path is empty\(hint)" }
        if path.utf8.contains(0) { return "the socket path contains a NUL byte\(hint)" }
        let length = path.utf8.count
        if length > Self.maximumPathLength {
            return "the socket path \(path) is \(length) bytes; Unix socket paths must be at most "
                + "\(Self.maximumPathLength) bytes: use a shorter path or a relative one\(hint)"
        }
        return nil
    }
}

extension SocketKind {
    /// What both clients (the Swift client and `connvaultctl`) say when they cannot connect to this socket at `path`:
    /// the system's reason, what it usually means, and how to choose another socket.
    public func cannotConnectMessage(_ path: String, errno error: Int32) -> String {
        var message = "cannot connect to \(path): \(String(cString: strerror(error)))"
        switch error {
        case ENOENT, ECONNREFUSED:
            message += "; is connvaultd running?"
        case EACCES, EPERM:
            message += "; this user may not open the socket"
        default:
            break
        }
        return message + " (choose the socket with \(self.optionName) or \(self.environmentVariable))"
    }
}
