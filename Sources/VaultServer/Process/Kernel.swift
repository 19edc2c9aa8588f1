import CVaultShims
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// The Linux calls Swift cannot make directly (variadic `prctl`, `struct ucred`), and the C helpers written once in
/// `CVaultShims` (`sockaddr_un`, `SO_PEERGROUPS`, zeroing, group look-ups), each with one Swift wrapper here.
///
/// This is the only file of the module that imports `CVaultShims`.
enum Kernel {
    /// The process on the other end of a connected Unix socket, as the kernel recorded it at `connect()`.
    struct PeerCredentials: Sendable, Equatable {
        var pid: Int32
        var uid: UInt32
        var gid: UInt32
    }

    /// Reads `SO_PEERCRED` of `channel`'s socket.
    ///
    /// Goes through NIO's `SocketOptionProvider`, which runs `getsockopt` on the channel's own event loop, so the file
    /// descriptor cannot be closed or reused underneath the call. `cv_ucred` is a C struct laid out exactly as the
    /// kernel's `struct ucred` (the shim checks that at compile time), which makes the untyped read sound.
    /// - Returns: nil when the channel is not a socket channel (an embedded channel in tests).
    static func peerCredentials(of channel: any Channel) -> EventLoopFuture<PeerCredentials>? {
        guard let provider = channel as? any SocketOptionProvider else { return nil }
        let future: EventLoopFuture<cv_ucred> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET),
            name: SocketOptionName(SO_PEERCRED)
        )
        return future.map { PeerCredentials(pid: $0.pid, uid: $0.uid, gid: $0.gid) }
    }

    /// `SO_PEERPIDFD` of `provider`'s socket: a pidfd for the process that connected, which the caller closes; nil
    /// when this kernel has none or the call failed. Run on the channel's event loop, where NIO completes it at once.
    static func peerPidfd(of provider: any SocketOptionProvider) -> Int32? {
        guard Self.hasPeerPidfd else { return nil }
        let future: EventLoopFuture<CInt> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET),
            name: SocketOptionName(CV_SO_PEERPIDFD)
        )
        var pidfd: Int32?
        future.whenSuccess { pidfd = $0 }
        return pidfd
    }

    /// `SO_PEERGROUPS` of the channel's socket: the peer's supplementary groups, exactly as many as the kernel
    /// reports (``peerGroups(ofDescriptor:)``). `provider` is the channel itself; its descriptor is borrowed through
    /// NIO's scoped transport access, on the channel's event loop, so it cannot be closed or reused underneath the
    /// call.
    /// - Returns: nil when the channel has no socket (an embedded channel in tests) or the call failed.
    static func peerGroups(of provider: any SocketOptionProvider) -> [UInt32]? {
        guard let channel = provider as? any Channel else { return nil }
        let groups = try? channel.pipeline.syncOperations.withUnsafeTransportIfAvailable(of: NIOBSDSocket.Handle.self) {
            Self.peerGroups(ofDescriptor: $0)
        }
        return groups ?? nil
    }

    /// `SO_PEERGROUPS` of socket `fd` through `cv_get_peer_groups`: 64 groups fit the first buffer; when the peer has
    /// more, the kernel says how many (ERANGE) and the second buffer holds exactly that many.
    static func peerGroups(ofDescriptor fd: Int32) -> [UInt32]? {
        var capacity: Int32 = 64
        // The group set is fixed at connect(), so the second try fits; the bound only guards against surprises.
        for _ in 0..<3 {
            var buffer = [gid_t](repeating: 0, count: Int(capacity))
            var count: Int32 = 0
            if cv_get_peer_groups(fd, &buffer, capacity, &count) == 0 {
                return Array(buffer.prefix(Int(count)))
            }
            guard errno == ERANGE, count > capacity else { return nil }
            capacity = count
        }
        return nil
    }

    /// Whether the process `pidfd` pins has not been reaped yet: `pidfd_send_signal(pidfd, 0)` succeeds, or is refused
    /// for want of permission (the process exists). A zombie counts as alive: its pid cannot have been reused.
    static func isAlive(pidfd: Int32) -> Bool {
        cv_pidfd_send_signal(pidfd, 0) == 0 || errno == EPERM
    }

    /// `pidfd_open(pid, 0)`, or nil.
    static func pidfdOpen(_ pid: Int32) -> Int32? {
        let fd = cv_pidfd_open(pid)
        return fd < 0 ? nil : fd
    }

    /// Whether this kernel has `SO_PEERPIDFD` (Linux 6.5 and later), probed once.
    static let hasPeerPidfd: Bool = cv_peer_pidfd_supported() == 1

    /// The magic number of the file system `fd` is on (`fstatfs`'s `f_type`), or nil.
    static func fileSystemType(of fd: Int32) -> Int64? {
        let type = cv_fstatfs_type(fd)
        return type < 0 ? nil : Int64(type)
    }

    /// `open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)`, or nil.
    static func openDirectory(_ path: String) -> Int32? {
        let fd = cv_open_directory(path)
        return fd < 0 ? nil : fd
    }

    /// `openat(directory, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)`, or nil.
    static func openFile(_ name: String, in directory: Int32) -> Int32? {
        let fd = cv_openat_read(directory, name)
        return fd < 0 ? nil : fd
    }

    /// Descriptor limits after raising the soft `RLIMIT_NOFILE` to the hard one.
    struct DescriptorLimit: Sendable, Equatable {
        /// The soft limit now in force; nil for unlimited.
        var soft: Int?
        /// Whether raising it failed (the soft limit is then what it was).
        var raiseFailed: Bool
    }

    /// Raises the soft `RLIMIT_NOFILE` to the hard limit, so that the connection caps, not the default 1024, decide
    /// who is refused.
    static func raiseDescriptorLimit() -> DescriptorLimit {
        var soft: Int64 = 0
        var hard: Int64 = 0
        let result = cv_raise_nofile_limit(&soft, &hard)
        return DescriptorLimit(soft: soft < 0 ? nil : Int(soft), raiseFailed: result != 0)
    }

    /// `prctl(PR_SET_DUMPABLE, value)`.
    static func setDumpable(_ dumpable: Bool) throws(SystemCallError) {
        guard cv_set_dumpable(dumpable ? 1 : 0) == 0 else {
            throw SystemCallError("prctl(PR_SET_DUMPABLE)", errno: errno)
        }
    }

    /// `prctl(PR_GET_DUMPABLE)`: whether other processes of the same uid may ptrace this one and it may dump core.
    static var isDumpable: Bool { cv_get_dumpable() != 0 }

    /// `RLIMIT_CORE = 0`, soft and hard, so that no core file can ever be written (nor the limit raised again).
    static func disableCoreDumps() throws(SystemCallError) {
        guard cv_disable_core_dumps() == 0 else { throw SystemCallError("setrlimit(RLIMIT_CORE)", errno: errno) }
    }

    /// The soft `RLIMIT_CORE`, or nil when it cannot be read.
    static var coreLimit: Int64? {
        let limit = cv_core_limit()
        return limit < 0 ? nil : Int64(limit)
    }

    /// Calls `body` with `path` as a `sockaddr_un` and the length to pass with it (`cv_sockaddr_un_set`): a path
    /// gets its terminating NUL, `@name` is an abstract name exactly as long as given.
    /// - Returns: nil, with `errno` ENAMETOOLONG or EINVAL, when `path` does not fit `sun_path` (more than 107 bytes),
    ///   is empty or holds a NUL.
    static func withUnixAddress<T, E: Error>(
        _ path: String,
        _ body: (UnsafePointer<sockaddr>, socklen_t) throws(E) -> T
    ) throws(E) -> T? {
        guard !path.utf8.contains(0) else {
            errno = EINVAL
            return nil
        }
        var address = sockaddr_un()
        var length: socklen_t = 0
        guard cv_sockaddr_un_set(&address, path, &length) == 0 else { return nil }
        return try withUnsafePointer(to: &address) { pointer throws(E) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address throws(E) in
                try body(address, length)
            }
        }
    }

    /// Group look-ups through `cv_group_by_name` (getgrnam_r, its buffer grown on ERANGE).
    enum GroupLookupResult: Equatable {
        case found(UInt32)
        case missing
        case failed(errno: Int32)
    }

    /// The gid of group `name`.
    static func groupID(named name: String) -> GroupLookupResult {
        var gid: gid_t = 0
        switch cv_group_gid(name, &gid) {
        case 0: return .found(gid)
        case 1: return .missing
        default: return .failed(errno: errno)
        }
    }
}

/// Zeroes `bytes` with `explicit_bzero` (`cv_zero`): stores the optimiser cannot drop, for memory that held a secret
/// and is about to be freed.
func zeroBytes(_ bytes: UnsafeMutableRawBufferPointer) {
    cv_zero(bytes.baseAddress, bytes.count)
}

/// A failed system call: its name and `errno`, described with `strerror`.
struct SystemCallError: Error, Sendable, CustomStringConvertible {
    var call: String
    var errno: Int32

    init(_ call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    var description: String { "\(self.call): \(String(cString: strerror(self.errno)))" }
}
