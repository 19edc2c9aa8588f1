#if canImport(Glibc)
import Glibc
#endif

/// A listening Unix stream socket, ready for NIO to adopt: either bound here at a path, or passed by systemd.
struct ListeningSocket: Sendable {
    /// The descriptor; NIO owns it once adopted.
    var descriptor: Int32
    /// The socket's path when the daemon bound it (nil for a socket passed by systemd, which systemd removes).
    var path: String?
    /// Device and inode of the socket file as bound, so that shutdown removes the file only while it is still ours.
    var identity: FileIdentity?
}

/// A file's device and inode.
struct FileIdentity: Sendable, Equatable {
    var device: UInt64
    var inode: UInt64

    init?(path: String) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        self.device = UInt64(info.st_dev)
        self.inode = UInt64(info.st_ino)
    }
}

/// Binds Unix stream sockets so that they appear at their path already listening, with their final mode and group.
///
/// The socket is bound under a fresh temporary name in the same directory, given its mode and group, set listening,
/// and only then renamed onto the final path. `rename(2)` is atomic: a client sees either the old file or the
/// finished socket, never a socket with a wider mode than intended, and never one that refuses connections.
enum UnixSocketFile {
    /// `sun_path` holds 108 bytes, one of which is the terminating NUL.
    static let maximumPathLength = 107

    /// Binds, configures and renames a listening socket onto `path`.
    ///
    /// A socket file left at `path` by a daemon that died is replaced; a live one (something accepts connections
    /// there) is not, and neither is anything that is not a socket.
    ///
    /// - Parameters:
    ///   - path: Where the socket must appear.
    ///   - mode: Its permission bits.
    ///   - group: The gid to give it, or nil to keep the daemon's.
    ///   - backlog: The `listen(2)` backlog.
    /// - Throws: `StartupError` naming the path and the reason.
    static func bind(
        path: String,
        mode: mode_t,
        group: UInt32?,
        backlog: Int32 = 256
    ) throws(StartupError) -> ListeningSocket {
        try Self.checkLength(path)
        try Self.checkExisting(path)
        let directory = Self.directory(of: path)
        try Self.ensureDirectory(directory)
        let temporary = "\(directory)/.\(Self.randomName())"
        guard temporary.utf8.count <= Self.maximumPathLength else {
            throw StartupError(
                "socket path \(path) leaves no room for the temporary name it is bound under (\(temporary.utf8.count) of \(Self.maximumPathLength) bytes); use a shorter path"
            )
        }

        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw StartupError("cannot create a socket for \(path): \(Self.lastError())") }
        do throws(StartupError) {
            try Self.withAddress(temporary) { address, length throws(StartupError) in
                guard Glibc.bind(descriptor, address, length) == 0 else {
                    throw StartupError("cannot bind \(temporary): \(Self.lastError())")
                }
            }
            do throws(StartupError) {
                if let group, lchown(temporary, uid_t.max, group) != 0 {
                    throw StartupError(
                        "cannot give socket \(path) to group \(group): \(Self.lastError()) (the daemon's user must be a member of the group)"
                    )
                }
                guard chmod(temporary, mode) == 0 else {
                    throw StartupError("cannot set the mode of socket \(path): \(Self.lastError())")
                }
                guard listen(descriptor, backlog) == 0 else {
                    throw StartupError("cannot listen on \(path): \(Self.lastError())")
                }
                guard rename(temporary, path) == 0 else {
                    throw StartupError("cannot move socket into place at \(path): \(Self.lastError())")
                }
            } catch {
                unlink(temporary)
                throw error
            }
        } catch {
            close(descriptor)
            throw error
        }
        return ListeningSocket(descriptor: descriptor, path: path, identity: FileIdentity(path: path))
    }

    /// Removes the socket file of `socket` if it is still the one bound there (a newer daemon may have replaced it).
    static func remove(_ socket: ListeningSocket) {
        guard let path = socket.path, let identity = socket.identity, FileIdentity(path: path) == identity else {
            return
        }
        unlink(path)
    }

    /// Whether something accepts connections at `path`.
    /// - Throws: `StartupError` when that cannot be told (no permission to connect, for instance).
    static func isListening(_ path: String) throws(StartupError) -> Bool {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw StartupError("cannot create a socket: \(Self.lastError())") }
        defer { close(descriptor) }
        return try Self.withAddress(path) { address, length throws(StartupError) in
            if connect(descriptor, address, length) == 0 { return true }
            switch errno {
            case ECONNREFUSED, ENOENT: return false
            // A full backlog means a live listener.
            case EAGAIN: return true
            default: throw StartupError("cannot tell whether another process listens on \(path): \(Self.lastError())")
            }
        }
    }

    // MARK: - Helpers

    static func checkLength(_ path: String) throws(StartupError) {
        guard !path.isEmpty, !path.utf8.contains(0) else { throw StartupError("invalid socket path '\(path)'") }
        guard path.utf8.count <= Self.maximumPathLength else {
            throw StartupError(
                "socket path \(path) is \(path.utf8.count) bytes long; Unix socket paths are limited to \(Self.maximumPathLength) bytes"
            )
        }
    }

    /// Refuses to replace anything but a stale socket.
    static func checkExisting(_ path: String) throws(StartupError) {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return }
            throw StartupError("cannot inspect \(path): \(Self.lastError())")
        }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw StartupError("\(path) exists and is not a socket; refusing to replace it")
        }
        if try Self.isListening(path) {
            throw StartupError("another process is already listening on \(path); is connvaultd already running?")
        }
    }

    /// Creates the socket's directory when it is missing (one level, mode 0755 so that the app socket is reachable);
    /// an existing directory keeps its mode.
    static func ensureDirectory(_ directory: String) throws(StartupError) {
        var info = stat()
        if stat(directory, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFDIR else { throw StartupError("\(directory) is not a directory") }
            return
        }
        guard errno == ENOENT, mkdir(directory, 0o755) == 0 || errno == EEXIST else {
            throw StartupError("cannot create socket directory \(directory): \(Self.lastError())")
        }
        // The umask (077) narrowed mkdir's mode.
        chmod(directory, 0o755)
    }

    static func directory(of path: String) -> String {
        guard let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")) else { return "." }
        let directory = String(path[..<slash])
        return directory.isEmpty ? "/" : directory
    }

    /// 8 random lowercase hex digits.
    static func randomName() -> String {
        let value = UInt32.random(in: .min ... .max)
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 8 - hex.count) + hex
    }

    /// Calls `body` with `path` as a `sockaddr_un`.
    static func withAddress<T>(
        _ path: String,
        _ body: (UnsafePointer<sockaddr>, socklen_t) throws(StartupError) -> T
    ) throws(StartupError) -> T {
        try Self.checkLength(path)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1)
        return try withUnsafePointer(to: &address) { pointer throws(StartupError) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address throws(StartupError) in
                try body(address, length)
            }
        }
    }

    static func lastError() -> String { String(cString: strerror(errno)) }
}
