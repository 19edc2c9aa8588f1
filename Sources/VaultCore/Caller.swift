import VaultAPI

/// Who is on the other end of a socket: what the kernel recorded at `connect()` (`SO_PEERCRED`, `SO_PEERGROUPS`)
/// and what `/proc/PID` says once the process is confirmed through its pidfd to be the one that connected.
public struct Caller: Sendable, Equatable {
    public var uid: UInt32
    public var gid: UInt32
    public var pid: Int32
    /// `/proc/PID/comm`, or "?" when the process is gone or could not be confirmed.
    public var comm: String
    /// Supplementary groups (from `SO_PEERGROUPS`, fixed at `connect()`), plus `gid`.
    public var groups: [UInt32]
    /// The systemd unit the process runs in (from `/proc/PID/cgroup`, confirmed through the pidfd), if any.
    public var unit: String?

    public init(uid: UInt32, gid: UInt32, pid: Int32, comm: String, groups: [UInt32] = [], unit: String? = nil) {
        self.uid = uid
        self.gid = gid
        self.pid = pid
        self.comm = comm
        self.groups = groups
        self.unit = unit
    }

    /// How the audit trail records this caller.
    public var auditActor: AuditActor { AuditActor(uid: self.uid, pid: self.pid, comm: self.comm, unit: self.unit) }
}
