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
    /// The canonical path of the running executable (`/proc/PID/exe`, confirmed through the pidfd), if known.
    public var exe: String?
    /// The SHA-256 of that executable's contents, lower-case hex (hashed once per device, inode, size and mtime),
    /// if known.
    public var exeSHA256: String?

    public init(
        uid: UInt32,
        gid: UInt32,
        pid: Int32,
        comm: String,
        groups: [UInt32] = [],
        unit: String? = nil,
        exe: String? = nil,
        exeSHA256: String? = nil
    ) {
        self.uid = uid
        self.gid = gid
        self.pid = pid
        self.comm = comm
        self.groups = groups
        self.unit = unit
        self.exe = exe
        self.exeSHA256 = exeSHA256
    }

    /// How the audit trail records this caller.
    public var auditActor: AuditActor { AuditActor(uid: self.uid, pid: self.pid, comm: self.comm, unit: self.unit) }
}
