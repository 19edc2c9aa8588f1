import CVaultShims
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// The Linux calls Swift cannot make directly (variadic `prctl`, `struct ucred`), through the `CVaultShims` C module.
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

    /// A getsockopt buffer for `SO_PEERGROUPS` that holds no group: the call succeeds exactly when there are none.
    private struct NoGroups {}

    /// `SO_PEERGROUPS`, read through NIO, which zero-fills the buffer and does not report the length the kernel wrote.
    ///
    /// The kernel keeps every group list sorted (`setgroups` sorts it; its membership test is a binary search), so
    /// the groups are the non-decreasing prefix of the buffer and the zero fill after them ends it; only a buffer that
    /// is all zeros is ambiguous (no groups, or group 0), which a zero-length read decides. 64 groups fit the first
    /// buffer, 1024 the second; a peer with more gets none of its supplementary groups (fails closed). Run on the
    /// channel's event loop, where NIO completes each call at once.
    static func peerGroups(of provider: any SocketOptionProvider) -> [UInt32]? {
        func read<Buffer>(_: Buffer.Type) -> [UInt32]? {
            let future: EventLoopFuture<Buffer> = provider.unsafeGetSocketOption(
                level: SocketOptionLevel(SOL_SOCKET),
                name: SocketOptionName(CV_SO_PEERGROUPS)
            )
            var groups: [UInt32]?
            future.whenSuccess { buffer in
                groups = withUnsafeBytes(of: buffer) { Array($0.bindMemory(to: UInt32.self)) }
            }
            return groups
        }
        guard let buffer = read(InlineArray<64, UInt32>.self) ?? read(InlineArray<1024, UInt32>.self) else {
            return nil
        }
        return Self.groups(inZeroFilled: buffer) { read(NoGroups.self) != nil }
    }

    /// The group set in a zero-filled `SO_PEERGROUPS` buffer (see ``peerGroups(of:)``).
    /// - Parameter hasNoGroups: Asked only when the buffer is all zeros.
    static func groups(inZeroFilled buffer: [UInt32], hasNoGroups: () -> Bool) -> [UInt32] {
        var groups: [UInt32] = []
        for gid in buffer {
            if let last = groups.last {
                if gid < last { break }
                if gid == last { continue }
            }
            groups.append(gid)
        }
        if groups == [0] && hasNoGroups() { return [] }
        return groups
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
