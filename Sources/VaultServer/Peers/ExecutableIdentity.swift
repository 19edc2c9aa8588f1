import NIOCore
import NIOPosix
import VaultCrypto
import VaultLocks

#if canImport(Glibc)
import Glibc
#endif

/// The executable a caller runs (DESIGN §10's `exe` and `exe_sha256`), read through the `/proc/PID` directory that
/// ``PeerIdentity`` holds open, in the same window as the unit: everything here is read before the pidfd confirms the
/// process, and thrown away when it does not.
///
/// - `exe` is the text of the `/proc/PID/exe` link, kept only when it is an absolute path that still names, in the
///   daemon's own view of the file system, the very file being executed (same device and inode as the descriptor
///   opened through the link). A deleted file (`… (deleted)`), a path in another mount namespace that names something
///   else here (a container's, or a bind mount over a granted path), or a path the daemon cannot see gives nil.
/// - `exe_sha256` is the SHA-256 of the contents read through a descriptor opened on `/proc/PID/exe` itself, which is
///   the inode being executed even when its path was replaced or removed. Hashes are cached by device, inode, size,
///   mtime and ctime (ctime, which no user can set, so that rewriting a file and restoring its mtime re-hashes it).
enum ExecutableIdentity {
    /// Files larger than this are not hashed: `exe_sha256` stays nil for them.
    static let maximumHashedSize: Int64 = 512 * 1024 * 1024

    /// The canonical path in `link` (the text of `/proc/PID/exe`), or nil when it names no file the daemon can hold
    /// it to: not absolute (an anonymous or unreachable file) or ending in ` (deleted)` (the file is gone; a file that
    /// is really named so is refused as well).
    static func canonicalPath(fromLink link: String) -> String? {
        guard link.hasPrefix("/"), !link.hasSuffix(" (deleted)"), !link.utf8.contains(0) else { return nil }
        return link
    }

    /// What was read of the executable before the process was confirmed.
    struct Unconfirmed: Sendable {
        /// The link's text, as ``canonicalPath(fromLink:)`` keeps it.
        var path: String?
        /// The executable, opened through the link.
        var file: OpenFile
        var key: FileKey
    }

    /// Reads `exe` in the `/proc/PID` directory open as `directory`; nil when it cannot be read (the process is gone,
    /// belongs to another uid and the daemon may not look, or is a kernel thread).
    static func read(in directory: Int32) -> Unconfirmed? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlinkat(directory, "exe", &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        let link = String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // Follows the magic link: the descriptor is the file the process executes, wherever it is now.
        let fd = openat(directory, "exe", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        let file = OpenFile(fd)
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        return Unconfirmed(path: Self.canonicalPath(fromLink: link), file: file, key: FileKey(info))
    }

    /// `path` when it names the file `key` describes in the daemon's view of the file system, else nil.
    static func verified(_ path: String?, names key: FileKey) -> String? {
        guard let path else { return nil }
        var info = stat()
        guard stat(path, &info) == 0, info.st_dev == key.device, info.st_ino == key.inode else { return nil }
        return path
    }

    /// Whether `file` may be hashed: small enough, and not on a FUSE file system, whose reads its owner can hold up
    /// for as long as they like.
    static func isHashable(_ file: OpenFile, key: FileKey) -> Bool {
        guard key.size <= Self.maximumHashedSize else { return false }
        guard let type = Kernel.fileSystemType(of: file.descriptor) else { return false }
        return type != Self.fuseMagic
    }

    private static let fuseMagic: Int64 = 0x6573_5546

    /// SHA-256 of the whole of `file` as lower-case hex, read from offset 0 with `pread`; nil when it cannot be read
    /// or no longer matches `key` afterwards (it changed while being read).
    static func sha256(of file: OpenFile, key: FileKey) -> String? {
        var hasher = Hashing.SHA256()
        var chunk = [UInt8](repeating: 0, count: 256 * 1024)
        var offset: Int64 = 0
        while offset <= key.size {
            let count = chunk.withUnsafeMutableBytes { pread(file.descriptor, $0.baseAddress, $0.count, off_t(offset)) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { return nil }
            if count == 0 { break }
            chunk.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[..<count])) }
            offset += Int64(count)
        }
        var after = stat()
        guard offset == key.size, fstat(file.descriptor, &after) == 0, FileKey(after) == key else { return nil }
        return Hashing.hex(hasher.finish())
    }

    /// Whether the executable of a caller of another uid can be read at all: `/proc/PID/exe` needs ptrace read access,
    /// which for other uids takes `CAP_SYS_PTRACE` (root has it unless it was dropped). Read once.
    static let canReadOtherUsers: Bool = {
        guard let status = ProcFile.read("/proc/self/status"), let text = ProcStatus.field("CapEff", in: status),
            let capabilities = UInt64(text, radix: 16)
        else { return false }
        return capabilities & (1 << 19) != 0  // CAP_SYS_PTRACE
    }()
}

/// An open file descriptor, closed when the last reference goes.
final class OpenFile: Sendable {
    let descriptor: Int32

    init(_ descriptor: Int32) { self.descriptor = descriptor }

    deinit { close(self.descriptor) }
}

