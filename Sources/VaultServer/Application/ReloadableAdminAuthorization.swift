import VaultCore
import VaultLocks

/// The admin socket's ``AdminAuthorization``, whose admin group's gid a reload (SIGHUP) may replace: `--admin-group`
/// names a group, and the group can be recreated with another gid while the daemon runs.
final class ReloadableAdminAuthorization: Sendable {
    private let current: Locked<AdminAuthorization>

    init(_ authorization: AdminAuthorization) {
        self.current = Locked(authorization)
    }

    /// Whether `caller` may use the admin socket, by the authorization in force now.
    func allows(_ caller: Caller) -> Bool {
        self.current.withLock { $0.allows(caller) }
    }

    /// Puts `gid` in force as the admin group's gid.
    func replaceAdminGID(_ gid: UInt32) {
        self.current.withLock { $0.adminGID = gid }
    }
}
