import Foundation
import NIOCore
import NIOEmbedded
import TestSupport
import Testing
import VaultCore
import VaultLocks

@testable import VaultServer

#if canImport(Glibc)
import Glibc
#endif

/// The caller's executable (DESIGN §10's `exe` and `exe_sha256`): the link's text, the path check, the hash and its
/// cache, and real processes read through a real pidfd.
@Suite("Executable identity", .offCooperativePool, .timeLimit(.minutes(2)))
struct ExecutableIdentityTests {
    // MARK: - The link

    @Test(
        "the exe link's text is kept only as an absolute path of a file that still exists",
        arguments: [
            ("/usr/bin/python3.11", "/usr/bin/python3.11"),
            ("/opt/hr export/sync", "/opt/hr export/sync"),
            ("/usr/bin/payroll-sync (deleted)", nil),
            // A file really named so is refused too: the kernel writes the suffix into the same text.
            ("/tmp/evil (deleted)", nil),
            ("/memfd:payload (deleted)", nil),
            ("anon_inode:[memfd]", nil),
            ("usr/bin/relative", nil),
            ("", nil),
            ("/bin/a\u{0}b", nil),
        ] as [(String, String?)]
    )
    func link(_ text: String, _ expected: String?) {
        #expect(ExecutableIdentity.canonicalPath(fromLink: text) == expected)
    }

