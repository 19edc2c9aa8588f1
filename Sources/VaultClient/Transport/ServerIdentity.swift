import CVaultShims

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Who serves a connected admin socket, and whether a client may send it requests (secrets among them).
///
/// The kernel tells a client the uid of the process that bound the listening socket (`SO_PEERCRED` on the client's
/// own connected end). A client trusts the server when that uid is
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
struct ServerIdentity: Equatable {
    var pid: Int32
    var uid: uid_t
    var gid: gid_t

    /// The peer credentials of the connected socket `descriptor`, or nil when the kernel does not give them.
    static func of(_ descriptor: Int32) -> ServerIdentity? {
        #if os(Linux)
        var credentials = cv_ucred()
        guard cv_get_peer_credentials(descriptor, &credentials) == 0 else { return nil }
        return ServerIdentity(pid: credentials.pid, uid: credentials.uid, gid: credentials.gid)
        #else
        return nil
        #endif
    }

    /// Refuses the server of `descriptor`, connected to `path`, unless the rule above trusts it.
    ///
    /// - Parameters:
    ///   - clientUID: The client's effective uid.
    /// - Throws: `VaultClientError` `.untrustedServer` naming the socket, the server's uid and what would have been
    ///   trusted.
    static func check(_ descriptor: Int32, path: String, kind: SocketKind?, clientUID: uid_t = geteuid()) throws {
        guard let server = Self.of(descriptor) else {
            throw VaultClientError(
                .untrustedServer,
                "refusing to use \(path): cannot tell which user serves it (SO_PEERCRED: \(String(cString: strerror(errno))))",
                socketPath: path
            )
        }
        if server.uid == 0 || server.uid == clientUID { return }
        let directory = Self.directory(of: path)
        if let owner = Self.vouchingOwner(of: directory), owner == server.uid { return }
        let hint = kind.map { " (choose the socket with \($0.optionName) or \($0.environmentVariable))" } ?? ""
        throw VaultClientError(
            .untrustedServer,
            "refusing to use \(path): it is served by uid \(server.uid) (pid \(server.pid)), not by root, this user "
                + "or the service account that owns a protected \(directory); another user may have replaced the "
                + "socket\(hint)",
            socketPath: path
        )
    }

    /// The highest uid of a system account (`SYS_UID_MAX` of login.defs by default).
    static let systemAccountLimit: uid_t = 999

    /// The owner of `directory` when that directory vouches for its owner: owned by a system account, not writable
    /// by group or others, and its parent owned by root and not writable by group or others (only root could have
    /// put it there). Nil otherwise.
    static func vouchingOwner(of directory: String) -> uid_t? {
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

    static func directory(of path: String) -> String {
        guard let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")) else { return "." }
        let directory = String(path[..<slash])
        return directory.isEmpty ? "/" : directory
    }
}
