import VaultCore

/// Builds a `Caller` from a socket's peer credentials and what `/proc/PID` says about that process.
///
/// The uid, gid and pid come from the kernel (`SO_PEERCRED`, fixed at `connect()`) and are trustworthy; the rest is
/// read from `/proc` once per connection, right after accept. A process that has already exited reads as comm "?",
/// no supplementary groups and no unit, which can only narrow what it is allowed.
enum PeerIdentity {
    /// The caller behind `credentials`.
    /// - Parameter procRoot: `/proc`, replaceable in tests.
    static func caller(_ credentials: Kernel.PeerCredentials, procRoot: String = "/proc") -> Caller {
        let directory = "\(procRoot)/\(credentials.pid)"
        let comm = ProcFile.read("\(directory)/comm").map { Self.sanitisedComm($0) } ?? "?"
        var groups = ProcFile.read("\(directory)/status").map(ProcStatus.supplementaryGroups(in:)) ?? []
        if !groups.contains(credentials.gid) { groups.append(credentials.gid) }
        let unit = ProcFile.read("\(directory)/cgroup").flatMap(CgroupUnit.unit(fromCgroupFile:))
        return Caller(
            uid: credentials.uid,
            gid: credentials.gid,
            pid: credentials.pid,
            comm: comm,
            groups: groups.sorted(),
            unit: unit
        )
    }

    /// `comm` is chosen by the process itself (`prctl(PR_SET_NAME)`): keep it to printable ASCII so that it cannot
    /// forge log lines or audit text, at most the kernel's 15 bytes.
    static func sanitisedComm(_ raw: String) -> String {
        let trimmed = raw.hasSuffix("\n") ? String(raw.dropLast()) : raw
        let scalars = trimmed.unicodeScalars.prefix(15).map { $0.value >= 0x20 && $0.value < 0x7F ? $0 : "?" }
        let comm = String(String.UnicodeScalarView(scalars))
        return comm.isEmpty ? "?" : comm
    }
}
