import CVaultShims
import VaultAPI

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One connected, non-blocking `AF_UNIX` stream socket. The only owner of its file descriptor: closed explicitly by
/// `close()`.
///
/// Used from one thread: `connvaultctl` sends one request at a time, and a socket lives for one exchange.
final class UnixSocket {
    private var descriptor: Int32
    let path: String

    /// Connects to `path`, waiting at most until `deadline` when the listen backlog is full.
    ///
    /// - Throws: `DaemonError` `.cannotConnect` (missing, refused, permission denied), `.invalidRequest`
    ///   (path too long), `.timedOut`, `.untrustedServer` (an admin socket served by an untrusted uid, see
    ///   ``ServerIdentity``).
    init(connectingTo path: String, kind: SocketKind, deadline: Deadline) throws {
        if let problem = kind.pathProblem(path) {
            throw DaemonError(.invalidRequest, problem, socketPath: path)
        }
        self.path = path
        #if canImport(Glibc)
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
        #else
        let type = SOCK_STREAM
        #endif
        let descriptor = socket(AF_UNIX, type, 0)
        guard descriptor >= 0 else {
            throw Self.cannotConnect(path, kind: kind, errno: errno)
        }
        self.descriptor = descriptor

        var address = sockaddr_un()
        var length = socklen_t(0)
        // The shared helper reads a leading '@' as an abstract socket name; to the CLI it was always a file name.
        let addressPath = path.hasPrefix("@") ? "./" + path : path
        guard cv_sockaddr_un_set(&address, addressPath, &length) == 0 else {
            let error = errno
            Self.closeDescriptor(descriptor)
            self.descriptor = -1
            throw Self.cannotConnect(path, kind: kind, errno: error)
        }
        do {
            connecting: while true {
                let result = withUnsafePointer(to: &address) { pointer in
                    pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        connect(descriptor, $0, length)
                    }
                }
                if result == 0 { break }
                let error = errno
                switch error {
                case EINTR:
                    continue
                case EAGAIN:
                    // AF_UNIX answers EAGAIN while the listener's backlog is full: wait a little and retry.
                    try Self.check(deadline: deadline, path: path)
                    usleep(5_000)
                case EINPROGRESS:
                    try self.waitUntil(POLLOUT, deadline: deadline)
                    var pending: Int32 = 0
                    var length = socklen_t(MemoryLayout<Int32>.size)
                    getsockopt(descriptor, SOL_SOCKET, SO_ERROR, &pending, &length)
                    if pending != 0 { throw Self.cannotConnect(path, kind: kind, errno: pending) }
                    break connecting
                default:
                    throw Self.cannotConnect(path, kind: kind, errno: error)
                }
            }
            // Before any byte is sent: the admin socket's server must be the daemon, not a stand-in of another user.
            if kind == .admin { try ServerIdentity.check(descriptor, path: path, kind: kind) }
        } catch {
            self.close()
            throw error
        }
    }

    deinit {
        if self.descriptor >= 0 {
            assertionFailure("UnixSocket for \(self.path) was not closed")
            Self.closeDescriptor(self.descriptor)
        }
    }

    var isOpen: Bool { self.descriptor >= 0 }

    func close() {
        guard self.descriptor >= 0 else { return }
        Self.closeDescriptor(self.descriptor)
        self.descriptor = -1
    }

    /// Writes all of `bytes`. `MSG_NOSIGNAL`: a peer that went away yields `EPIPE`, never a process-killing SIGPIPE.
    ///
    /// - Throws: `SocketIOError.closed` when the peer is gone, `DaemonError` `.timedOut`.
    func writeAll(_ bytes: UnsafeRawBufferPointer, deadline: Deadline) throws {
        guard let base = bytes.baseAddress else { return }
        var offset = 0
        while offset < bytes.count {
            let written = send(self.descriptor, base + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            if written > 0 {
                offset += written
                continue
            }
            let error = errno
            switch error {
            case EINTR:
                continue
            case EAGAIN, EWOULDBLOCK:
                try self.waitUntil(POLLOUT, deadline: deadline)
            case EPIPE, ECONNRESET:
                throw SocketIOError.closed
            default:
                throw DaemonError(
                    .invalidResponse,
                    "writing to \(self.path) failed: \(Self.errorText(error))",
                    socketPath: self.path,
                    osError: error
                )
            }
        }
    }

    /// Reads what is available into `buffer`, waiting for at least one byte.
    ///
    /// - Returns: The number of bytes read; 0 when the peer closed the connection.
    func read(into buffer: UnsafeMutableRawBufferPointer, deadline: Deadline) throws -> Int {
        while true {
            let count = recv(self.descriptor, buffer.baseAddress, buffer.count, 0)
            if count >= 0 { return count }
            let error = errno
            switch error {
            case EINTR:
                continue
            case EAGAIN, EWOULDBLOCK:
                try self.waitUntil(POLLIN, deadline: deadline)
            case ECONNRESET:
                throw SocketIOError.closed
            default:
                throw DaemonError(
                    .invalidResponse,
                    "reading from \(self.path) failed: \(Self.errorText(error))",
                    socketPath: self.path,
                    osError: error
                )
            }
        }
    }

    // MARK: - Waiting

    /// Waits in `poll(2)` until `event` or the deadline: one call, no polling loop (nothing else can end the wait).
    private func waitUntil(_ event: Int32, deadline: Deadline) throws {
        while true {
            try Self.check(deadline: deadline, path: self.path)
            var descriptor = pollfd(fd: self.descriptor, events: Int16(event), revents: 0)
            let ready = poll(&descriptor, 1, deadline.pollMilliseconds)
            if ready > 0 { return }
            if ready < 0 && errno != EINTR {
                let error = errno
                throw DaemonError(
                    .invalidResponse,
                    "waiting on \(self.path) failed: \(Self.errorText(error))",
                    socketPath: self.path,
                    osError: error
                )
            }
        }
    }

    private static func check(deadline: Deadline, path: String) throws {
        if deadline.hasPassed {
            throw DaemonError(
                .timedOut,
                "no answer from \(path) within \(deadline.timeoutDescription)",
                socketPath: path
            )
        }
    }

    private static func closeDescriptor(_ descriptor: Int32) {
        #if canImport(Glibc)
        _ = Glibc.close(descriptor)
        #else
        _ = Darwin.close(descriptor)
        #endif
    }

    // MARK: - Errors

    static func errorText(_ error: Int32) -> String {
        String(cString: strerror(error))
    }

    static func cannotConnect(_ path: String, kind: SocketKind, errno error: Int32) -> DaemonError {
        DaemonError(.cannotConnect, kind.cannotConnectMessage(path, errno: error), socketPath: path, osError: error)
    }
}

/// A socket-level event the connection handles itself (a kept-alive connection closed under it).
enum SocketIOError: Error {
    case closed
}
