import Foundation
import TestSupport
import Testing

@testable import VaultStore

#if canImport(Glibc)
import Glibc
#endif

/// The read-only probe's files (`VaultDatabase.isFileSystemReadOnly`): a daemon killed between creating and removing
/// one leaves an empty `.write-probe-PID`; the next start removes it, and nothing else.
@Suite("Write probe")
struct WriteProbeTests {
    @Test("opening the store removes stale empty probe files and leaves every other file alone")
    func staleProbesRemoved() async throws {
        let fixture = try StoreFixture()
        defer { fixture.directory.remove() }
        let stale = [".write-probe-1", ".write-probe-\(getpid())", ".write-probe-4194304"]
        let kept = [".write-probe-", ".write-probe-12x", "write-probe-7", ".write-probe-99.tmp"]
        for name in stale + kept {
            #expect(FileManager.default.createFile(atPath: fixture.directory.file(name), contents: Data()))
        }
        // Not empty: not a probe's.
        let written = fixture.directory.file(".write-probe-8")
        #expect(FileManager.default.createFile(atPath: written, contents: Data("CANARY-not-a-probe".utf8)))
        // A link is left alone, and so is what it points to.
        let target = fixture.directory.file("target")
        #expect(FileManager.default.createFile(atPath: target, contents: Data()))
        let link = fixture.directory.file(".write-probe-9")
        #expect(symlink(target, link) == 0)

        let database = try fixture.open()
        defer { try? database.close() }
        for name in stale {
            #expect(access(fixture.directory.file(name), F_OK) != 0, "\(name) is still there")
        }
        for path in kept.map(fixture.directory.file) + [written, target] {
            #expect(access(path, F_OK) == 0, "\(path) was removed")
        }
        var information = stat()
        #expect(lstat(link, &information) == 0, "the link was removed")
        // The probe itself still works once its stale file is gone.
        #expect(!database.isFileSystemReadOnly)
    }
}
