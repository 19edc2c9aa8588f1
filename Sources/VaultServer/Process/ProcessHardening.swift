import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The process-wide protections the daemon applies before it reads a key or opens a socket (DESIGN §3 "Process").
public enum ProcessHardening {
    /// What the process looks like after ``apply(logger:)``, as read back from the kernel.
    public struct Report: Sendable, Equatable, CustomStringConvertible {
        /// The file mode creation mask.
        public var umask: UInt32
        /// `PR_GET_DUMPABLE`.
        public var dumpable: Bool
        /// The soft `RLIMIT_CORE`, nil when unreadable.
        public var coreLimit: Int64?

        /// Whether every protection is in force: umask 077, not dumpable, no core files.
        public var isHardened: Bool { self.umask & 0o077 == 0o077 && !self.dumpable && self.coreLimit == 0 }

        /// The umask as `umask(1)` prints it: `0077`.
        public var octalUmask: String {
            let digits = String(self.umask, radix: 8)
            return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
        }

        public var description: String {
            "umask \(self.octalUmask), dumpable \(self.dumpable), core limit \(self.coreLimit.map(String.init) ?? "?")"
        }
    }

    /// Sets umask 077 (new files and sockets are private until given a mode on purpose), makes the process
    /// non-dumpable (other uids cannot ptrace it or read `/proc/PID/mem`) and sets `RLIMIT_CORE` to 0; then reads all
    /// three back and logs them.
    ///
    /// - Parameter logger: Where the outcome is logged.
    /// - Returns: The protections as read back.
    /// - Throws: `HardeningError` when a call fails or a protection is not in force afterwards.
    @discardableResult
    public static func apply(logger: Logger) throws -> Report {
        umask(0o077)
        do {
            try Kernel.setDumpable(false)
            try Kernel.disableCoreDumps()
        } catch {
            throw HardeningError(description: "cannot harden the process: \(error)")
        }
        let report = Self.current()
        guard report.isHardened else {
            throw HardeningError(description: "process hardening did not take effect (\(report))")
        }
        logger.debug(
            "process hardened",
            metadata: [
                "process.umask": "\(report.octalUmask)", "process.dumpable": "\(report.dumpable)",
                "process.core_limit": "\(report.coreLimit.map(String.init) ?? "?")",
            ]
        )
        return report
    }

    /// The current umask, dumpable flag and core limit.
    public static func current() -> Report {
        Report(umask: Self.currentUmask(), dumpable: Kernel.isDumpable, coreLimit: Kernel.coreLimit)
    }

    /// Reads the umask from `/proc/self/status` (Linux 4.7+): `umask()` can only read it by changing it, which
    /// races with other threads creating files.
    static func currentUmask() -> UInt32 {
        if let status = ProcFile.read("/proc/self/status"),
            let value = ProcStatus.field("Umask", in: status),
            let mask = UInt32(value, radix: 8)
        {
            return mask
        }
        let mask = umask(0o077)
        umask(mask)
        return UInt32(mask)
    }
}

/// The process could not be hardened; the daemon refuses to start.
public struct HardeningError: Error, Sendable, CustomStringConvertible {
    public var description: String
}
