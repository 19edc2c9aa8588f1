#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Whom a client of the daemon trusts to serve a socket it sends requests (secrets among them) to; the one rule both
/// clients apply (`VaultClient` and `connvaultctl`), to the uid the kernel reports for the listening end
/// (`SO_PEERCRED` on the client's connected socket).
///
/// A client trusts the server when that uid is
/// - root;
/// - its own uid (a process of the same uid can read everything the client holds anyway); or
/// - the owner of the socket's directory, when that owner is a system account (uid 1–999, as `sysusers.d` makes
///   `connvault`), the directory is not writable by group or others and it sits in a directory only root can write
///   to (`/run/connvault`, made by systemd for the daemon's user under `/run`): root placed that directory for a
///   service account. A directory in `/tmp`, in another user's directory, or owned by `nobody` or a login user
///   vouches for no one.
///
/// Anything else is refused before a byte is sent: a user who could replace the socket (a state directory it owns,
/// a directory it can write) would otherwise receive the client secret of `connvaultctl add --secret-stdin`.
public enum ServerTrust {
    /// The highest uid of a system account (`SYS_UID_MAX` of login.defs by default).
    public static let systemAccountLimit: UInt32 = 999

    /// Why a server of `serverUID` (process `serverPID`) must not be sent requests on `path`, or nil when it may.
    ///
    /// Reads the socket's directory and its parent (`realpath`, `lstat`) when the uid is neither root nor the
    /// client's own.
    ///
    /// - Parameters:
    ///   - kind: Names the flag and variable that choose the socket, in the message.
    ///   - clientUID: The client's effective uid.
    public static func refusal(
        serverUID: UInt32,
        serverPID: Int32,
        path: String,
        kind: SocketKind?,
        clientUID: UInt32 = geteuid()
    ) -> String? {
        if serverUID == 0 || serverUID == clientUID { return nil }
        let directory = Self.directory(of: path)
        if let owner = Self.vouchingOwner(of: directory), owner == serverUID { return nil }
        let hint = kind.map { " (choose the socket with \($0.optionName) or \($0.environmentVariable))" } ?? ""
        return "refusing to use \(path): it is served by uid \(serverUID) (pid \(serverPID)), not by root, this "
            + "user or the service account that owns a protected \(directory); another user may have replaced the "
            + "socket\(hint)"
    }

    /// The refusal when the kernel does not say who serves `path` (`errno` from `getsockopt`).
    public static func unknownServer(path: String, errno error: Int32) -> String {
        "refusing to use \(path): cannot tell which user serves it (SO_PEERCRED: \(String(cString: strerror(error))))"
    }

    /// The owner of `directory` when that directory vouches for its owner: owned by a system account, not writable
    /// by group or others, and its parent owned by root and not writable by group or others (only root could have
    /// put it there). Nil otherwise.
    public static func vouchingOwner(of directory: String) -> UInt32? {
        guard let resolved = Self.realPath(directory) else { return nil }
        var info = stat()
        guard lstat(resolved, &info) == 0, info.st_mode & S_IFMT == S_IFDIR, info.st_mode & 0o022 == 0,
            (1...Self.systemAccountLimit).contains(info.st_uid)
        else {
            return nil
        }
        let parent = Self.directory(of: resolved)
        guard parent != resolved else { return nil }
        var parentInfo = stat()
        guard lstat(parent, &parentInfo) == 0, parentInfo.st_mode & S_IFMT == S_IFDIR, parentInfo.st_uid == 0,
            parentInfo.st_mode & 0o022 == 0
        else { return nil }
        return info.st_uid
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// The directory part of `path`: `.` for a bare name, `/` for a file in the root.
    public static func directory(of path: String) -> String {
        guard let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")) else { return "." }
        let directory = String(path[..<slash])
        return directory.isEmpty ? "/" : directory
    }
}
