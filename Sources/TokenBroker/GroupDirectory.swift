import CVaultShims

/// Resolves group names to gids for grants that name groups, through `cv_group_gid` (`getgrnam_r`, its buffer grown
/// on ERANGE, so a group with many members is found, not dropped).
enum GroupDirectory {
    static func gid(named name: String) -> UInt32? {
        var gid: UInt32 = 0
        return cv_group_gid(name, &gid) == 0 ? gid : nil
    }
}
