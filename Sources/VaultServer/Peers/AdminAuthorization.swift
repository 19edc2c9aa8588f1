import VaultCore

#if canImport(Glibc)
import Glibc
#endif

/// Who may use the admin socket (DESIGN §7): uid 0, the daemon's own uid, and members of `--admin-group`, by primary
/// or supplementary group. Checked on every request from peer credentials, on top of the socket's file mode.
public struct AdminAuthorization: Sendable, Equatable {
    /// The daemon's effective uid.
    public var daemonUID: UInt32
    /// The gid of `--admin-group`, when one was given.
    public var adminGID: UInt32?

    /// - Parameters:
    ///   - daemonUID: The uid the daemon runs as (its effective uid).
    ///   - adminGID: The gid whose members are admins too; nil for none.
    public init(daemonUID: UInt32 = geteuid(), adminGID: UInt32?) {
        self.daemonUID = daemonUID
        self.adminGID = adminGID
    }

    /// Whether `caller` may use the admin socket.
    public func allows(_ caller: Caller) -> Bool {
        if caller.uid == 0 || caller.uid == self.daemonUID { return true }
        guard let adminGID = self.adminGID else { return false }
        return caller.gid == adminGID || caller.groups.contains(adminGID)
    }
}
