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
