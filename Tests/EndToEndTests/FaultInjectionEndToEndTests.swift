import Foundation
import PersonioStandIn
import TestSupport
import Testing
import VaultAPI
import VaultLocks

#if canImport(Glibc)
import Glibc
#endif

/// Faults below the store while the daemon runs: a full disk (a small tmpfs as the state directory), an I/O error
/// on write, a failed fsync, and a read-only file system (the last three injected with the `LD_PRELOAD` shim of
/// `Tests/FaultShim`, which fails the daemon's writes and syncs under the state directory with `EIO` or `EROFS`).
///
/// For each fault, one table: every admin operation fails closed with `storage_failed` and a message naming the
/// fault, the daemon stays up and keeps serving a cached token, the next operation after the fault is gone succeeds
/// without a restart, and after a `kill -9` and a restart every change acknowledged before the fault is there, no
/// failed one is (neither the change nor its audit row), the audit chain verifies, `integrity_check` is ok and no
/// staged key file is left.
@Suite("Fault injection end to end", .offCooperativePool, .timeLimit(.minutes(5)))
struct FaultInjectionEndToEndTests {
    /// A fault and how the client must name it.
    struct Fault: Sendable, CustomTestStringConvertible {
        var name: String
        /// The shim's rules (empty: the fault is a real file system's, set up by the test).
        var rules: [String]
        /// Phrases of which the error message must contain one (lower-cased).
        var phrases: [String]
        var testDescription: String { self.name }

        static let ioError = Fault(
            name: "I/O error on write",
            rules: ["eio write /.connvault/", "eio truncate /.connvault/"],
            phrases: ["i/o error", "input/output error"]
        )
        static let fsyncError = Fault(
            name: "failed fsync",
            rules: ["eio fsync /.connvault/"],
            phrases: ["fsync failed", "input/output error"]
        )
        static let readOnly = Fault(
            name: "read-only file system",
            rules: ["erofs any /.connvault/"],
            phrases: ["read-only", "not writable"]
        )
        static let diskFull = Fault(name: "disk full", rules: [], phrases: ["disk is full", "no space left"])
    }

    static var isRoot: Bool { getuid() == 0 }

    @Test(
        "an injected fault fails every admin operation closed, and the daemon recovers",
        arguments: [
            Fault.ioError, Fault.fsyncError, Fault.readOnly,
        ]
    )
    func injected(_ fault: Fault) async throws {
        try await Blocking.run { try Self.scenario(fault) }
    }

    @Test(
        "a full disk (a 4 MiB tmpfs as the state directory) fails every admin operation closed, and the daemon recovers",
        .enabled(if: Self.isRoot, "mounting a tmpfs needs root (CI runs as root)")
    )
    func diskFull() async throws {
        try await Blocking.run { try Self.scenario(.diskFull) }
    }

    // MARK: - The scenario

    static func scenario(_ fault: Fault) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var tmpfs: TmpfsStateDirectory?
        if fault.rules.isEmpty {
            tmpfs = try TmpfsStateDirectory(path: "\(directory.path)/.connvault", size: "4M")
        }
        defer { tmpfs?.unmount() }
        let standIn = try Self.startStandIn()
        defer { Self.shutDown(standIn) }
        let daemon = FaultyDaemon(directory: directory)
        defer { daemon.stop(signal: SIGKILL) }
        try daemon.start(preload: !fault.rules.isEmpty)

        // Before the fault: two connections, a cached token, and acknowledged changes.
        standIn.register(clientID: "fault-cid-held", clientSecret: "fake-fault-secret-held", api: .v2)
        standIn.register(clientID: "fault-cid-other-1", clientSecret: "fake-fault-secret-other-1", api: .v2)
        for (id, suffix) in [("held", "held"), ("other", "other-1")] {
            _ = try daemon.ctlJSON(
                ConnectionView.self,
                [
                    "add", id, "--provider", "personio-v2", "--client-id", "fault-cid-\(suffix)", "--api-base-url",
                    standIn.baseURL, "--allow-uid", "0", "--secret-stdin",
                ],
                stdin: "fake-fault-secret-\(suffix)\n"
            )
        }
        standIn.register(clientID: "fault-cid-other-2", clientSecret: "fake-fault-secret-other-2", api: .v2)
        let edited = try daemon.ctlJSON(
            ConnectionView.self,
            ["edit", "other", "--new-secret", "--client-id", "fault-cid-other-2", "--secret-stdin"],
            stdin: "fake-fault-secret-other-2\n"
        )
        #expect(edited.revision == 2)
        let token = try daemon.ctlJSON(TokenResponse.self, ["token", "held"]).accessToken
        // A disconnect truncates the WAL, so that on the full disk every commit needs new blocks.
        _ = try daemon.ctlJSON(
            ConnectionView.self,
            ["add", "scratch", "--provider", "personio-v2", "--client-id", "fault-cid-scratch", "--secret-stdin"],
            stdin: "fake-fault-secret-scratch\n"
        )
        #expect(try daemon.ctl(["disconnect", "scratch", "--yes"]).status == 0)
        // The broker writes token.issued off the request path: wait until it is there before taking the mark.
        try Self.waitFor("the token.issued row of held") {
            try Self.audit(daemon).contains { $0.action == "token.issued" && $0.connection == "held" }
        }
        let mark = try Self.audit(daemon).map(\.seq).max() ?? 0

