/// Finds the systemd unit a process runs in from `/proc/PID/cgroup`.
///
/// Only the unified hierarchy's line (`0::/path`) is read. The unit is the **outermost** `.service` or `.scope`
/// component of the path, below nothing but slices: `0::/system.slice/payroll.service` is `payroll.service`, and so is
/// `0::/system.slice/payroll.service/worker`.
///
/// Outermost, not innermost, because everything below a unit's own cgroup may be delegated to that unit: every user's
/// `user@UID.service` is, so user 1000 can create `…/user@1000.service/payroll.service` and move its processes there.
/// Reading the innermost component would let that user pass as the system's `payroll.service`; reading the outermost
/// one names `user@1000.service`, which only systemd itself can put a process into. A grant for a user-level unit is
/// therefore not possible: grant the uid instead.
public enum CgroupUnit {
    /// The unit named by `cgroup` (the contents of `/proc/PID/cgroup`), or nil when the process is in no unit (the
    /// root cgroup, a container's own root) or the file has no unified-hierarchy line.
    public static func unit(fromCgroupFile cgroup: String) -> String? {
        for line in cgroup.split(separator: "\n") where line.hasPrefix("0::") {
            return Self.unit(fromPath: line.dropFirst(3))
        }
        return nil
    }

    /// The unit named by a cgroup path such as `/system.slice/payroll.service`.
    static func unit(fromPath path: Substring) -> String? {
        for component in path.split(separator: "/") {
            if component.hasSuffix(".service") || component.hasSuffix(".scope") {
                return String(component)
            }
            // Anything but a slice above the first unit is a layout systemd does not make: trust none of it.
            guard component.hasSuffix(".slice") else { return nil }
        }
        return nil
    }
}
