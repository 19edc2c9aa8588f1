import Logging
import NIOCore
import ServiceLifecycle
import UnixSignals

#if canImport(Glibc)
import Glibc
#endif

/// Tells systemd how the daemon is doing (`sd_notify(3)`): `READY=1` once the sockets listen, `WATCHDOG=1` while the
/// event loops answer, `RELOADING=1` … `READY=1` around a reload on SIGHUP, `STOPPING=1` at shutdown. Without
/// `$NOTIFY_SOCKET` it still reloads on SIGHUP and otherwise waits for shutdown, so the daemon behaves the same with
/// and without systemd.
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
    /// What SIGHUP does (`systemctl reload`): re-reads what the daemon took from the system at start and returns the
    /// new `STATUS=` text. Nil: SIGHUP is only acknowledged.
    let reload: (@Sendable () async -> String)?
    let logger: Logger

    init(
        configuration: Configuration?,
        eventLoopGroup: any EventLoopGroup,
        status: String,
        reload: (@Sendable () async -> String)? = nil,
        logger: Logger
    ) {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.status = status
        self.reload = reload
        self.logger = logger
    }

    public func run() async throws {
        // Trapped before READY=1: systemd may send SIGHUP as soon as it has seen READY=1, and an untrapped SIGHUP
        // ends the process.
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        if let configuration = self.configuration {
            self.send("READY=1\nSTATUS=\(self.status)\nMAINPID=\(getpid())", to: configuration.socketPath)
        }
        try? await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await _ in hangups {
                        await self.reloadNow()
                    }
                }
                if let configuration = self.configuration, let interval = configuration.watchdogInterval {
                    group.addTask {
                        try? await self.watchdog(every: interval, socket: configuration.socketPath)
                    }
                }
                await group.next()
                group.cancelAll()
            }
        }
        if let configuration = self.configuration {
            self.send("STOPPING=1", to: configuration.socketPath)
        }
    }

    /// Sends `WATCHDOG=1` every `interval` while every event loop answers.
    private func watchdog(every interval: Duration, socket: String) async throws {
        let group = self.eventLoopGroup
        while true {
            try await Task.sleep(for: interval)
            // A stuck event loop never answers, no WATCHDOG=1 goes out, and systemd restarts the daemon.
            for loop in group.makeIterator() {
                try await loop.submit {}.get()
            }
            self.send("WATCHDOG=1", to: socket)
        }
    }

    /// One reload: `RELOADING=1` (with the monotonic time newer systemd versions ask for), the work, `READY=1`.
    func reloadNow() async {
        self.logger.info("reloading", metadata: ["systemd.signal": "SIGHUP"])
        if let configuration = self.configuration {
            self.send("RELOADING=1\nMONOTONIC_USEC=\(Self.monotonicMicroseconds())", to: configuration.socketPath)
        }
        let status = await self.reload?() ?? self.status
        if let configuration = self.configuration {
            self.send("READY=1\nSTATUS=\(status)", to: configuration.socketPath)
        }
        self.logger.info("reloaded")
    }

    static func monotonicMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1_000
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
        // Non-blocking: a receiver whose queue is full (max_dgram_qlen, 10 by default) costs this one message, never
        // a thread held in sendto until it reads, which could also hold up shutdown behind the watchdog.
        let descriptor = socket(
            AF_UNIX,
            Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue),
            0
        )
        guard descriptor >= 0 else { throw SystemCallError("socket", errno: errno) }
        defer { close(descriptor) }
        let payload = Array(message.utf8)
        let sent = Kernel.withUnixAddress(path) { address, length in
            payload.withUnsafeBytes {
                sendto(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), address, length)
            }
        }
        guard let sent else { throw SystemCallError("NOTIFY_SOCKET", errno: ENAMETOOLONG) }
        guard sent == payload.count else { throw SystemCallError("sendto(NOTIFY_SOCKET)", errno: errno) }
    }
}