        // The fault.
        let filler = tmpfs.map { FileFiller(path: "\($0.path)/filler") }
        if !fault.rules.isEmpty { try daemon.control.set(fault.rules) }
        standIn.register(clientID: "fault-cid-failed", clientSecret: "fake-fault-secret-failed", api: .v2)
        let operations: [(name: String, arguments: [String], stdin: String?)] = [
            (
                "add",
                [
                    "add", "fault-new", "--provider", "personio-v2", "--client-id", "fault-cid-failed", "--allow-uid",
                    "0",
                    "--secret-stdin",
                ],
                "fake-fault-secret-failed\n"
            ),
            (
                "edit",
                ["edit", "other", "--new-secret", "--client-id", "fault-cid-failed", "--secret-stdin"],
                "fake-fault-secret-failed\n"
            ),
            ("disable", ["disable", "other", "--reason", "fault"], nil),
            ("grant", ["grant", "other", "--allow-uid", "1"], nil),
            (
                "reset",
                ["reset", "other", "--client-id", "fault-cid-failed", "--secret-stdin"],
                "fake-fault-secret-failed\n"
            ),
            ("rotate-key", ["rotate-key"], nil),
            ("disconnect", ["disconnect", "other", "--yes"], nil),
        ]
        for operation in operations {
            try filler?.fill()
            let result = try daemon.ctl(operation.arguments, stdin: operation.stdin)
            let message = result.stderr.lowercased()
            #expect(result.status == 1, "\(fault.name), \(operation.name): \(result)")
            // On a read-only state directory, rotate-key refuses before it writes anything: the key file's
            // directory is not writable.
            let codes =
                fault.name == Fault.readOnly.name && operation.name == "rotate-key"
                ? ["storage_failed", "key_file_read_only"] : ["storage_failed"]
            #expect(codes.contains { message.contains($0) }, "\(fault.name), \(operation.name): \(result)")
            #expect(
                fault.phrases.contains { message.contains($0) },
                "\(fault.name), \(operation.name): the message names the fault: \(result)"
            )
            #expect(daemon.isRunning, "\(fault.name), \(operation.name): the daemon ended:\n\(daemon.log())")
            // Reads go on, and the cached token is still served.
            let cached = try daemon.ctl(["token", "held"])
            #expect(cached.status == 0 && cached.stdout == token + "\n", "\(fault.name), \(operation.name): \(cached)")
        }
        // A token not cached yet fails closed: it is recorded, sealed, before it is served, and that write fails. The
        // broker names the real cause, as every write does: 500 storage_failed naming the fault (not Personio's 503).
        try filler?.fill()
        let uncached = try daemon.ctl(["token", "other"])
        #expect(
            uncached.status != 0 && uncached.stdout.isEmpty && uncached.stderr.contains("could not record the token")
                && uncached.stderr.contains("storage_failed") && !uncached.stderr.contains("upstream_unavailable")
                && fault.phrases.contains { uncached.stderr.lowercased().contains($0) },
            "\(fault.name): an uncached token during the fault: \(uncached)"
        )
        #expect(daemon.isRunning, "\(fault.name): the daemon ended:\n\(daemon.log())")
        if !fault.rules.isEmpty {
            #expect(daemon.control.hits > 0, "\(fault.name): the shim never fired")
        }
        let during = try daemon.ctlJSON(ConnectionList.self, ["list"])
        #expect(Set(during.connections.map(\.id)) == ["held", "other"], "\(fault.name)")

        // The fault is gone: the store recovers by itself, with no write to prompt it, and without a restart. Its
        // WAL is empty then: a commit whose fsync failed, whole in the WAL until then, cannot come back in a crash.
        if !fault.rules.isEmpty { try daemon.control.clear() }
        filler?.remove()
        try Self.waitFor("the store to recover by itself") {
            daemon.log().contains("database recovered from a failed write")
        }
        var wal = stat()
        #expect(
            stat(daemon.databasePath + "-wal", &wal) != 0 || wal.st_size == 0,
            "\(fault.name): the WAL still holds \(wal.st_size) bytes after the recovery"
        )
        // The next operation succeeds.
        standIn.register(clientID: "fault-cid-other-3", clientSecret: "fake-fault-secret-other-3", api: .v2)
        let recovered = try daemon.ctl(
            ["edit", "other", "--new-secret", "--client-id", "fault-cid-other-3", "--secret-stdin", "--json"],
            stdin: "fake-fault-secret-other-3\n"
        )
        #expect(recovered.status == 0, "\(fault.name): \(recovered)\n\(daemon.log())")
        // Neither a failed change nor its audit row: after the mark, only the recovered edit (and token rows).
        let rows = try Self.audit(daemon).filter { $0.seq > mark && !$0.action.hasPrefix("token.") }
        #expect(
            rows.map { "\($0.action) \($0.connection ?? "-")" } == ["connection.edit other"],
            "\(fault.name): audit rows after the fault"
        )

        // A crash, and a restart without the fault: what was acknowledged is there, nothing else.
        daemon.stop(signal: SIGKILL)
        try daemon.start(preload: !fault.rules.isEmpty)
        let list = try daemon.ctlJSON(ConnectionList.self, ["list"])
        let byID = Dictionary(uniqueKeysWithValues: list.connections.map { ($0.id, $0) })
        #expect(Set(byID.keys) == ["held", "other"], "\(fault.name)")
        #expect(byID["held"]?.revision == 1 && byID["held"]?.state == .active, "\(fault.name)")
        #expect(byID["other"]?.revision == 3 && byID["other"]?.state == .active, "\(fault.name)")
        // The acknowledged secrets decrypt: the stand-in accepts them (and only the registered pairs pass).
        for id in ["held", "other"] {
            let fetched = try daemon.ctl(["token", id])
            #expect(fetched.status == 0, "\(fault.name), \(id) after the restart: \(fetched)")
        }
        #expect(try daemon.ctl(["rotate-key"]).status == 0, "\(fault.name): every data key unwraps")
        let chain = try daemon.ctlJSON(AuditVerification.self, ["audit", "--verify"])
        #expect(chain.intact, "\(fault.name): \(chain)")
        daemon.stop()
        #expect(!FileManager.default.fileExists(atPath: daemon.keyFile + ".new"), "\(fault.name): staged key left")
        let integrity = try Self.runAsync { try await StoreCheck.integrity(of: daemon.databasePath) }
        #expect(integrity == "ok", "\(fault.name)")
    }

    // MARK: - A real read-only remount

    static var canRemountExt4: Bool {
        Self.isRoot && access("/dev/loop-control", F_OK) == 0 && access("/usr/sbin/mkfs.ext4", X_OK) == 0
    }

    /// The kernel's own read-only remount: an ext4 file system (on a loop device) mounted `errors=remount-ro` as the
    /// state directory, and an error raised through its `trigger_fs_error`. Such a remount cannot be undone without
    /// unmounting, so the daemon cannot recover in place; it must fail closed, keep serving, and lose nothing
    /// acknowledged across a restart on the remounted file system.
    @Test(
        "the kernel remounts the state directory read-only: every write fails closed, nothing acknowledged is lost",
        .enabled(if: Self.canRemountExt4, "needs root, loop devices and mkfs.ext4 (CI runs as root)")
    )
    func kernelReadOnlyRemount() async throws {
        try await Blocking.run {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let image = directory.file("state.img")
            let state = "\(directory.path)/.connvault"
            mkdir(state, 0o700)
            for (tool, arguments) in [
                ("/usr/bin/truncate", ["-s", "16M", image]), ("/usr/sbin/mkfs.ext4", ["-q", image]),
                ("/usr/bin/mount", ["-o", "loop,errors=remount-ro", image, state]), ("/usr/bin/chmod", ["700", state]),
            ] {
                let result = try Command.run(tool, arguments)
                if tool == "/usr/bin/mount" && result.status != 0 {
                    // A container without a free loop device: nothing to test here (a plain host or CI has them).
                    print("skipped: cannot mount an ext4 image on a loop device: \(result.stderr)")
                    return
                }
                guard result.status == 0 else { throw TestSupportError("\(tool) \(arguments): \(result)") }
            }
            var mounted = true
            defer { if mounted { _ = try? Command.run("/usr/bin/umount", ["-l", state]) } }
            let device = try Command.run("/usr/bin/findmnt", ["-no", "SOURCE", state]).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let trigger = "/sys/fs/ext4/\((device as NSString).lastPathComponent)/trigger_fs_error"
            guard access(trigger, W_OK) == 0 else {
                // An older kernel without the trigger: nothing to test here.
                print("skipped: \(trigger) is missing")
                return
            }
            let standIn = try Self.startStandIn()
            defer { Self.shutDown(standIn) }
            let daemon = FaultyDaemon(directory: directory)
            defer { daemon.stop(signal: SIGKILL) }
            try daemon.start(preload: false)
            standIn.register(clientID: "ro-cid-held", clientSecret: "fake-ro-secret-held", api: .v2)
            _ = try daemon.ctlJSON(
                ConnectionView.self,
                [
                    "add", "held", "--provider", "personio-v2", "--client-id", "ro-cid-held", "--api-base-url",
                    standIn.baseURL, "--allow-uid", "0", "--secret-stdin",
                ],
                stdin: "fake-ro-secret-held\n"
            )
            let token = try daemon.ctlJSON(TokenResponse.self, ["token", "held"]).accessToken
            try Self.waitFor("the token.issued row of held") {
                try Self.audit(daemon).contains { $0.action == "token.issued" && $0.connection == "held" }
            }
            let entries = try Self.audit(daemon).count

            try Data("connvault fault test\n".utf8).write(to: URL(fileURLWithPath: trigger))
            try Self.waitFor("the read-only remount") {
                // findmnt still says rw (with emergency_ro), and access(W_OK) passes; a write is refused.
                let fd = open("\(state)/probe", O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
                if fd >= 0 { close(fd) }
                return fd < 0 && errno == EROFS
            }
            for (name, arguments, stdin) in [
                ("edit", ["edit", "held", "--new-secret", "--client-id", "ro-cid-x", "--secret-stdin"], "fake-ro-x\n"),
                ("disable", ["disable", "held"], nil),
                ("rotate-key", ["rotate-key"], nil),
            ] {
                let result = try daemon.ctl(arguments, stdin: stdin)
                let message = result.stderr.lowercased()
                #expect(result.status == 1, "\(name): \(result)")
                #expect(
                    message.contains("storage_failed") || message.contains("key_file_read_only"),
                    "\(name): \(result)"
                )
                #expect(message.contains("read-only") || message.contains("not writable"), "\(name): \(result)")
                #expect(daemon.isRunning, "\(name): the daemon ended:\n\(daemon.log())")
                let cached = try daemon.ctl(["token", "held"])
                #expect(cached.status == 0 && cached.stdout == token + "\n", "\(name): \(cached)")
            }

            // Only a new mount undoes the kernel's remount: stop, remount, start.
            daemon.stop(signal: SIGKILL)
            _ = try Command.run("/usr/bin/umount", [state])
            mounted = false
            let remount = try Command.run("/usr/bin/mount", ["-o", "loop,errors=remount-ro", image, state])
            #expect(remount.status == 0, "\(remount)")
            mounted = remount.status == 0
            try daemon.start(preload: false)
            let list = try daemon.ctlJSON(ConnectionList.self, ["list"])
            #expect(list.connections.map { "\($0.id) \($0.revision) \($0.state)" } == ["held 1 active"])
            #expect(try Self.audit(daemon).count == entries, "a failed write left an audit row")
            #expect(try daemon.ctl(["token", "held"]).status == 0)
            #expect(try daemon.ctlJSON(AuditVerification.self, ["audit", "--verify"]).intact)
            daemon.stop()
            #expect(!FileManager.default.fileExists(atPath: daemon.keyFile + ".new"), "staged key left")
            #expect(try Self.runAsync { try await StoreCheck.integrity(of: daemon.databasePath) } == "ok")
        }
    }

    // MARK: - A failed rotation followed by a crash

    /// A rotation whose commit fsync fails leaves its frames in the WAL; a crash before the store recovers brings
    /// the rotation back at the next start. The staged key must still be there then, or the vault cannot open.
    @Test("rotate-key whose commit fsync fails, then kill -9: the vault opens, on the old key or the new")
    func failedRotationThenCrash() async throws {
        try await Blocking.run {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let standIn = try Self.startStandIn()
            defer { Self.shutDown(standIn) }
            let daemon = FaultyDaemon(directory: directory)
            defer { daemon.stop(signal: SIGKILL) }
            try daemon.start()
            standIn.register(clientID: "fault-cid-rot", clientSecret: "fake-fault-secret-rot", api: .v2)
            _ = try daemon.ctlJSON(
                ConnectionView.self,
                [
                    "add", "rot", "--provider", "personio-v2", "--client-id", "fault-cid-rot", "--api-base-url",
                    standIn.baseURL, "--allow-uid", "0", "--secret-stdin",
                ],
                stdin: "fake-fault-secret-rot\n"
            )
            // Only the database's syncs fail; the key file's work.
            try daemon.control.set(["eio fsync vault.sqlite3"])
            let rotated = try daemon.ctl(["rotate-key"])
            #expect(rotated.status == 1 && rotated.stderr.contains("storage_failed"), "\(rotated)")
            #expect(daemon.control.hits > 0, "the shim never fired")
            daemon.stop(signal: SIGKILL)
            try daemon.control.clear()
            try daemon.start()
            let fetched = try daemon.ctl(["token", "rot"])
            #expect(fetched.status == 0, "the connection decrypts after the restart: \(fetched)")
            let chain = try daemon.ctlJSON(AuditVerification.self, ["audit", "--verify"])
            #expect(chain.intact, "\(chain)")
            #expect(try daemon.ctl(["rotate-key"]).status == 0)
            daemon.stop()
            #expect(!FileManager.default.fileExists(atPath: daemon.keyFile + ".new"), "staged key left")
            #expect(try Self.runAsync { try await StoreCheck.integrity(of: daemon.databasePath) } == "ok")
        }
    }

    // MARK: - Helpers

    static func audit(_ daemon: FaultyDaemon) throws -> [AuditEntry] {
        try daemon.ctlJSON(AuditList.self, ["audit"]).entries
    }

    static func waitFor(_ what: String, timeout: Duration = .seconds(10), _ condition: () throws -> Bool) throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try condition() { return }
            usleep(20_000)
        }
        throw TestSupportError("timed out waiting for \(what)")
    }

    static func startStandIn() throws -> PersonioStandIn {
        try Self.runAsync { try await PersonioStandIn.start() }
    }

    static func shutDown(_ standIn: PersonioStandIn) {
        _ = try? Self.runAsync { try await standIn.shutdown() }
    }

    /// Runs async work from the blocking thread these scenarios run on.
    static func runAsync<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        let result = Locked<Result<T, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task {
            let outcome: Result<T, any Error>
            do { outcome = .success(try await body()) } catch { outcome = .failure(error) }
            result.withLock { $0 = outcome }
            done.signal()
        }
        guard done.wait(timeout: .now() + 60) == .success else { throw TestSupportError("async work timed out") }
        return try result.withLock { $0! }.get()
    }
}

