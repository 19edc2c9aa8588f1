import NIOCore
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
/// everything read through it was the caller's. If it is not, or there is no pidfd, the caller gets no unit, no
/// executable and comm "?": only what its uid and kernel groups grant.
///
/// The executable (``ExecutableIdentity``) is read in the same window: the `exe` link and a descriptor opened through
/// it, then confirmed with the rest. Its hash is made after the confirmation, from that descriptor: from the cache at
/// once, or on a thread pool before the connection's first request is read (``Reading/complete(on:hashes:limit:)``).
/// Identity is read once per connection: a process that connects and then executes another program keeps the
/// identity it had at accept.
package enum PeerIdentity {
    /// What was read at accept: the caller, and the hash still to be made when its executable was not in the cache.
    struct Reading: Sendable {
        /// The caller; `exeSHA256` is set when the hash was cached.
        var caller: Caller
        /// The executable to hash before the caller is complete (confirmed, hashable, not cached).
        var unhashed: (file: OpenFile, key: FileKey)?

        /// The caller with its executable's hash: at once when nothing is left to hash, else once
        /// ``ExecutableHashes`` has hashed it on its thread pool, or after `limit` with `exeSHA256` nil.
        func complete(
            on eventLoop: any EventLoop,
            hashes: ExecutableHashes = .shared,
            limit: TimeAmount = .seconds(30)
        ) -> EventLoopFuture<Caller> {
            guard let unhashed else { return eventLoop.makeSucceededFuture(self.caller) }
            let caller = self.caller
            let answer = eventLoop.makePromise(of: Caller.self)
            // Both the time-out and the hash's callback run on `eventLoop`: the first to come completes the answer.
            let answered = NIOLoopBoundBox(false, eventLoop: eventLoop)
            let timer = eventLoop.scheduleTask(in: limit) {
                guard !answered.value else { return }
                answered.value = true
                answer.succeed(caller)
            }
            hashes.hash(unhashed.file, key: unhashed.key, uid: caller.uid, on: eventLoop).whenSuccess { hash in
                timer.cancel()
                guard !answered.value else { return }
                answered.value = true
                var hashed = caller
                hashed.exeSHA256 = hash
                answer.succeed(hashed)
            }
            return answer.futureResult
        }
    }

    /// The caller behind `credentials`.
    /// - Parameters:
    ///   - credentials: `SO_PEERCRED`.
    ///   - groups: `SO_PEERGROUPS`; nil when unknown (then only `gid`).
    ///   - pidfd: `SO_PEERPIDFD`, nil when the kernel gave none. Not closed here.
    ///   - procRoot: `/proc`, replaceable in tests.
    ///   - isAlive: Whether the process `pidfd` pins is still there, asked after `/proc` was read.
    ///   - hashes: The executables' hash cache; the hash is taken from it only, never made here.
    static func caller(
        _ credentials: Kernel.PeerCredentials,
        groups: [UInt32]?,
        pidfd: Int32?,
        procRoot: String = "/proc",
        isAlive: (Int32) -> Bool = Kernel.isAlive(pidfd:),
        hashes: ExecutableHashes = .shared
    ) -> Caller {
        Self.read(credentials, groups: groups, pidfd: pidfd, procRoot: procRoot, isAlive: isAlive, hashes: hashes)
            .caller
    }

    /// Reads the caller behind `credentials` (``caller(_:groups:pidfd:procRoot:isAlive:hashes:)``), leaving its
    /// executable's hash to ``Reading/complete(on:hashes:limit:)`` when the cache does not have it.
    static func read(
        _ credentials: Kernel.PeerCredentials,
        groups: [UInt32]?,
        pidfd: Int32?,
        procRoot: String = "/proc",
        isAlive: (Int32) -> Bool = Kernel.isAlive(pidfd:),
        hashes: ExecutableHashes = .shared
    ) -> Reading {
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
        else { return Reading(caller: caller) }
        defer { close(directory) }
        let comm = ProcFile.read("comm", in: directory).map { Self.sanitisedComm($0) } ?? "?"
        let unit = ProcFile.read("cgroup", in: directory).flatMap(CgroupUnit.unit(fromCgroupFile:))
        let executable = ExecutableIdentity.read(in: directory)
        guard isAlive(pidfd) else { return Reading(caller: caller) }
        // Confirmed: the directory, and the executable opened through it, were the caller's when they were read.
        caller.comm = comm
        caller.unit = unit
        guard let executable else { return Reading(caller: caller) }
        caller.exe = ExecutableIdentity.verified(executable.path, names: executable.key)
        guard ExecutableIdentity.isHashable(executable.file, key: executable.key) else {
            return Reading(caller: caller)
        }
        if let hash = hashes.cached(executable.key) {
            caller.exeSHA256 = hash
            return Reading(caller: caller)
        }
        return Reading(caller: caller, unhashed: (executable.file, executable.key))
    }

    /// `comm` is chosen by the process itself (`prctl(PR_SET_NAME)`): keep it to printable ASCII so that it cannot
    /// forge log lines or audit text, at most the kernel's 15 bytes.
    package static func sanitisedComm(_ raw: String) -> String {
        let trimmed = raw.hasSuffix("\n") ? String(raw.dropLast()) : raw
        let scalars = trimmed.unicodeScalars.prefix(15).map { $0.value >= 0x20 && $0.value < 0x7F ? $0 : "?" }
        let comm = String(String.UnicodeScalarView(scalars))
        return comm.isEmpty ? "?" : comm
    }
}
