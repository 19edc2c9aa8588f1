#if canImport(Glibc)
import VaultCore
import Glibc
#endif

/// Resolves group names to gids with `getgrnam_r` (thread-safe), for grants that name groups.
enum GroupDirectory {
    static func gid(named name: String) -> UInt32? {
        var group = group()
        var result: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 16 * 1024)
        let status = getgrnam_r(name, &group, &buffer, buffer.count, &result)
        guard status == 0, let result else { return nil }
        return result.pointee.gr_gid
    }
}
