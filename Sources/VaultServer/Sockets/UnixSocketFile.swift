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

    init(device: UInt64, inode: UInt64) {
        self.device = device
        self.inode = inode
    }

    init?(path: String) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        self.device = UInt64(info.st_dev)
        self.inode = UInt64(info.st_ino)
    }
}

/// Binds Unix stream sockets so that they appear at their path already listening, with their final mode and group,
/// without a single path-based call that another process could redirect.
///
/// The socket's directory must pass ``TrustedDirectory``. The socket is then bound inside a private directory the
/// daemon has just made there (mkdtemp: mode 0700, its own), reached through a descriptor opened without following
/// links; its group and mode are set relative to that descriptor, where no other uid can swap an entry; it is set
/// listening, and only then renamed onto the final path, and the private directory removed. `rename(2)` is atomic: a
/// client sees either the old file or the finished socket, never a socket with a wider mode than intended, and never
/// one that refuses connections. The process umask (077) is left alone: it is process-wide, and the private
/// directory makes a narrower umask unnecessary.
enum UnixSocketFile {
    /// `sun_path` holds 108 bytes, one of which is the terminating NUL.
    static let maximumPathLength = 107

    /// The prefix of the private directories sockets are bound in.
    static let privatePrefix = ".connvaultd-bind-"

    /// The socket's name inside its private directory.
    static let privateName = "socket"

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
        let directory = Self.directory(of: path)
        try Self.ensureDirectory(directory)
        try Self.checkExisting(path)
        let scratch = try PrivateDirectory(in: directory, for: path)
        defer { scratch.remove() }

        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw StartupError("cannot create a socket for \(path): \(Self.lastError())") }
        do throws(StartupError) {
            try Self.withAddress(scratch.bindPath) { address, length throws(StartupError) in
                guard Glibc.bind(descriptor, address, length) == 0 else {
                    throw StartupError("cannot bind a socket in \(scratch.path) for \(path): \(Self.lastError())")
                }
            }
            do throws(StartupError) {
                if let group, fchownat(scratch.descriptor, Self.privateName, uid_t.max, group, AT_SYMLINK_NOFOLLOW) != 0
                {
                    throw StartupError(
                        "cannot give socket \(path) to group \(group): \(Self.lastError()) (the daemon's user must be a member of the group)"
                    )
                }
                guard fchmodat(scratch.descriptor, Self.privateName, mode, 0) == 0 else {
                    throw StartupError("cannot set the mode of socket \(path): \(Self.lastError())")
                }
                guard listen(descriptor, backlog) == 0 else {
                    throw StartupError("cannot listen on \(path): \(Self.lastError())")
                }
                var info = stat()
                guard fstatat(scratch.descriptor, Self.privateName, &info, AT_SYMLINK_NOFOLLOW) == 0,
                    info.st_mode & S_IFMT == S_IFSOCK
                else {
                    throw StartupError("the socket bound for \(path) is missing from \(scratch.path)")
                }
                guard renameat(scratch.descriptor, Self.privateName, AT_FDCWD, path) == 0 else {
                    throw StartupError("cannot move socket into place at \(path): \(Self.lastError())")
                }
                let identity = FileIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
                return ListeningSocket(descriptor: descriptor, path: path, identity: identity)
            } catch {
                unlinkat(scratch.descriptor, Self.privateName, 0)
                throw error
            }
        } catch {
            close(descriptor)
            throw error
        }
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

    /// Creates the socket's directory when it is missing (one level, mode 0755 so that the app socket is reachable;
    /// an existing directory keeps its mode), then refuses it unless ``TrustedDirectory`` accepts it.
    static func ensureDirectory(_ directory: String) throws(StartupError) {
        try TrustedDirectory.create(directory, mode: 0o755, parents: false, purpose: "socket directory")
    }

    static func directory(of path: String) -> String {
        guard let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")) else { return "." }
        let directory = String(path[..<slash])
        return directory.isEmpty ? "/" : directory
    }

    /// Calls `body` with `path` as a `sockaddr_un` (``Kernel/withUnixAddress(_:_:)``).
    static func withAddress<T>(
        _ path: String,
        _ body: (UnsafePointer<sockaddr>, socklen_t) throws(StartupError) -> T
    ) throws(StartupError) -> T {
        try Self.checkLength(path)
        guard let result = try Kernel.withUnixAddress(path, body) else {
            throw StartupError("socket path \(path) cannot be a Unix socket address: \(Self.lastError())")
        }
        return result
    }

    static func lastError() -> String { String(cString: strerror(errno)) }
}

/// A directory made with `mkdtemp(3)` (mode 0700, the daemon's own) next to a socket's final path, held open by a
/// descriptor, for binding the socket where no other uid can reach it.
struct PrivateDirectory {
    let path: String
    let descriptor: Int32
    /// Where to bind: the directory reached through its descriptor (`/proc/self/fd/N/socket`), so that the kernel
    /// does not resolve the directory's name again; its full path when `/proc` is not mounted.
    let bindPath: String

    /// - Throws: `StartupError` naming `socketPath` when the directory cannot be made, or what was opened is not
    ///   the daemon's private directory.
    init(in directory: String, for socketPath: String) throws(StartupError) {
        var template = Array("\(directory)/\(UnixSocketFile.privatePrefix)XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard let made else {
            throw StartupError(
                "cannot make a private directory in \(directory) to bind \(socketPath) in: \(UnixSocketFile.lastError())"
            )
        }
        let path = String(cString: made)
        let descriptor = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw StartupError(
                "cannot open the private directory \(path) for \(socketPath): \(UnixSocketFile.lastError())"
            )
        }
        var info = stat()
        guard fstat(descriptor, &info) == 0, info.st_uid == geteuid(), info.st_mode & 0o7777 == 0o700 else {
            close(descriptor)
            throw StartupError(
                "the private directory \(path) made for \(socketPath) was replaced; refusing to bind there"
            )
        }
        self.path = path
        self.descriptor = descriptor
        let throughDescriptor = "/proc/self/fd/\(descriptor)"
        var linked = stat()
        if stat(throughDescriptor, &linked) == 0, linked.st_dev == info.st_dev, linked.st_ino == info.st_ino {
            self.bindPath = "\(throughDescriptor)/\(UnixSocketFile.privateName)"
        } else {
            self.bindPath = "\(path)/\(UnixSocketFile.privateName)"
        }
    }

    /// Removes what is left in the directory and the directory, and closes its descriptor.
    func remove() {
        unlinkat(self.descriptor, UnixSocketFile.privateName, 0)
        rmdir(self.path)
        close(self.descriptor)
    }
}
