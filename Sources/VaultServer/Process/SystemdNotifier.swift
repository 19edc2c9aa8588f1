import Logging
import NIOCore
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#endif

/// Tells systemd how the daemon is doing (`sd_notify(3)`): `READY=1` once the sockets listen, `WATCHDOG=1` while the
/// event loops answer, `STOPPING=1` at shutdown. Without `$NOTIFY_SOCKET` it only waits for shutdown, so the daemon
/// behaves the same with and without systemd.
public struct SystemdNotifier: Service {
    /// Where and how often to notify.
    public struct Configuration: Sendable, Equatable {
        /// `$NOTIFY_SOCKET`: a path, or `@name` for Linux's abstract namespace.
        public var socketPath: String
        /// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, nil when the watchdog is off.
        public var watchdogInterval: Duration?

        public init(socketPath: String, watchdogInterval: Duration? = nil) {
            self.socketPath = socketPath
            self.watchdogInterval = watchdogInterval
        }

        /// The configuration systemd passes in `environment`, or nil when it passes none.
        ///
        /// `WATCHDOG_USEC` counts only when `WATCHDOG_PID` is absent or names `pid`, as `sd_watchdog_enabled(3)`
        /// specifies.
        public static func from(environment: [String: String], pid: Int32) -> Configuration? {
            guard let socket = environment["NOTIFY_SOCKET"], !socket.isEmpty else { return nil }
            var interval: Duration?
            if let text = environment["WATCHDOG_USEC"], let microseconds = Int64(text), microseconds > 0,
                environment["WATCHDOG_PID"].map({ Int32($0) == pid }) ?? true
            {
                interval = .microseconds(microseconds / 2)
            }
            return Configuration(socketPath: socket, watchdogInterval: interval)
        }

        /// The process's own configuration.
        public static func fromProcessEnvironment() -> Configuration? {
            Self.from(environment: ProcessEnvironment.current(), pid: getpid())
        }
    }

    let configuration: Configuration?
    /// The loops whose responsiveness the watchdog vouches for.
    let eventLoopGroup: any EventLoopGroup
    /// `STATUS=` text sent with `READY=1`.
    let status: String
    let logger: Logger

    init(configuration: Configuration?, eventLoopGroup: any EventLoopGroup, status: String, logger: Logger) {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.status = status
        self.logger = logger
    }

    public func run() async throws {
        guard let configuration = self.configuration else {
            try? await gracefulShutdown()
            return
        }
        self.send("READY=1\nSTATUS=\(self.status)\nMAINPID=\(getpid())", to: configuration.socketPath)
        if let interval = configuration.watchdogInterval {
            let group = self.eventLoopGroup
            try? await cancelWhenGracefulShutdown {
                while true {
                    try await Task.sleep(for: interval)
                    // A stuck event loop never answers, no WATCHDOG=1 goes out, and systemd restarts the daemon.
                    for loop in group.makeIterator() {
                        try await loop.submit {}.get()
                    }
                    self.send("WATCHDOG=1", to: configuration.socketPath)
                }
            }
        } else {
            try? await gracefulShutdown()
        }
        self.send("STOPPING=1", to: configuration.socketPath)
    }

    /// Sends one datagram; failures are logged, never fatal (systemd may be gone already at shutdown).
    func send(_ message: String, to path: String) {
        do {
            try Self.send(message, to: path)
            self.logger.trace("notified systemd", metadata: ["systemd.message": "\(message.prefix { $0 != "\n" })"])
        } catch {
            self.logger.warning("cannot notify systemd", metadata: ["error": "\(error)", "systemd.socket": "\(path)"])
        }
    }

    /// Sends `message` as one datagram to `path` (`@name`: abstract namespace).
    static func send(_ message: String, to path: String) throws(SystemCallError) {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity else {
            throw SystemCallError("NOTIFY_SOCKET", errno: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
        }
        // Abstract names are exactly as long as given; paths include their terminating NUL.
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes[0] == 0 ? 0 : 1))
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw SystemCallError("socket", errno: errno) }
        defer { close(descriptor) }
        let payload = Array(message.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                payload.withUnsafeBytes {
                    sendto(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), address, length)
                }
            }
        }
        guard sent == payload.count else { throw SystemCallError("sendto(NOTIFY_SOCKET)", errno: errno) }
    }
}
