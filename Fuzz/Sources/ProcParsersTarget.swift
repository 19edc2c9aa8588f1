import VaultServer

/// `/proc/PID/cgroup` (the caller's systemd unit), `/proc/PID/status` fields (CapEff, Umask) and `/proc/PID/comm`:
/// the input is the file's contents, as ``ProcFile`` hands it over (UTF-8, invalid bytes replaced).
final class ProcParsersTarget: FuzzTarget {
    func run(_ input: [UInt8]) {
        let text = String(decoding: input, as: UTF8.self)

        // The unit, checked on bytes (a cgroup name is any bytes but '/'): the first component of the first
        // unified-hierarchy line that is not a slice, when it is a .service or .scope.
        let unit = CgroupUnit.unit(fromCgroupFile: text)
        FuzzTargets.check(unit == Self.expectedUnit(text), "cgroup unit is not the outermost unit below slices")
        if let unit {
            FuzzTargets.check(!unit.utf8.contains(UInt8(ascii: "/")), "cgroup unit spans components")
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

    /// The unit `CgroupUnit` must name, worked out on bytes.
    static func expectedUnit(_ text: String) -> String? {
        let lines = text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true)
        guard let line = lines.first(where: { $0.starts(with: Array("0::".utf8)) }) else { return nil }
        for component in line.dropFirst(3).split(separator: UInt8(ascii: "/")) {
            let name = String(decoding: component, as: UTF8.self)
            if Array(component).ends(with: ".service") || Array(component).ends(with: ".scope") { return name }
            guard Array(component).ends(with: ".slice") else { return nil }
        }
        return nil
    }
}

extension Array where Element == UInt8 {
    func ends(with suffix: String) -> Bool {
        let suffix = Array(suffix.utf8)
        return self.count >= suffix.count && self.suffix(suffix.count).elementsEqual(suffix)
    }
}
