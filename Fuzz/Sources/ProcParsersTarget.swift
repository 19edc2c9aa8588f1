import VaultServer

/// `/proc/PID/cgroup` (the caller's systemd unit), `/proc/PID/status` fields (CapEff, Umask) and `/proc/PID/comm`:
/// the input is the file's contents, as ``ProcFile`` hands it over (UTF-8, invalid bytes replaced).
final class ProcParsersTarget: FuzzTarget {
    func run(_ input: [UInt8]) {
        let text = String(decoding: input, as: UTF8.self)

        if let unit = CgroupUnit.unit(fromCgroupFile: text) {
            // A unit name is one path component of the unified-hierarchy line, never a slice or a path.
            FuzzTargets.check(unit.hasSuffix(".service") || unit.hasSuffix(".scope"), "cgroup unit without a suffix")
            FuzzTargets.check(!unit.contains("/") && !unit.contains("\n"), "cgroup unit spans components")
            FuzzTargets.check(text.contains(unit), "cgroup unit not in the file")
            FuzzTargets.check(
                text.split(separator: "\n").contains { $0.hasPrefix("0::") },
                "cgroup unit without a unified-hierarchy line"
            )
        }

        for name in ["CapEff", "Umask", "Name", "Uid", ""] {
            guard let value = ProcStatus.field(name, in: text) else { continue }
            FuzzTargets.check(!value.contains("\n"), "status field spans lines")
            FuzzTargets.check(value.first != " " && value.last != " ", "status field not trimmed")
            _ = UInt64(value, radix: 16)
            _ = UInt32(value, radix: 8)
        }

        let comm = PeerIdentity.sanitisedComm(text)
        FuzzTargets.check(!comm.isEmpty && comm.unicodeScalars.count <= 15, "comm longer than the kernel's 15 bytes")
        FuzzTargets.check(
            comm.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value < 0x7F },
            "comm not printable ASCII"
        )
    }
}
