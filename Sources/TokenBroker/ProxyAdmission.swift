import VaultCore
import VaultLocks

/// Caps how many proxied requests each caller, by uid, may have in flight at once.
///
/// The proxy's upstream connections are a shared, bounded pool: without a cap, one caller that opens many large
/// downloads and never reads them holds every connection to the host, and everyone else's requests wait for one
/// until they time out. With it, a caller past its share is refused at once (429 `rate_limited`, ``refusal``) before
/// anything is sent upstream, and the rest of the pool stays free for the others.
///
/// Every uid is capped, root included: the cap protects the upstream pool, which root's requests use like anyone's.
/// State is one dictionary uid → requests in flight, under a mutex; a uid's entry goes when its count reaches zero, so
/// the dictionary holds only uids with a request in flight. Admitting and releasing allocate nothing once the
/// dictionary's storage has grown to the number of uids proxying at once (a dictionary keeps its capacity when
/// entries are removed).
public final class ProxyAdmission: Sendable {
    /// The cap when none is configured (`connvaultd --proxy-max-per-uid`).
    public static let defaultLimitPerUID = 32
    /// The caps `connvaultd --proxy-max-per-uid` accepts.
    public static let limitRange: ClosedRange<Int> = 1...1024

    /// Proxied requests one uid may have in flight at once.
    public let limitPerUID: Int
    private let inFlight: Locked<[UInt32: Int]>

    /// - Parameter limitPerUID: Proxied requests one uid may have in flight at once; at least 1.
    public init(limitPerUID: Int) {
        precondition(limitPerUID >= 1, "a proxy admission limit must admit at least one request")
        self.limitPerUID = limitPerUID
        self.inFlight = Locked([:])
    }

    /// Takes one of `uid`'s slots, or returns nil when all of them are taken.
    ///
    /// - Parameter uid: The caller's uid (from its peer credentials).
    /// - Returns: A ticket that holds the slot until it is released, or nil: answer ``refusal`` and send nothing
    ///   upstream.
    public func admit(uid: UInt32) -> Ticket? {
        let limit = self.limitPerUID
        let admitted = self.inFlight.withLock { inFlight in
            // One hash lookup: the entry is created only when it is taken (a full uid already has one).
            Self.takeSlot(&inFlight[uid, default: 0], limit: limit)
        }
        return admitted ? Ticket(admission: self, uid: uid) : nil
    }

    private static func takeSlot(_ count: inout Int, limit: Int) -> Bool {
        guard count < limit else { return false }
        count += 1
        return true
    }

    /// The proxied requests of `uid` in flight now (for metrics and tests).
    public func inFlight(uid: UInt32) -> Int {
        self.inFlight.withLock { $0[uid] ?? 0 }
    }

    /// How many uids have a proxied request in flight now.
    var trackedUIDs: Int {
        self.inFlight.withLock { $0.count }
    }

    /// The answer to a caller ``admit(uid:)`` refused: 429 `rate_limited`, `Retry-After: 1` (a slot comes free as
    /// soon as one of the caller's own requests ends, so a short wait is the right advice).
    public var refusal: VaultError {
        VaultError(
            .rateLimited,
            "this caller already has \(self.limitPerUID) proxied requests in flight; retry when one has ended",
            retryAfter: 1
        )
    }

    fileprivate func release(uid: UInt32) {
        self.inFlight.withLock { inFlight in
            guard let count = inFlight[uid] else {
                assertionFailure("a proxy admission ticket was released for a uid with nothing in flight")
                return
            }
            if count > 1 {
                inFlight[uid] = count - 1
            } else {
                inFlight.removeValue(forKey: uid)
            }
        }
    }

    /// One admitted proxied request: holds one of its uid's slots until ``release()`` (or until the ticket is
    /// destroyed, whichever comes first).
    ///
    /// Not copyable, so there is exactly one holder and a slot is given back exactly once: ``release()`` frees it the
    /// first time and does nothing after; a ticket dropped without a release frees it then, so a path that forgets
    /// cannot shrink its caller's share for good. Keep the ticket (move it into whatever lives as long as the
    /// request) until the response has ended or failed or the caller has gone: dropping it early lets another request
    /// in.
    public struct Ticket: ~Copyable, Sendable {
        /// The uid whose slot this is.
        public let uid: UInt32
        private let admission: ProxyAdmission
        private var released: Bool

        fileprivate init(admission: ProxyAdmission, uid: UInt32) {
            self.admission = admission
            self.uid = uid
            self.released = false
        }

        /// Gives the slot back; later calls do nothing.
        public mutating func release() {
            guard !self.released else { return }
            self.released = true
            self.admission.release(uid: self.uid)
        }

        deinit {
            if !self.released { self.admission.release(uid: self.uid) }
        }
    }
}
