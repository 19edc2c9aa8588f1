import NIOCore
import VaultLocks

/// The stand-in's open connections, so that ``PersonioStandIn/shutdown()`` can close them itself: the event loops
/// are shared and stay up, so their shutdown no longer closes what is left.
final class StandInConnections: Sendable {
    private struct State {
        var channels: [ObjectIdentifier: any Channel] = [:]
        var isClosed = false
    }

    private let state = Locked(State())

    /// Tracks `channel` until it closes; closes it at once when the stand-in is shut down already.
    func add(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        let added = self.state.withLock { state in
            guard !state.isClosed else { return false }
            state.channels[id] = channel
            return true
        }
        guard added else {
            channel.close(promise: nil)
            return
        }
        channel.closeFuture.whenComplete { _ in
            _ = self.state.withLock { $0.channels.removeValue(forKey: id) }
        }
    }

    /// Closes every tracked connection and refuses new ones; returns once all are closed.
    func closeAll() async {
        let channels = self.state.withLock { state in
            state.isClosed = true
            return Array(state.channels.values)
        }
        for channel in channels {
            try? await channel.close()
        }
    }
}
