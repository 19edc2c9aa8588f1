import ServiceLifecycle
import TokenBroker
import VaultCore

/// The token broker's background work (refresh ahead of expiry, upstream revocation) as a service of the group;
/// it stops at graceful shutdown.
struct BrokerService: Service {
    let broker: TokenBroker

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await self.broker.run()
        }
    }
}