/// What identifies one version of a file for the hash cache: device, inode, size, mtime and ctime (`fstat`).
struct FileKey: Hashable, Sendable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var modified: Timestamp
    var changed: Timestamp

    struct Timestamp: Hashable, Sendable {
        var seconds: Int
        var nanoseconds: Int
    }

    init(device: UInt64, inode: UInt64, size: Int64, modified: Timestamp, changed: Timestamp) {
        self.device = device
        self.inode = inode
        self.size = size
        self.modified = modified
        self.changed = changed
    }

    init(_ info: stat) {
        self.init(
            device: UInt64(info.st_dev),
            inode: UInt64(info.st_ino),
            size: Int64(info.st_size),
            modified: Timestamp(seconds: info.st_mtim.tv_sec, nanoseconds: info.st_mtim.tv_nsec),
            changed: Timestamp(seconds: info.st_ctim.tv_sec, nanoseconds: info.st_ctim.tv_nsec)
        )
    }
}

/// The executables' hashes: a bounded cache (least recently used out first) and the hashing of files not in it, off
/// the event loops.
///
/// A cache hit is one dictionary look-up under a lock. A miss is hashed by a job that runs on `execute` (NIO's
/// blocking thread pool), at most `concurrency` jobs at once so that hashing never takes more than that many cores
/// from the machine; one job per file however many connections wait for it; and the uids with jobs waiting take turns
/// (round robin), so that a uid that keeps producing new large executables delays another uid's hash by at most one
/// job per running slot.
final class ExecutableHashes: Sendable {
    /// The daemon's one cache.
    static let shared = ExecutableHashes()

    private struct Job: Sendable {
        var key: FileKey
        var file: OpenFile
    }

    private struct State {
        var entries: [FileKey: (hash: String, used: UInt64)] = [:]
        var clock: UInt64 = 0
        /// Promises waiting for a file being hashed or queued, by file.
        var waiting: [FileKey: [EventLoopPromise<String?>]] = [:]
        /// Queued jobs by uid, and the uids in the order they take turns.
        var queues: [UInt32: [Job]] = [:]
        var turns: [UInt32] = []
        var running = 0
        /// How many files were hashed (for tests).
        var hashed = 0
    }

    private let state = Locked(State())
    let capacity: Int
    private let concurrency: Int
    private let execute: @Sendable (@escaping @Sendable () -> Void) -> Void
    private let hash: @Sendable (OpenFile, FileKey) -> String?

    /// - Parameters:
    ///   - capacity: How many hashes are kept.
    ///   - concurrency: How many files are hashed at once.
    ///   - execute: Runs a hashing job off the event loops.
    ///   - hash: Hashes a file (``ExecutableIdentity/sha256(of:key:)``; replaceable in tests).
    init(
        capacity: Int = 256,
        concurrency: Int = 1,
        execute: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void = { job in
            NIOThreadPool.singleton.submit { _ in job() }
        },
        hash: @escaping @Sendable (OpenFile, FileKey) -> String? = ExecutableIdentity.sha256(of:key:)
    ) {
        self.capacity = capacity
        self.concurrency = concurrency
        self.execute = execute
        self.hash = hash
    }

    /// The cached hash of `key`, if any (and it becomes the most recently used).
    func cached(_ key: FileKey) -> String? {
        self.state.withLock { state in
            guard let entry = state.entries[key] else { return nil }
            state.clock += 1
            state.entries[key] = (entry.hash, state.clock)
            return entry.hash
        }
    }

    /// The hash of `file`: from the cache at once, or once a job has hashed it; nil when it cannot be read.
    func hash(_ file: OpenFile, key: FileKey, uid: UInt32, on eventLoop: any EventLoop) -> EventLoopFuture<String?> {
        let promise = eventLoop.makePromise(of: String?.self)
        enum Action {
            case answer(String)
            case wait
            case start
        }
        let action = self.state.withLock { state -> Action in
            if let entry = state.entries[key] {
                state.clock += 1
                state.entries[key] = (entry.hash, state.clock)
                return .answer(entry.hash)
            }
            if state.waiting[key] != nil {
                state.waiting[key]?.append(promise)
                return .wait
            }
            state.waiting[key] = [promise]
            if state.queues[uid] == nil { state.turns.append(uid) }
            state.queues[uid, default: []].append(Job(key: key, file: file))
            guard state.running < self.concurrency else { return .wait }
            state.running += 1
            return .start
        }
        switch action {
        case .answer(let hash): promise.succeed(hash)
        case .wait: break
        case .start: self.execute { self.work() }
        }
        return promise.futureResult
    }

    /// How many files have been hashed so far.
    var hashedCount: Int { self.state.withLock { $0.hashed } }

    /// How many hashes are cached.
    var count: Int { self.state.withLock { $0.entries.count } }

    /// Runs jobs, the uids taking turns, until none is left.
    private func work() {
        while let job = self.next() {
            let hash = self.hash(job.file, job.key)
            let waiters = self.state.withLock { state -> [EventLoopPromise<String?>] in
                state.hashed += 1
                if let hash {
                    state.clock += 1
                    state.entries[job.key] = (hash, state.clock)
                    if state.entries.count > self.capacity,
                        let oldest = state.entries.min(by: { $0.value.used < $1.value.used })?.key
                    {
                        state.entries[oldest] = nil
                    }
                }
                return state.waiting.removeValue(forKey: job.key) ?? []
            }
            for promise in waiters { promise.succeed(hash) }
        }
    }

    /// The next job (the uid first in turn, which then goes to the back), or nil with this worker retired.
    private func next() -> Job? {
        self.state.withLock { state in
            guard !state.turns.isEmpty else {
                state.running -= 1
                return nil
            }
            let uid = state.turns.removeFirst()
            var queue = state.queues[uid] ?? []
            let job = queue.removeFirst()
            if queue.isEmpty {
                state.queues[uid] = nil
            } else {
                state.queues[uid] = queue
                state.turns.append(uid)
            }
            return job
        }
    }
}
