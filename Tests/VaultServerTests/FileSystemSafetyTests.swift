import Foundation
import TestSupport
import Testing

@testable import VaultServer

#if canImport(Glibc)
import Glibc
#endif

/// The directories the daemon trusts (issue 8, item 5) and socket files made without a race (item 4), in process.
/// Changing owners needs root (CI runs as root).
@Suite(
    "Directories and socket files the daemon trusts",
    .offCooperativePool,
    .enabled(if: getuid() == 0, "needs root for chown")
)
struct FileSystemSafetyTests {
    /// A fresh private directory under /tmp, removed after `body`.
    static func withDirectory(_ body: (String) throws -> Void) throws {
        let directory = try TemporaryDirectory()
        defer {
            chmod(directory.path, 0o700)
            directory.remove()
        }
        try body(directory.path)
    }

    /// The message `TrustedDirectory.check` refuses `path` with.
    func refusal(_ path: String, sourceLocation: SourceLocation = #_sourceLocation) -> String {
        let error = #expect(throws: StartupError.self, sourceLocation: sourceLocation) {
            try TrustedDirectory.check(path, purpose: "state directory")
        }
        return error?.description ?? ""
    }

    @Test("a private directory under /tmp (sticky, root's) is accepted; so is one reached through root's link")
    func privateDirectoryAccepted() throws {
        try Self.withDirectory { root in
            try TrustedDirectory.check(root, purpose: "state directory")
            #expect(mkdir("\(root)/state", 0o700) == 0)
            #expect(symlink("\(root)/state", "\(root)/link") == 0)
            try TrustedDirectory.check("\(root)/link", purpose: "state directory")
            try TrustedDirectory.check("\(root)/state/../state/./", purpose: "state directory")
        }
    }

    @Test("a directory owned by another non-root uid is refused, naming it and its owner")
    func otherOwnerRefused() throws {
        try Self.withDirectory { root in
            let state = "\(root)/state"
            #expect(mkdir(state, 0o700) == 0)
            #expect(chown(state, 65534, 65534) == 0)
            let message = self.refusal(state)
            #expect(message.contains("state directory \(state) is owned by uid 65534"), "\(message)")
            // The same directory is the daemon's own when the daemon runs as that uid.
            try TrustedDirectory.check(state, purpose: "state directory", owner: 65534)
        }
    }

    @Test(
        "a directory writable by group or others is refused, sticky or not",
        arguments: [0o777, 0o1777, 0o770, 0o703]
    )
    func sharedLeafRefused(mode: Int) throws {
        try Self.withDirectory { root in
            let state = "\(root)/state"
            #expect(mkdir(state, 0o700) == 0)
            #expect(chmod(state, mode_t(mode)) == 0)
            let message = self.refusal(state)
            #expect(message.contains("state directory \(state) is writable by"), "\(message)")
            #expect(message.contains("mode \(String(mode, radix: 8))"), "\(message)")
        }
    }

    @Test("a parent writable by others without the sticky bit is refused; with it, accepted")
    func sharedParent() throws {
        try Self.withDirectory { root in
            let state = "\(root)/state"
            #expect(mkdir(state, 0o700) == 0)
            #expect(chmod(root, 0o777) == 0)
            let message = self.refusal(state)
            #expect(
                message.contains("its parent directory \(root) is writable by group and others without the sticky bit"),
                "\(message)"
            )
            #expect(chmod(root, 0o1777) == 0)
            try TrustedDirectory.check(state, purpose: "state directory")
            #expect(chown(root, 65534, 65534) == 0)
            #expect(self.refusal(state).contains("its parent directory \(root) is owned by uid 65534"))
        }
    }

    @Test("a link another uid owns in a sticky directory is refused; the link's target is checked too")
    func links() throws {
        try Self.withDirectory { root in
            #expect(chmod(root, 0o1777) == 0)
            let state = "\(root)/state"
            #expect(mkdir(state, 0o700) == 0)
            let link = "\(root)/link"
            #expect(symlink(state, link) == 0)
            try TrustedDirectory.check(link, purpose: "state directory")
            #expect(lchown(link, 65534, 65534) == 0)
            #expect(self.refusal(link).contains("the symbolic link \(link) is owned by uid 65534"))
            let shared = "\(root)/shared"
            #expect(mkdir(shared, 0o700) == 0)
            #expect(chmod(shared, 0o777) == 0)
            let toShared = "\(root)/to-shared"
            #expect(symlink("shared", toShared) == 0)
            #expect(self.refusal(toShared).contains("(\(shared)) is writable by group and others"))
        }
    }

    @Test("a missing state directory is made 0700 with 0755 parents; a missing parent in a shared directory is refused")
    func create() throws {
        try Self.withDirectory { root in
            let state = "\(root)/a/b/state"
            try VaultSetup.prepareStateDirectory(state)
            #expect(Self.mode(state) == 0o700)
            #expect(Self.mode("\(root)/a/b") == 0o755)
            #expect(chmod(root, 0o777) == 0)
            let error = #expect(throws: StartupError.self) { try VaultSetup.prepareStateDirectory("\(root)/c/state") }
            #expect(
                error?.description.contains("its parent directory \(root) is writable") == true,
                "\(error.map(String.init(describing:)) ?? "")"
            )
            #expect(access("\(root)/c", F_OK) != 0, "nothing is made in a shared directory")
        }
    }

    @Test("a socket is not bound in a directory another uid can write")
    func socketDirectoryRefused() throws {
        try Self.withDirectory { root in
            let sockets = "\(root)/run"
            #expect(mkdir(sockets, 0o755) == 0)
            #expect(chown(sockets, 65534, 65534) == 0)
            let error = #expect(throws: StartupError.self) {
                _ = try UnixSocketFile.bind(path: "\(sockets)/admin.sock", mode: 0o600, group: nil)
            }
            #expect(error?.description.contains("socket directory \(sockets) is owned by uid 65534") == true)
            #expect(access("\(sockets)/admin.sock", F_OK) != 0)
        }
    }

    @Test("sockets get their mode and group; nothing is left beside them")
    func socketModes() throws {
        try Self.withDirectory { root in
            let path = "\(root)/app.sock"
            let socket = try UnixSocketFile.bind(path: path, mode: 0o666, group: 65534)
            defer {
                UnixSocketFile.remove(socket)
                close(socket.descriptor)
            }
            var info = stat()
            #expect(lstat(path, &info) == 0)
            #expect(info.st_mode & S_IFMT == S_IFSOCK)
            #expect(info.st_mode & 0o7777 == 0o666)
            #expect(info.st_gid == 65534)
            #expect(socket.identity == FileIdentity(path: path))
            let entries = try FileManager.default.contentsOfDirectory(atPath: root)
            #expect(entries == ["app.sock"])
        }
    }

    @Test("a racer swapping links into the socket directory never changes another file's mode")
    func racer() async throws {
        // Hundreds of binds block for a while: off the cooperative pool, so that async suites running beside this one
        // (live servers answering on that pool) are not starved of its two threads.
        try await Blocking.run { try Self.raceBinds() }
    }

    static func raceBinds() throws {
        try Self.withDirectory { root in
            let target = "\(root)/target"
            #expect(FileManager.default.createFile(atPath: target, contents: Data("CANARY-TARGET".utf8)))
            #expect(chmod(target, 0o600) == 0)
            let sockets = "\(root)/run"
            #expect(mkdir(sockets, 0o700) == 0)
            let racer = try SymlinkRacer(directory: sockets, target: target, decoy: "\(root)/decoy")
            racer.start()
            defer { racer.stop() }
            var bound = 0
            for round in 0..<300 {
                let path = "\(sockets)/s\(round % 2).sock"
                if let socket = try? UnixSocketFile.bind(path: path, mode: 0o666, group: nil) {
                    bound += 1
                    close(socket.descriptor)
                }
                unlink(path)
                #expect(Self.mode(target) == 0o600, "round \(round): the racer changed the target's mode")
                if Self.mode(target) != 0o600 { break }
            }
            racer.stop()
            #expect(bound > 0)
            #expect(Self.mode(target) == 0o600)
        }
    }

    static func mode(_ path: String) -> mode_t? {
        var info = stat()
        return stat(path, &info) == 0 ? info.st_mode & 0o7777 : nil
    }
}
