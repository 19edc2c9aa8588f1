import Synchronization
import VaultLocks

/// A committed change of one connection, as the vault publishes it.
public struct ConnectionChange: Sendable, Equatable {
    public enum Kind: String, Sendable {
        case created, edited, disabled, enabled, reset, disconnected, needsReset, grantsChanged

        /// Whether the change withdrew the connection's handed-out tokens (the vault moved them to pending revocation
        /// in the change's own transaction).
        public var withdrawsTokens: Bool {
            switch self {
            case .disabled, .reset, .disconnected, .edited, .needsReset: true
            case .created, .enabled, .grantsChanged: false
            }
        }
    }

    public var id: String
    public var kind: Kind
    /// The revision after the change (nil after a disconnect).
    public var revision: Int64?

    public init(id: String, kind: Kind, revision: Int64?) {
        self.id = id
        self.kind = kind
        self.revision = revision
    }
}

/// The vault's committed changes, in commit order, for the layers above it to read (DESIGN §2: data flows one way;
/// the vault never calls up into the token broker).
///
/// Two ways to read it, used together by the broker:
/// - `changes(after:)` pulls what was published after a sequence number. It is synchronous and cheap, so a reader
///   can check `latest` on its hot path and catch up before it answers: a change acknowledged to an admin is seen by
///   every request that starts after the acknowledgement, without waiting for a background task's turn.
/// - `updates()` is an `AsyncStream` that yields each sequence number as it is published, to wake a reader that
///   has background work to do (the revoker) without polling.
///
/// The feed keeps the newest `capacity` changes; a reader that fell further behind is told so (`.gap`) and must
/// forget everything it derived from earlier changes.
public final class ChangeFeed: Sendable {
    /// What `changes(after:)` found.
    public enum Batch: Sendable, Equatable {
        /// The changes after the given sequence number, oldest first, each with its own sequence number.
        case changes([Published])
        /// Changes after the given sequence number are no longer kept: start again from `latest`.
        case gap(latest: UInt64)
    }

    /// One change with its sequence number (1, 2, 3, … in commit order).
    public struct Published: Sendable, Equatable {
        public var sequence: UInt64
        public var change: ConnectionChange
    }

    struct State {
        var recent: [Published] = []
        var subscribers: [Int: AsyncStream<UInt64>.Continuation] = [:]
        var nextSubscriber = 0
    }

    /// Changes kept for readers that are behind.
    public let capacity: Int
    private let sequence = Atomic<UInt64>(0)
    private let state = Locked(State())

    public init(capacity: Int = 4096) {
        precondition(capacity > 0)
        self.capacity = capacity
    }

    /// The sequence number of the newest change; 0 before the first.
    public var latest: UInt64 { self.sequence.load(ordering: .acquiring) }

    /// The changes published after `sequence`, or `.gap` when some of them are no longer kept.
    public func changes(after sequence: UInt64) -> Batch {
        self.state.withLock { state in
            let latest = self.sequence.load(ordering: .relaxed)
            guard sequence < latest else { return .changes([]) }
            guard let first = state.recent.first, first.sequence <= sequence + 1 else { return .gap(latest: latest) }
            let start = Int(sequence + 1 - first.sequence)
            return .changes(Array(state.recent[start...]))
        }
    }

    /// A stream of the sequence numbers published from now on. It ends when the consuming task is cancelled.
    public func updates() -> AsyncStream<UInt64> {
        let (stream, continuation) = AsyncStream<UInt64>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let key = self.state.withLock { state in
            let key = state.nextSubscriber
            state.nextSubscriber += 1
            state.subscribers[key] = continuation
            return key
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.subscribers.removeValue(forKey: key) }
        }
        return stream
    }

    /// Publishes a committed change (the vault calls this after the change's transaction committed).
    func publish(_ change: ConnectionChange) {
        let subscribers = self.state.withLock { state -> [AsyncStream<UInt64>.Continuation] in
            let next = self.sequence.load(ordering: .relaxed) + 1
            state.recent.append(Published(sequence: next, change: change))
            if state.recent.count > self.capacity { state.recent.removeFirst(state.recent.count - self.capacity) }
            // Stored under the lock, so `changes(after:)` never sees a sequence number it does not hold yet.
            self.sequence.store(next, ordering: .releasing)
            return Array(state.subscribers.values)
        }
        let latest = self.latest
        for subscriber in subscribers { subscriber.yield(latest) }
    }
}
