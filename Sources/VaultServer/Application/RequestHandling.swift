import Logging
import PersonioClient
import TokenBroker
import VaultAPI
import VaultCore
import VaultMetrics

/// The token broker over a vault and both sockets' dispatchers, with their route tables and handlers: what
/// ``buildApplication(configuration:logger:)`` serves on the sockets and ``InProcessServer`` on in-memory channels,
/// built in one place so that the fuzz harness exercises exactly the daemon's request handling.
struct RequestHandling {
    let broker: TokenBroker
    let admin: RequestDispatcher
    let app: RequestDispatcher

    /// - Parameters:
    ///   - vault: The open vault.
    ///   - personio: The client for token exchanges, refreshes, verifies and revocations.
    ///   - proxy: The proxy route's HTTP clients.
    ///   - proxyTimeout: How long a proxied request may wait for Personio's response head.
    ///   - proxyLimitPerUID: Proxied requests one uid may have in flight at once.
    ///   - metrics: The server's metrics (the broker's are made from its factory).
    ///   - authorizeAdmin: Who may use the admin socket's routes.
    ///   - adminLogger: The admin dispatcher's logger.
    ///   - appLogger: The app dispatcher's logger.
    ///   - logger: The broker's logger.
    init(
        vault: Vault,
        personio: PersonioAuthClient,
        proxy: PersonioProxy,
        proxyTimeout: Duration,
        proxyLimitPerUID: Int = ProxyAdmission.defaultLimitPerUID,
        metrics: ServerMetrics,
        authorizeAdmin: @escaping @Sendable (Caller) -> Bool,
        adminLogger: Logger,
        appLogger: Logger,
        logger: Logger
    ) {
        self.broker = TokenBroker(
            vault: vault,
            auth: personio,
            proxy: proxy,
            proxyTimeout: proxyTimeout,
            proxyLimitPerUID: proxyLimitPerUID,
            logger: logger,
            metrics: BrokerMetrics(factory: metrics.factory)
        )
        let brokerRoutes = BrokerRoutes(broker: self.broker)
        self.admin = RequestDispatcher(
            socket: "admin",
            router: Router(
                .admin,
                handlers: Router.merged(
                    AdminRoutes(vault: vault, metrics: metrics).handlers,
                    brokerRoutes.adminHandlers
                )
            ),
            authorize: authorizeAdmin,
            metrics: metrics,
            logger: adminLogger
        )
        self.app = RequestDispatcher(
            socket: "app",
            router: Router(.app, handlers: Router.merged([.appHealth: HealthRoute.action], brokerRoutes.appHandlers)),
            metrics: metrics,
            logger: appLogger
        )
    }
}
