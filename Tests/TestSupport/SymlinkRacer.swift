import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A local attacker who can write a socket's directory, racing the daemon while it creates its sockets: on a thread
/// of its own, woken by inotify for each new entry, it
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
    private let linkName = ".racer-link-\(UInt32.random(in: .min ... .max))"

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

    /// Starts racing on a thread of its own: woken by inotify for each new entry, with the link it swaps in made
    /// beforehand, so that one `rename(2)` is all it has to win the race with.
    public func start() {
        Thread.detachNewThread { [self] in
            let events = inotify_init1(Int32(IN_CLOEXEC))
            if events >= 0 {
                _ = inotify_add_watch(events, self.directory, UInt32(IN_CREATE))
            }
            var moved = 0
            var buffer = [UInt8](repeating: 0, count: 64 * 1024)
            self.prepareLink()
            while !self.stopped.load(ordering: .relaxed) {
                guard events >= 0 else {
                    moved = self.round(names: self.listing(), moved: moved)
                    continue
                }
                var ready = pollfd(fd: events, events: Int16(POLLIN), revents: 0)
                guard poll(&ready, 1, 50) > 0 else { continue }
                let count = buffer.withUnsafeMutableBytes { read(events, $0.baseAddress, $0.count) }
                guard count > 0 else { continue }
                moved = self.round(names: Self.names(in: buffer, count: count), moved: moved)
            }
            if events >= 0 { close(events) }
            self.finished.signal()
        }
    }

    /// Stops the thread and waits for it (at most 10 s). Calling it again does nothing.
    public func stop() {
        self.stopped.store(true, ordering: .relaxed)
        guard !self.joined.exchange(true, ordering: .relaxed) else { return }
        _ = self.finished.wait(timeout: .now() + 10)
    }

    private var linkPath: String { "\(self.directory)/\(self.linkName)" }

    /// Makes the link to `target` that the racer renames over a new socket.
    private func prepareLink() {
        unlink(self.linkPath)
        _ = symlink(self.target, self.linkPath)
    }

    /// The names of the entries in `directory`.
    private func listing() -> [String] {
        guard let stream = opendir(self.directory) else { return [] }
        defer { closedir(stream) }
        var names: [String] = []
        while let entry = readdir(stream) {
            names.append(
                withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
                }
            )
        }
        return names
    }

    /// The names in a buffer of `inotify_event`s.
    private static func names(in buffer: [UInt8], count: Int) -> [String] {
        var names: [String] = []
        var offset = 0
        let header = MemoryLayout<inotify_event>.size
        while offset + header <= count {
            let length = buffer.withUnsafeBytes { raw in
                Int(raw.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
            }
            let start = offset + header
            let end = min(start + length, count)
            names.append(String(decoding: buffer[start..<end].prefix(while: { $0 != 0 }), as: UTF8.self))
            offset = start + length
        }
        return names
    }

    /// Replaces what `names` hold, as the type's documentation says; returns the number of directories moved aside
    /// so far.
    private func round(names: [String], moved: Int) -> Int {
        var moved = moved
        for name in names {
            guard name.hasPrefix("."), name != ".", name != "..", !name.hasPrefix(".racer") else { continue }
            let path = "\(self.directory)/\(name)"
            if name.hasPrefix(".connvaultd-bind-") {
                // Only the daemon's directories, not the links racers put in their place.
                var info = stat()
                guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else { continue }
                moved += 1
                if rename(path, "\(self.linkPath)-moved-\(moved)") == 0, symlink(self.decoy, path) == 0 {
                    self.swapCount.add(1, ordering: .relaxed)
                }
                continue
            }
            // No lstat first: every system call lost is time the daemon wins. A directory refuses the rename.
            if rename(self.linkPath, path) == 0 { self.swapCount.add(1, ordering: .relaxed) }
            self.prepareLink()
        }
        return moved
    }
}
