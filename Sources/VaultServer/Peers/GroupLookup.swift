#if canImport(Glibc)
import Glibc
#endif

/// Resolves group names with `getgrnam_r` (thread-safe, unlike `getgrnam`).
enum GroupLookup {
    /// The gid of group `name`, or nil when there is no such group.
    /// - Throws: `SystemCallError` when the group database cannot be read.
    static func gid(named name: String) throws(SystemCallError) -> UInt32? {
        var capacity = 4096
        while true {
            var entry = group()
            var result: UnsafeMutablePointer<group>?
            var buffer = [CChar](repeating: 0, count: capacity)
            let status = getgrnam_r(name, &entry, &buffer, buffer.count, &result)
            if status == ERANGE && capacity < 1 << 20 {
                capacity *= 4
                continue
            }
            // 0 with a nil result, ENOENT and friends all mean "no such group" (see getgrnam_r(3)).
            if status == 0 || status == ENOENT || status == ESRCH || status == EBADF || status == EPERM {
                return result?.pointee.gr_gid
            }
            throw SystemCallError("getgrnam_r(\(name))", errno: status)
        }
    }
}
