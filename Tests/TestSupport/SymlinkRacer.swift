import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A local attacker who can write a socket's directory, racing the daemon while it creates its sockets: on a thread
/// of its own it lists the directory over and over, and
/// - replaces every hidden socket (a socket under a temporary name, about to get its mode) by a symbolic link to
///   `target`, so that a `chmod` by path lands on `target`;
/// - moves every directory the daemon makes there to bind in (`.connvaultd-bind-*`) aside and puts a link to a decoy
///   directory in its place, whose `socket` entry is a hard link of `target`.
/// A daemon that creates its sockets safely leaves `target`'s mode as it was, however the race goes.
public final class SymlinkRacer: @unchecked Sendable {
    // @unchecked Sendable: the thread only reads the immutable paths; the counters are atomics.
    public let directory: String
    public let target: String
    public let decoy: String
    private let stopped = Atomic<Bool>(false)
    private let swapCount = Atomic<Int>(0)
    private let finished = DispatchSemaphore(value: 0)
    private let joined = Atomic<Bool>(false)

    /// - Parameters:
    ///   - directory: The directory the sockets are made in.
    ///   - target: The file the racer wants to have its mode changed (root's, 0600).
    ///   - decoy: A directory of the racer's (created here, next to `target`).
    public init(directory: String, target: String, decoy: String) throws {
        self.directory = directory
        self.target = target
        self.decoy = decoy
        mkdir(decoy, 0o755)
        guard link(target, "\(decoy)/socket") == 0 || errno == EEXIST else {
            throw TestSupportError("cannot link \(target) into \(decoy): \(String(cString: strerror(errno)))")
        }
    }

    /// How many entries the racer has replaced so far.
    public var swaps: Int { self.swapCount.load(ordering: .relaxed) }

    /// Starts racing on a thread of its own.
    public func start() {
        Thread.detachNewThread { [self] in
            var moved = 0
            while !self.stopped.load(ordering: .relaxed) {
                moved = self.round(moved: moved)
            }
            self.finished.signal()
        }
    }

    /// Stops the thread and waits for it (at most 10 s). Calling it again does nothing.
    public func stop() {
        self.stopped.store(true, ordering: .relaxed)
        guard !self.joined.exchange(true, ordering: .relaxed) else { return }
        _ = self.finished.wait(timeout: .now() + 10)
    }

    /// One pass over the directory; returns the number of directories moved aside so far.
    private func round(moved: Int) -> Int {
        var moved = moved
        guard let stream = opendir(self.directory) else {
            sched_yield()
            return moved
        }
        defer { closedir(stream) }
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard name.hasPrefix("."), name != ".", name != "..", !name.hasPrefix(".racer") else { continue }
            let path = "\(self.directory)/\(name)"
            var info = stat()
            guard lstat(path, &info) == 0 else { continue }
            switch info.st_mode & S_IFMT {
            case S_IFSOCK:
                let link = "\(self.directory)/.racer-link"
                unlink(link)
                if symlink(self.target, link) == 0, rename(link, path) == 0 {
                    self.swapCount.add(1, ordering: .relaxed)
                }
            case S_IFDIR where name.hasPrefix(".connvaultd-bind-"):
                moved += 1
                if rename(path, "\(self.directory)/.racer-moved-\(moved)") == 0, symlink(self.decoy, path) == 0 {
                    self.swapCount.add(1, ordering: .relaxed)
                }
            default:
                break
            }
        }
        return moved
    }
}
