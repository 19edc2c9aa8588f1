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
///
/// The file is read as bytes, never as `Character`s: a cgroup's name is any bytes but `/`, and a name that begins with
/// a combining mark (`\u{301}app.slice`) joins the `/` before it into one `Character`, so that splitting characters on
/// `/` would merge `user@1000.service/\u{301}app.slice` into one component (a `.slice`, skipped) and name the user's
/// own `payroll.service` below it as the unit (found while fuzzing: a combining mark after a `/` made a `Character`
/// check of the proxy-path target fail, and the same holds here).
public enum CgroupUnit {
    /// The unit named by `cgroup` (the contents of `/proc/PID/cgroup`), or nil when the process is in no unit (the
    /// root cgroup, a container's own root) or the file has no unified-hierarchy line.
    public static func unit(fromCgroupFile cgroup: String) -> String? {
        let prefix = Array("0::".utf8)
        for line in cgroup.utf8.split(separator: UInt8(ascii: "\n")) where line.starts(with: prefix) {
            return Self.unit(fromPath: line.dropFirst(prefix.count))
        }
        return nil
    }

    /// The unit named by a cgroup path such as `/system.slice/payroll.service`, as UTF-8.
    static func unit(fromPath path: Substring.UTF8View) -> String? {
        for component in path.split(separator: UInt8(ascii: "/")) {
            if Self.hasSuffix(component, ".service") || Self.hasSuffix(component, ".scope") {
                return String(decoding: component, as: UTF8.self)
            }
            // Anything but a slice above the first unit is a layout systemd does not make: trust none of it.
            guard Self.hasSuffix(component, ".slice") else { return nil }
        }
        return nil
    }

    private static func hasSuffix(_ bytes: Substring.UTF8View, _ suffix: StaticString) -> Bool {
        let suffix = UnsafeBufferPointer(start: suffix.utf8Start, count: suffix.utf8CodeUnitCount)
        return bytes.count >= suffix.count && bytes.suffix(suffix.count).elementsEqual(suffix)
    }
}
