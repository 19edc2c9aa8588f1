import Logging
import PersonioClient
import ServiceLifecycle
import VaultCore

/// The running daemon: the vault, both sockets and the systemd notifier in one `ServiceGroup`.
///
/// Built by ``buildApplication(configuration:logger:)``, which opens the vault and binds the sockets; ``run()``
/// serves until SIGTERM or SIGINT (or ``shutdown()``), drains, and closes the vault last.
public final class Application: Service, Sendable {
    /// The vault the routes call.
    public let vault: Vault
    let personio: PersonioAuthClient
    /// The proxy route's HTTP client (a pool apart from `personio`'s), closed with it after the last request.
    let proxy: PersonioProxy
    /// The app socket's path (meaningless when systemd passed the socket).
    public let appSocketPath: String
    /// The admin socket's path (meaningless when systemd passed the socket).
    public let adminSocketPath: String
    let serviceGroup: ServiceGroup
    let logger: Logger

    init(
        vault: Vault,
        personio: PersonioAuthClient,
        proxy: PersonioProxy,
        appSocketPath: String,
        adminSocketPath: String,
        serviceGroup: ServiceGroup,
        logger: Logger
    ) {
        self.vault = vault
        self.personio = personio
        self.proxy = proxy
        self.appSocketPath = appSocketPath
        self.adminSocketPath = adminSocketPath
        self.serviceGroup = serviceGroup
        self.logger = logger
    }

    /// Serves until shutdown, then closes both Personio clients and the vault, after every connection has closed.
    /// - Throws: The first error of a service, or of closing the vault.
    public func run() async throws {
        let outcome: Result<Void, any Error>
        do {
            try await self.serviceGroup.run()
            outcome = .success(())
        } catch {
            outcome = .failure(error)
        }
        await shutDown(personio: self.personio, proxy: self.proxy, logger: self.logger)
        do {
            try await self.vault.close()
        } catch {
            self.logger.error("closing the vault failed", metadata: ["error": "\(error)"])
            if case .success = outcome { throw error }
        }
        self.logger.info("stopped")
        try outcome.get()
    }

    /// Starts a graceful shutdown, as SIGTERM does.
    public func shutdown() async {
        await self.serviceGroup.triggerGracefulShutdown()
    }
}
