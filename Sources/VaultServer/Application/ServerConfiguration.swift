import NIOCore
import NIOPosix
import PersonioClient
import TokenBroker
import VaultCore

/// Everything ``buildApplication(configuration:logger:)`` needs.
public struct ServerConfiguration: Sendable {
    /// The database and key file.
    public var vault: VaultConfiguration
    /// Where to bind the app socket (mode 0666: callers are told apart by peer credentials).
    public var appSocketPath: String
    /// Where to bind the admin socket (mode 0600, or 0660 with ``adminGroup``).
    public var adminSocketPath: String
    /// `--admin-group`: a group whose members may use the admin socket.
    public var adminGroup: String?
    /// Sockets passed by systemd, by name (`app`, `admin`); they take precedence over the paths.
    public var inheritedSockets: [String: Int32]
    /// Where to send systemd notifications; nil for none.
    public var notify: SystemdNotifier.Configuration?
    /// Shut down gracefully on SIGTERM and SIGINT. Tests that run the application in-process turn it off.
    public var handlesSignals: Bool
    /// How long requests in progress may take to finish at shutdown.
    public var drainTimeout: Duration
    /// How long a token exchange with Personio may take, connecting included (`--token-timeout`).
    public var tokenTimeout: Duration
    /// How long a proxied request may wait for Personio's response head (`--proxy-timeout`).
    public var proxyTimeout: Duration
    /// Proxied requests one uid may have in flight at once (`--proxy-max-per-uid`); a request past it is refused with
    /// 429 `rate_limited` before anything is sent upstream.
    public var proxyMaxPerUID: Int
    /// Caps on open connections (`--max-connections-per-uid`, `--max-connections`, `--reserved-descriptors`).
    public var connectionLimits: ConnectionLimits
    /// Request-head, body and idle time-outs (`--request-head-timeout`, `--body-timeout`, `--idle-timeout`).
    public var connectionTimeouts: ConnectionTimeouts
    /// The event loops serving the sockets.
    public var eventLoopGroup: any EventLoopGroup

    /// Connections the proxy keeps to each upstream host on each event loop, busy or idle. Room for
    /// eight callers at the default ``proxyMaxPerUID`` at once; token exchanges have a pool of their own.
    public static let proxyConnectionsPerHost = 64

    /// - Parameters:
    ///   - vault: The database and key file.
    ///   - appSocketPath: The app socket's path.
    ///   - adminSocketPath: The admin socket's path.
    ///   - adminGroup: The admin group's name, if any.
    ///   - inheritedSockets: Sockets from ``SocketActivation/take()``.
    ///   - notify: From ``SystemdNotifier/Configuration/fromProcessEnvironment()``.
    ///   - handlesSignals: Whether SIGTERM and SIGINT shut the application down.
    ///   - drainTimeout: The grace period for requests in progress at shutdown.
    ///   - tokenTimeout: The limit for one token exchange with Personio.
    ///   - proxyTimeout: The limit for a proxied request's response head.
    ///   - proxyMaxPerUID: The cap on each uid's proxied requests in flight.
    ///   - connectionLimits: Caps on open connections.
    ///   - connectionTimeouts: Time-outs of each connection.
    ///   - eventLoopGroup: NIO's shared group unless given.
    public init(
        vault: VaultConfiguration,
        appSocketPath: String,
        adminSocketPath: String,
        adminGroup: String? = nil,
        inheritedSockets: [String: Int32] = [:],
        notify: SystemdNotifier.Configuration? = nil,
        handlesSignals: Bool = true,
        drainTimeout: Duration = .seconds(10),
        tokenTimeout: Duration = PersonioAuthClient.defaultTimeout,
        proxyTimeout: Duration = PersonioProxy.defaultTimeout,
        proxyMaxPerUID: Int = ProxyAdmission.defaultLimitPerUID,
        connectionLimits: ConnectionLimits = .defaults,
        connectionTimeouts: ConnectionTimeouts = .defaults,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.vault = vault
        self.appSocketPath = appSocketPath
        self.adminSocketPath = adminSocketPath
        self.adminGroup = adminGroup
        self.inheritedSockets = inheritedSockets
        self.notify = notify
        self.handlesSignals = handlesSignals
        self.drainTimeout = drainTimeout
        self.tokenTimeout = tokenTimeout
        self.proxyTimeout = proxyTimeout
        self.proxyMaxPerUID = proxyMaxPerUID
        self.connectionLimits = connectionLimits
        self.connectionTimeouts = connectionTimeouts
        self.eventLoopGroup = eventLoopGroup
    }
}