/// A tmpfs of a given size mounted on the state directory (created mode 0700), unmounted when done.
struct TmpfsStateDirectory {
    let path: String

    init(path: String, size: String) throws {
        self.path = path
        mkdir(path, 0o700)
        let result = try Command.run("/usr/bin/mount", ["-t", "tmpfs", "-o", "size=\(size),mode=0700", "tmpfs", path])
        guard result.status == 0 else { throw TestSupportError("cannot mount a tmpfs on \(path): \(result)") }
    }

    func unmount() {
        if (try? Command.run("/usr/bin/umount", [self.path]))?.status != 0 {
            _ = try? Command.run("/usr/bin/umount", ["-l", self.path])
        }
    }
}

/// Fills a file system with one file until it has no block left.
struct FileFiller {
    let path: String

    func fill() throws {
        let fd = open(self.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw TestSupportError("cannot open \(self.path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let chunk = [UInt8](repeating: 0x5A, count: 65_536)
        for size in [65_536, 4_096, 512, 1] {
            while chunk.withUnsafeBytes({ write(fd, $0.baseAddress!, size) }) == size {}
        }
        guard errno == ENOSPC else {
            throw TestSupportError("filling \(self.path) stopped with \(String(cString: strerror(errno)))")
        }
    }

    func remove() { unlink(self.path) }
}