    @Test("a path counts only when it names the very file executed, in the daemon's own view")
    func verifiedPath() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let granted = directory.file("granted")
        let other = directory.file("other")
        try Self.write("CANARY-granted", to: granted)
        try Self.write("CANARY-other", to: other)
        let key = try Self.key(of: granted)
        #expect(ExecutableIdentity.verified(granted, names: key) == granted)
        // Another file at the path (a bind mount over it in another mount namespace, a replaced file): not it.
        #expect(ExecutableIdentity.verified(other, names: key) == nil)
        #expect(ExecutableIdentity.verified(directory.file("missing"), names: key) == nil)
        #expect(ExecutableIdentity.verified(nil, names: key) == nil)
    }

    // MARK: - The hash and its cache

    @Test("the hash is SHA-256 of the contents, as sha256sum computes it; an empty file too")
    func sha256() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let copy = directory.file("sleeper")
        try Self.copy("/bin/sleep", to: copy)
        let empty = directory.file("empty")
        try Self.write("", to: empty)
        for path in [copy, empty] {
            let file = try Self.open(path)
            let hash = ExecutableIdentity.sha256(of: file, key: try Self.key(of: path))
            #expect(hash == (try Self.sha256sum(path)))
        }
        // "abc", FIPS 180-2's first example.
        let abc = directory.file("abc")
        try Self.write("abc", to: abc)
        #expect(
            ExecutableIdentity.sha256(of: try Self.open(abc), key: try Self.key(of: abc))
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        )
        // A key that no longer describes the file (it changed since it was opened): no hash.
        var stale = try Self.key(of: abc)
        stale.changed.nanoseconds += 1
        #expect(ExecutableIdentity.sha256(of: try Self.open(abc), key: stale) == nil)
    }

    @Test("one file is hashed once, however many connections wait for it at once or ask later")
    func hashedOnce() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("tool")
        try Self.copy("/bin/sleep", to: path)
        let jobs = ManualExecutor()
        let hashes = ExecutableHashes(execute: jobs.execute)
        let loop = EmbeddedEventLoop()
        let key = try Self.key(of: path)
        let futures = try (0..<3).map { _ in hashes.hash(try Self.open(path), key: key, uid: 1000, on: loop) }
        #expect(jobs.pending == 1)
        // Nothing is hashed on the calling thread (the event loop): the answers wait for the pool's job.
        loop.run()
        let early = Locked(0)
        for future in futures { future.whenComplete { _ in early.withLock { $0 += 1 } } }
        loop.run()
        #expect(early.withLock { $0 } == 0)
        #expect(hashes.hashedCount == 0)
        jobs.runAll()
        loop.run()
        let expected = try Self.sha256sum(path)
        for future in futures { #expect(try Self.value(of: future, on: loop) == expected) }
        #expect(hashes.cached(key) == expected)
        #expect(
            try Self.value(of: hashes.hash(try Self.open(path), key: key, uid: 1000, on: loop), on: loop) == expected
        )
        #expect(jobs.pending == 0)
        #expect(hashes.hashedCount == 1)
    }

    @Test("a changed mtime re-hashes; so does a rewrite whose old mtime was put back (ctime moved)")
    func changedFileRehashes() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("tool")
        try Self.write("CANARY-version-1", to: path)
        let hashes = ExecutableHashes(execute: { $0() })
        let loop = EmbeddedEventLoop()
        let first = try Self.key(of: path)
        let hash1 = try Self.value(of: hashes.hash(try Self.open(path), key: first, uid: 0, on: loop), on: loop)
        #expect(hash1 == (try Self.sha256sum(path)))

        // Same size, same inode, another mtime: hashed again.
        var times = [timespec(tv_sec: 1_000_000_000, tv_nsec: 0), timespec(tv_sec: 1_000_000_000, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, path, &times, 0) == 0)
        let touched = try Self.key(of: path)
        #expect(touched != first)
        _ = try Self.value(of: hashes.hash(try Self.open(path), key: touched, uid: 0, on: loop), on: loop)
        #expect(hashes.hashedCount == 2)

        // Rewritten in place (same size and inode) and its mtime set back: ctime, which no one can set, differs.
        try Self.overwrite("CANARY-version-2", at: path)
        #expect(utimensat(AT_FDCWD, path, &times, 0) == 0)
        let rewritten = try Self.key(of: path)
        #expect(rewritten.modified == touched.modified && rewritten.size == touched.size)
        #expect(rewritten != touched)
        let hash2 = try Self.value(of: hashes.hash(try Self.open(path), key: rewritten, uid: 0, on: loop), on: loop)
        #expect(hash2 == (try Self.sha256sum(path)))
        #expect(hash2 != hash1)
        #expect(hashes.hashedCount == 3)
    }

    @Test("the cache is bounded: the least recently used hash goes first")
    func leastRecentlyUsed() throws {
        let hashes = ExecutableHashes(capacity: 2, execute: { $0() }, hash: { _, key in "hash-\(key.inode)" })
        let loop = EmbeddedEventLoop()
        let file = try Self.open("/dev/null")
        let keys = (1...3).map { Self.fakeKey(inode: UInt64($0)) }
        _ = try Self.value(of: hashes.hash(file, key: keys[0], uid: 0, on: loop), on: loop)
        _ = try Self.value(of: hashes.hash(file, key: keys[1], uid: 0, on: loop), on: loop)
        #expect(hashes.cached(keys[0]) == "hash-1")  // now the most recently used
        _ = try Self.value(of: hashes.hash(file, key: keys[2], uid: 0, on: loop), on: loop)
        #expect(hashes.count == 2)
        #expect(hashes.cached(keys[1]) == nil)
        #expect(hashes.cached(keys[0]) == "hash-1")
        #expect(hashes.cached(keys[2]) == "hash-3")
    }

    @Test("uids take turns: one producing many new executables delays another's by one job, not by all of its own")
    func roundRobin() throws {
        let order = Locked<[UInt64]>([])
        let jobs = ManualExecutor()
        let hashes = ExecutableHashes(
            execute: jobs.execute,
            hash: { _, key in
                order.withLock { $0.append(key.inode) }
                return "h"
            }
        )
        let loop = EmbeddedEventLoop()
        let file = try Self.open("/dev/null")
        // uid 2000 queues files 1 to 4, then uid 1000 file 10.
        for inode in 1...4 { _ = hashes.hash(file, key: Self.fakeKey(inode: UInt64(inode)), uid: 2000, on: loop) }
        _ = hashes.hash(file, key: Self.fakeKey(inode: 10), uid: 1000, on: loop)
        #expect(jobs.pending == 1)  // one hashing job at a time
        jobs.runAll()
        #expect(order.withLock { $0 } == [1, 10, 2, 3, 4])
    }

    @Test("a hash that takes too long leaves the caller without exe_sha256 rather than waiting for ever")
    func hashTimeLimit() throws {
        let jobs = ManualExecutor()
        let hashes = ExecutableHashes(execute: jobs.execute)
        let loop = EmbeddedEventLoop()
        let caller = Caller(uid: 1000, gid: 1000, pid: 42, comm: "tool", exe: "/usr/bin/tool")
        let reading = PeerIdentity.Reading(
            caller: caller,
            unhashed: (try Self.open("/bin/sleep"), Self.fakeKey(inode: 7))
        )
        let future = reading.complete(on: loop, hashes: hashes, limit: .seconds(5))
        loop.advanceTime(by: .seconds(5))
        #expect(try Self.value(of: future, on: loop) == caller)
        jobs.runAll()  // finishing later changes nothing
        loop.run()
    }

    // MARK: - Real processes

    @Test("a running copy of a binary reads as its path and the SHA-256 of its contents")
    func runningProcess() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let tool = directory.file("payroll-tool")
        try Self.copy("/bin/sleep", to: tool)
        let process = try ChildProcess(tool, ["30"])
        defer {
            process.signal(SIGKILL)
            process.waitForExit(timeout: .seconds(10))
        }
        let caller = try Self.caller(of: process, named: "payroll-tool")
        #expect(caller.exe == Self.realPath(tool))
        #expect(caller.exeSHA256 == (try Self.sha256sum(tool)))
        #expect(caller.comm == "payroll-tool")
    }

    @Test("a binary deleted while it runs has no exe, but its contents still hash")
    func deletedBinary() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let tool = directory.file("tool")
        try Self.copy("/bin/sleep", to: tool)
        let expected = try Self.sha256sum(tool)
        let process = try ChildProcess(tool, ["30"])
        defer {
            process.signal(SIGKILL)
            process.waitForExit(timeout: .seconds(10))
        }
        try Self.waitUntil { (try? String(contentsOfFile: "/proc/\(process.pid)/comm", encoding: .utf8)) == "tool\n" }
        #expect(unlink(tool) == 0)
        let caller = try Self.caller(of: process, named: "tool")
        #expect(caller.exe == nil)
        #expect(caller.exeSHA256 == expected)
    }

    @Test("a binary replaced at its path after it started has no exe; the hash is still the running file's")
    func replacedBinary() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let tool = directory.file("tool")
        try Self.copy("/bin/sleep", to: tool)
        let expected = try Self.sha256sum(tool)
        let process = try ChildProcess(tool, ["30"])
        defer {
            process.signal(SIGKILL)
            process.waitForExit(timeout: .seconds(10))
        }
        try Self.waitUntil { (try? String(contentsOfFile: "/proc/\(process.pid)/comm", encoding: .utf8)) == "tool\n" }
        // Another file renamed over the path: the link still reads as the path, which now names something else.
        let other = directory.file("other")
        try Self.copy("/bin/true", to: other)
        #expect(rename(other, tool) == 0)
        let caller = try Self.caller(of: process, named: "tool")
        #expect(caller.exe == nil)
        #expect(caller.exeSHA256 == expected)
    }

    @Test("a process gone (its pidfd no longer alive) gives neither exe nor exe_sha256")
    func goneProcess() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let tool = directory.file("tool")
        try Self.copy("/bin/sleep", to: tool)
        let process = try ChildProcess(tool, ["30"])
        defer {
            process.signal(SIGKILL)
            process.waitForExit(timeout: .seconds(10))
        }
        let pidfd = try #require(Kernel.pidfdOpen(process.pid))
        defer { close(pidfd) }
        let hashes = ExecutableHashes(execute: { $0() })
        // The confirmation comes after /proc was read: here the process is gone by then.
        let reading = PeerIdentity.read(
            .init(pid: process.pid, uid: getuid(), gid: getgid()),
            groups: [],
            pidfd: pidfd,
            isAlive: { _ in false },
            hashes: hashes
        )
        #expect(reading.caller.exe == nil && reading.caller.exeSHA256 == nil && reading.unhashed == nil)
        process.signal(SIGKILL)
        process.waitForExit(timeout: .seconds(10))
        #expect(!Kernel.isAlive(pidfd: pidfd))
        let reaped = PeerIdentity.read(
            .init(pid: process.pid, uid: getuid(), gid: getgid()),
            groups: [],
            pidfd: pidfd,
            hashes: hashes
        )
        #expect(reaped.caller.exe == nil && reaped.caller.exeSHA256 == nil && reaped.unhashed == nil)
        #expect(hashes.hashedCount == 0)
    }

    @Test("without a pidfd (a kernel before 6.5) nothing is read of the executable")
    func noPidfd() throws {
        let reading = PeerIdentity.read(.init(pid: getpid(), uid: getuid(), gid: getgid()), groups: [], pidfd: nil)
        #expect(reading.caller.exe == nil && reading.caller.exeSHA256 == nil && reading.unhashed == nil)
    }

    // MARK: - Helpers

    /// The caller `process` reads as, pinned by a pidfd opened now (as `SO_PEERPIDFD` pins a connecting process),
    /// with its hash made by a cache of its own.
    static func caller(of process: ChildProcess, named name: String) throws -> Caller {
        let pidfd = try #require(Kernel.pidfdOpen(process.pid))
        defer { close(pidfd) }
        try Self.waitUntil {
            (try? String(contentsOfFile: "/proc/\(process.pid)/comm", encoding: .utf8)) == "\(name)\n"
        }
        let hashes = ExecutableHashes(execute: { $0() })
        let loop = EmbeddedEventLoop()
        let reading = PeerIdentity.read(
            .init(pid: process.pid, uid: getuid(), gid: getgid()),
            groups: [],
            pidfd: pidfd,
            hashes: hashes
        )
        return try Self.value(of: reading.complete(on: loop, hashes: hashes), on: loop)
    }

    static func value<T>(of future: EventLoopFuture<T>, on loop: EmbeddedEventLoop) throws -> T {
        loop.run()
        var result: Result<T, any Error>?
        future.whenComplete { result = $0 }
        loop.run()
        guard let result else { throw TestSupportError("the future did not complete") }
        return try result.get()
    }

    static func fakeKey(inode: UInt64) -> FileKey {
        FileKey(
            device: 1,
            inode: inode,
            size: 10,
            modified: .init(seconds: 1, nanoseconds: 0),
            changed: .init(seconds: 1, nanoseconds: 0)
        )
    }

    static func key(of path: String) throws -> FileKey {
        var info = stat()
        guard stat(path, &info) == 0 else { throw TestSupportError("stat \(path)") }
        return FileKey(info)
    }

    static func open(_ path: String) throws -> OpenFile {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw TestSupportError("open \(path)") }
        return OpenFile(fd)
    }

    static func write(_ text: String, to path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8)) else {
            throw TestSupportError("cannot write \(path)")
        }
    }

    /// Writes `text` over the start of the file at `path`, keeping its inode.
    static func overwrite(_ text: String, at path: String) throws {
        let fd = Glibc.open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw TestSupportError("open \(path)") }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        guard bytes.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == bytes.count else {
            throw TestSupportError("short write to \(path)")
        }
    }

    static func copy(_ source: String, to destination: String) throws {
        try ExecutableFile.copy(source, to: destination)
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// What `sha256sum` says of `path`: an implementation other than the daemon's.
    static func sha256sum(_ path: String) throws -> String {
        let process = try ChildProcess("/usr/bin/sha256sum", [path], standardOutput: .capture)
        guard process.waitForExit(timeout: .seconds(30)).status == 0 else { throw TestSupportError("sha256sum") }
        return String(process.standardOutput().prefix(64))
    }

    static func waitUntil(_ condition: () throws -> Bool) throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while try !condition() {
            guard ContinuousClock.now < deadline else { throw TestSupportError("condition not met in 10 s") }
            usleep(5_000)
        }
    }
}

/// Runs hashing jobs when the test says so.
final class ManualExecutor: Sendable {
    private let jobs = Locked<[@Sendable () -> Void]>([])

    var execute: @Sendable (@escaping @Sendable () -> Void) -> Void {
        { job in self.jobs.withLock { $0.append(job) } }
    }

    var pending: Int { self.jobs.withLock { $0.count } }

    func runAll() {
        while let job = self.jobs.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) { job() }
    }
}
