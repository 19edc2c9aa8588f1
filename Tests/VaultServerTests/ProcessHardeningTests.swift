import Logging
import TestSupport
import Testing

@testable import VaultServer

#if canImport(Glibc)
import Glibc
#endif

@Suite("Process hardening")
struct ProcessHardeningTests {
    @Test("umask 077, not dumpable, no core files, verified and logged")
    func apply() throws {
        let previousUmask = umask(0o022)
        umask(previousUmask)
        // Restore the umask for the other suites in this test process; the other two are harmless to keep.
        defer { umask(previousUmask) }
        let capture = LogCapture()
        let report = try ProcessHardening.apply(logger: capture.logger())
        #expect(report.isHardened)
        #expect(report.umask == 0o077)
        #expect(report.octalUmask == "0077")
        #expect(!report.dumpable)
        #expect(report.coreLimit == 0)
        #expect(ProcessHardening.current() == report)

        let status = try #require(ProcFile.read("/proc/self/status"))
        #expect(ProcStatus.field("Umask", in: status) == "0077")
        let limits = try #require(ProcFile.read("/proc/self/limits"))
        let core = try #require(limits.split(separator: "\n").first { $0.hasPrefix("Max core file size") })
        #expect(core.split(separator: " ").dropFirst(4).prefix(2) == ["0", "0"])

        let line = try #require(capture.entries.first { $0.message == "process hardened" })
        #expect(line.metadata["process.umask"] == "0077")
        #expect(line.metadata["process.dumpable"] == "false")
        #expect(line.metadata["process.core_limit"] == "0")
    }

    @Test("a report with any protection missing is not hardened")
    func report() {
        #expect(ProcessHardening.Report(umask: 0o077, dumpable: false, coreLimit: 0).isHardened)
        #expect(!ProcessHardening.Report(umask: 0o022, dumpable: false, coreLimit: 0).isHardened)
        #expect(!ProcessHardening.Report(umask: 0o077, dumpable: true, coreLimit: 0).isHardened)
        #expect(!ProcessHardening.Report(umask: 0o077, dumpable: false, coreLimit: nil).isHardened)
        #expect(!ProcessHardening.Report(umask: 0o077, dumpable: false, coreLimit: 1024).isHardened)
    }
}
