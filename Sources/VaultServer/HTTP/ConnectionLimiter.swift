import VaultLocks

/// How many connections the daemon keeps open, and for whom (DESIGN §10, docs/decisions.md "Caller identity and
/// connection limits").
public struct ConnectionLimits: Sendable, Equatable {
    /// Open connections one uid may hold on each socket (`--max-connections-per-uid`). uid 0 and the daemon's own uid
    /// are not limited.
    public var perUID: Int
    /// Open connections of unprivileged callers on both sockets together (`--max-connections`); nil: the descriptor
    /// limit less ``reservedDescriptors``. Admins on the admin socket are not counted: they are what the reserve is for.
    public var total: Int?
    /// Descriptors kept out of reach of unprivileged callers: for root and admins, the database, Personio calls and
    /// `/proc` reads (`--reserved-descriptors`).
    public var reservedDescriptors: Int

    public static let defaults = ConnectionLimits(perUID: 64, total: nil, reservedDescriptors: 256)

    /// - Parameters:
    ///   - perUID: The cap per uid and socket.
    ///   - total: The cap on unprivileged connections; nil to derive it from the descriptor limit.
    ///   - reservedDescriptors: Descriptors unprivileged callers can never take.
    public init(perUID: Int, total: Int?, reservedDescriptors: Int) {
        self.perUID = perUID
        self.total = total
        self.reservedDescriptors = reservedDescriptors
    }

    /// The cap on unprivileged connections given the soft descriptor limit (nil: unlimited).
    func totalCap(descriptorLimit: Int?) -> Int {
        let available = max(0, (descriptorLimit ?? Int(Int32.max)) - self.reservedDescriptors)
        return min(self.total ?? available, available)
    }
}

/// Counts open connections at accept and refuses those over a cap. One per daemon, shared by both sockets.
final class ConnectionLimiter: Sendable {
    /// Who a connection belongs to, as far as the caps go.
    enum Standing: Sendable, Equatable {
        /// uid 0 or the daemon's uid: never refused here.
        case privileged
        /// An admin on the admin socket: only the per-uid cap.
        case admin
        /// Everyone else: the per-uid cap and the total.
        case unprivileged
    }

    /// Why a connection was refused.
    enum Refusal: Sendable, Equatable {
        case perUID
        case total
    }

    /// What an admitted connection gives back when it closes.
    struct Ticket: Sendable, Equatable {
        var socket: String
        var uid: UInt32
        var countsTowardTotal: Bool
        var countsTowardUID: Bool
    }

    private struct Key: Hashable {
        var socket: String
        var uid: UInt32
    }

    private struct State {
        var perUID: [Key: Int] = [:]
        var total = 0
    }

    let perUID: Int
    let total: Int
    private let state = Locked(State())

    /// - Parameters:
    ///   - perUID: Connections per uid and socket.
    ///   - total: Unprivileged connections on both sockets.
    init(perUID: Int, total: Int) {
        self.perUID = perUID
        self.total = total
    }

    /// Admits a connection, or says which cap it hits.
    func admit(socket: String, uid: UInt32, standing: Standing) -> Result<Ticket, ConnectionLimiterRefusal> {
        if standing == .privileged {
            return .success(Ticket(socket: socket, uid: uid, countsTowardTotal: false, countsTowardUID: false))
        }
        let key = Key(socket: socket, uid: uid)
        return self.state.withLock { state in
            let mine = state.perUID[key, default: 0]
            guard mine < self.perUID else { return .failure(ConnectionLimiterRefusal(.perUID)) }
            let countsTowardTotal = standing == .unprivileged
            if countsTowardTotal {
                guard state.total < self.total else { return .failure(ConnectionLimiterRefusal(.total)) }
                state.total += 1
            }
            state.perUID[key] = mine + 1
            return .success(
                Ticket(socket: socket, uid: uid, countsTowardTotal: countsTowardTotal, countsTowardUID: true)
            )
        }
    }

    /// Gives back what ``admit(socket:uid:standing:)`` counted.
    func release(_ ticket: Ticket) {
        guard ticket.countsTowardUID else { return }
        let key = Key(socket: ticket.socket, uid: ticket.uid)
        self.state.withLock { state in
            let remaining = state.perUID[key, default: 1] - 1
            state.perUID[key] = remaining > 0 ? remaining : nil
            if ticket.countsTowardTotal { state.total -= 1 }
        }
    }

    /// Open connections counted toward the total, and those of `uid` on `socket`.
    func counts(socket: String, uid: UInt32) -> (total: Int, uid: Int) {
        self.state.withLock { ($0.total, $0.perUID[Key(socket: socket, uid: uid), default: 0]) }
    }
}

/// A connection refused at accept because a cap is reached; it is closed at once, before anything is read.
struct ConnectionLimiterRefusal: Error, Sendable, Equatable, CustomStringConvertible {
    var reason: ConnectionLimiter.Refusal

    init(_ reason: ConnectionLimiter.Refusal) {
        self.reason = reason
    }

    var description: String {
        switch self.reason {
        case .perUID: "too many connections from this uid"
        case .total: "too many connections"
        }
    }
}
