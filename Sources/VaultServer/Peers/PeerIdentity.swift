import VaultCore

#if canImport(Glibc)
import Glibc
#endif

/// Builds a `Caller` from what the kernel recorded at `connect()` and what `/proc/PID` says about that process.
///
/// uid, gid and pid (`SO_PEERCRED`) and the supplementary groups (`SO_PEERGROUPS`) are fixed at `connect()` and
/// trustworthy whenever they are read. The unit and comm exist only in `/proc/PID`, and a pid names whichever process
/// holds it now: a caller that connected and exited lends its pid to the next process. So `/proc/PID` is opened as a
/// directory first, read through that descriptor, and only then is the pidfd (`SO_PEERPIDFD`) asked whether the
/// connecting process is still there. If it is (a zombie counts: its pid is still taken), the directory was opened
/// while the pid was still the caller's, and a `/proc` directory stays bound to the process it was opened for, so
/// everything read through it was the caller's. If it is not, or there is no pidfd, the caller gets no unit and
/// comm "?": only what its uid and kernel groups grant.
enum PeerIdentity {
    /// The caller behind `credentials`.
    /// - Parameters:
    ///   - credentials: `SO_PEERCRED`.
    ///   - groups: `SO_PEERGROUPS`; nil when unknown (then only `gid`).
    ///   - pidfd: `SO_PEERPIDFD`, nil when the kernel gave none. Not closed here.
    ///   - procRoot: `/proc`, replaceable in tests.
    ///   - isAlive: Whether the process `pidfd` pins is still there, asked after `/proc` was read.
    static func caller(
        _ credentials: Kernel.PeerCredentials,
        groups: [UInt32]?,
        pidfd: Int32?,
        procRoot: String = "/proc",
        isAlive: (Int32) -> Bool = Kernel.isAlive(pidfd:)
    ) -> Caller {
        var allGroups = groups ?? []
        if !allGroups.contains(credentials.gid) { allGroups.append(credentials.gid) }
        var caller = Caller(
            uid: credentials.uid,
            gid: credentials.gid,
            pid: credentials.pid,
            comm: "?",
            groups: Array(Set(allGroups)).sorted(),
            unit: nil
        )
        guard let pidfd, credentials.pid > 0, let directory = Kernel.openDirectory("\(procRoot)/\(credentials.pid)")
        else { return caller }
        defer { close(directory) }
        let comm = ProcFile.read("comm", in: directory).map { Self.sanitisedComm($0) } ?? "?"
        let unit = ProcFile.read("cgroup", in: directory).flatMap(CgroupUnit.unit(fromCgroupFile:))
        guard isAlive(pidfd) else { return caller }
        caller.comm = comm
        caller.unit = unit
        return caller
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
