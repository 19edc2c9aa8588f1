/// Resolves group names for the socket set-up (`--admin-group`), through ``Kernel/groupID(named:)``.
enum GroupLookup {
    /// The gid of group `name`, or nil when there is no such group.
    /// - Throws: `SystemCallError` when the group database cannot be read.
    static func gid(named name: String) throws(SystemCallError) -> UInt32? {
        switch Kernel.groupID(named: name) {
        case .found(let gid): return gid
        case .missing: return nil
        case .failed(let errno): throw SystemCallError("getgrnam_r(\(name))", errno: errno)
        }
    }
}
