import Foundation
import TestSupport
import Testing
import VaultCrypto

#if canImport(Glibc)
import Glibc
#endif

@Suite struct KeyFileTests {
    /// Runs `body` with a fresh scratch directory, removed afterwards.
    func withScratch(_ body: (ScratchDirectory) throws -> Void) throws {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        try body(scratch)
    }

    /// The error `KeyFile.load` throws for `path`, which must be a `keyFile` error naming the file.
    func loadError(_ path: String, sourceLocation: SourceLocation = #_sourceLocation) -> VaultCryptoError? {
        let error = #expect(throws: VaultCryptoError.self, sourceLocation: sourceLocation) {
            try KeyFile.load(path: path)
        }
        #expect(error?.code == .keyFile, sourceLocation: sourceLocation)
        #expect(error?.message.contains(path) == true, "the message names the file", sourceLocation: sourceLocation)
        return error
    }

    @Test func createWritesThirtyTwoBytesWithMode0600() throws {
        try self.withScratch { scratch in
            let path = scratch.file("master.key")
            let key = MasterKey.generate(id: 1)
            try KeyFile.create(path: path, key: key)
            var info = stat()
            #expect(stat(path, &info) == 0)
            #expect(info.st_mode & 0o777 == 0o600)
            #expect(info.st_size == 32)
            #expect(info.st_uid == geteuid())
            let loaded = try KeyFile.load(path: path)
            #expect(MasterKey(id: 1, key: loaded).checkValue == key.checkValue)
            #expect(key.withUnsafeKeyBytes { Array($0) } == bytes(loaded))
        }
    }

    @Test func createRefusesToOverwrite() throws {
        try self.withScratch { scratch in
            let path = scratch.file("master.key")
            try KeyFile.create(path: path, key: MasterKey.generate(id: 1))
            let before = try KeyFile.load(path: path)
            let error = #expect(throws: VaultCryptoError.self) {
                try KeyFile.create(path: path, key: MasterKey.generate(id: 1))
            }
            #expect(error?.message.contains(path) == true)
            #expect(error?.message.contains("already exists") == true)
            #expect(try KeyFile.load(path: path) == before)
        }
    }

    @Test func loadRefusesAMissingFile() throws {
        try self.withScratch { scratch in
            let error = self.loadError(scratch.file("absent.key"))
            #expect(error?.message.contains("does not exist") == true)
        }
    }

    @Test(arguments: [0, 31, 33, 64])
    func loadRefusesTheWrongSize(size: Int) throws {
        try self.withScratch { scratch in
            let path = try scratch.write("master.key", bytes: [UInt8](repeating: 0x5A, count: size))
            let error = self.loadError(path)
            #expect(error?.message.contains("holds \(size) bytes") == true)
            #expect(error?.message.contains("exactly 32") == true)
        }
    }

    @Test(arguments: [0o640, 0o604, 0o644, 0o660, 0o606, 0o620, 0o602, 0o666] as [mode_t])
    func loadRefusesGroupOrOtherAccess(mode: mode_t) throws {
        try self.withScratch { scratch in
            let path = try scratch.write("master.key", bytes: [UInt8](repeating: 0x5A, count: 32), mode: mode)
            let error = self.loadError(path)
            #expect(error?.message.contains("group or others") == true)
            #expect(error?.message.contains("mode \(String(mode, radix: 8))") == true)
            #expect(error?.message.contains("chmod 600") == true)
        }
    }

    @Test(arguments: [0o600, 0o400] as [mode_t])
    func loadAcceptsOwnerOnlyModes(mode: mode_t) throws {
        try self.withScratch { scratch in
            let path = try scratch.write("master.key", bytes: [UInt8](repeating: 0x5A, count: 32), mode: mode)
            #expect(bytes(try KeyFile.load(path: path)) == [UInt8](repeating: 0x5A, count: 32))
        }
    }

    @Test func loadRefusesASymlink() throws {
        try self.withScratch { scratch in
            let target = try scratch.write("real.key", bytes: [UInt8](repeating: 0x5A, count: 32))
            let link = scratch.file("master.key")
            #expect(symlink(target, link) == 0)
            let error = self.loadError(link)
            #expect(error?.message.contains("symbolic link") == true)
        }
    }

    @Test func loadRefusesADirectory() throws {
        try self.withScratch { scratch in
            let path = scratch.file("master.key")
            #expect(mkdir(path, 0o700) == 0)
            let error = self.loadError(path)
            #expect(error?.message.contains("not a regular file") == true)
        }
    }

    @Test func loadRefusesAFIFOWithoutWaitingForAWriter() throws {
        try self.withScratch { scratch in
            let path = scratch.file("master.key")
            #expect(mkfifo(path, 0o600) == 0)
            // Load on a thread of its own: a blocking open would wait for a writer for ever. After a bounded wait
            // the test opens the FIFO for writing itself, which ends such an open, and fails.
            let finished = DispatchSemaphore(value: 0)
            let outcome = Outcome()
            Thread.detachNewThread {
                do {
                    _ = try KeyFile.load(path: path)
                    outcome.set("loaded")
                } catch let error as VaultCryptoError {
                    outcome.set(error.message)
                } catch {
                    outcome.set("\(error)")
                }
                finished.signal()
            }
            let returned = finished.wait(timeout: .now() + 10) == .success
            if !returned {
                let writer = open(path, O_WRONLY | O_CLOEXEC)
                finished.wait()
                close(writer)
            }
            #expect(returned, "KeyFile.load waited on the FIFO")
            let message = outcome.value
            #expect(message?.contains(path) == true)
            #expect(message?.contains("not a regular file (it is a FIFO (named pipe))") == true, "\(message ?? "-")")
        }
    }

    @Test func loadRefusesASocket() throws {
        try self.withScratch { scratch in
            let path = scratch.file("master.key")
            let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            defer { close(descriptor) }
            try #require(try UnixAddress.bind(descriptor, to: path) == 0)
            let error = self.loadError(path)
            #expect(error?.message.contains("not a regular file (it is a socket)") == true, "\(error?.message ?? "-")")
        }
    }

    @Test func loadRefusesADevice() {
        // Refused as a device, before its mode (0666) is looked at.
        let error = self.loadError("/dev/zero")
        #expect(error?.message.contains("not a regular file (it is a character device)") == true)
    }

    @Test func loadRefusesAFileOwnedBySomeoneElse() throws {
        try self.withScratch { scratch in
            let path = try scratch.write("master.key", bytes: [UInt8](repeating: 0x5A, count: 32))
            let error = #expect(throws: VaultCryptoError.self) { try KeyFile.load(path: path, owner: geteuid() &+ 1) }
            #expect(error?.message.contains(path) == true)
            #expect(error?.message.contains("owned by uid \(geteuid())") == true)
        }
    }

    @Test func stageCommitAndDiscard() throws {
        try self.withScratch { scratch in
            let path = scratch.file("master.key")
            let old = MasterKey.generate(id: 1)
            let new = MasterKey.generate(id: 2)
            try KeyFile.create(path: path, key: old)
            #expect(KeyFile.stagedPath(for: path) == path + ".new")

            // A stale staged file is replaced, not an error.
            try scratch.write("master.key.new", bytes: [1, 2, 3])
            try KeyFile.stage(path: path, key: new)
            #expect(
                MasterKey(id: 2, key: try KeyFile.load(path: KeyFile.stagedPath(for: path))).checkValue
                    == new.checkValue
            )
            #expect(MasterKey(id: 1, key: try KeyFile.load(path: path)).checkValue == old.checkValue)

            try KeyFile.commitStaged(path: path)
            #expect(MasterKey(id: 2, key: try KeyFile.load(path: path)).checkValue == new.checkValue)
            #expect(access(KeyFile.stagedPath(for: path), F_OK) != 0)

            try KeyFile.stage(path: path, key: MasterKey.generate(id: 3))
            KeyFile.discardStaged(path: path)
            #expect(access(KeyFile.stagedPath(for: path), F_OK) != 0)
            #expect(MasterKey(id: 2, key: try KeyFile.load(path: path)).checkValue == new.checkValue)

            let error = #expect(throws: VaultCryptoError.self) { try KeyFile.commitStaged(path: path) }
            #expect(error?.message.contains(path) == true)
        }
    }

    @Test func directoryWritability() throws {
        try self.withScratch { scratch in
            #expect(KeyFile.isDirectoryWritable(for: scratch.file("master.key")))
            #expect(!KeyFile.isDirectoryWritable(for: scratch.file("absent/master.key")))
        }
    }
}

/// A value set by one thread and read by another after a semaphore.
final class Outcome: @unchecked Sendable {
    // @unchecked Sendable: guarded by `lock`.
    private let lock = NSLock()
    private var stored: String?

    func set(_ value: String) { self.lock.withLock { self.stored = value } }

    var value: String? { self.lock.withLock { self.stored } }
}
