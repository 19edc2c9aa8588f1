import Logging
import Synchronization
import VaultAPI
import VaultCore
import VaultLocks

/// The broker's part of the access trail (DESIGN §10): which caller identities received a connection's tokens
/// (`token.issued`) and which requests policy refused (`proxy.refused`), written to the hash-chained audit trail
/// through the vault.
///
/// Nothing here writes on the request path: the routes hand a record to ``AccessTrail`` (a lock and an append), and
/// ``run(vault:logger:)``, a task of the broker's `run()`, writes it. Every row is a transaction with an fsync, so
/// two rules keep a busy or hostile caller from making the daemon write per request:
///
/// - `token.issued` is recorded once per identity (uid, unit, executable) and token; the entry remembers who it has
///   recorded for its current token (``TokenBroker/Entry/noteIssued(to:)``), and cached answers to them are counted
///   in metrics only.
/// - `proxy.refused` is coalesced: at most one row per caller identity, connection and reason per
///   ``coalescingWindow``. The first refusal writes a row at once; the refusals that follow inside the window are
///   counted and written as one row ("N more …") when the window has passed (``flush(at:)``, from the broker's
///   refresh loop). A caller looping on a refused request thus costs at most two rows per 10 s.
final class AccessTrail: Sendable {
    /// At most one `proxy.refused` row per caller identity, connection and reason opens in this time.
    static let coalescingWindow = Duration.seconds(10)
    /// Records waiting to be written; past this many (the writer far behind), new ones are dropped and logged.
    static let bufferLimit = 4096

    enum Record: Sendable {
        case issued(connection: String, actor: AuditActor, detail: String)
        case refused(connection: String, actor: AuditActor, reason: String, detail: String)
    }

    private struct RefusalKey: Hashable {
        var connection: String
        var uid: UInt32
        var unit: String?
        var exe: String?
        var reason: VaultError.Code
    }

    private struct RefusalWindow {
        var opened: ContinuousClock.Instant
        var openedWall: String
        /// Refusals after the one that opened the window, not yet written.
        var suppressed: Int
        var actor: AuditActor
        var identity: String
    }

    private let records: AsyncStream<Record>
    private let continuation: AsyncStream<Record>.Continuation
    private let windows = Locked<[RefusalKey: RefusalWindow]>([:])

    init() {
        (self.records, self.continuation) = AsyncStream.makeStream(
            of: Record.self,
            bufferingPolicy: .bufferingOldest(Self.bufferLimit)
        )
    }

    // MARK: - Recording

    /// `caller` receives `token` of `connection` for the first time (its identity, for this token).
    func issued(connection: String, caller: Caller, rule: MatchedRule?, token: CachedToken) {
        var detail = "access token handed to \(Self.identity(caller))"
        if let rule { detail += " (rule \(rule.label))" }
        detail += "; valid until \(Timestamp.format(secondsSince1970: token.expiresAtWall))"
        if let scope = token.scope { detail += "; scope \(Self.printable(scope, limit: 512))" }
        self.submit(.issued(connection: connection, actor: caller.auditActor, detail: detail))
    }

    /// A request of `caller` for `connection` was refused by policy with `error` (`not_allowed`, `rate_limited`,
    /// `token_not_exportable`); `request` says what it asked for (`GET /v2/persons`, `token`).
    func refused(
        connection: String,
        caller: Caller,
        error: VaultError,
        request: String,
        rule: MatchedRule?,
        at now: ContinuousClock.Instant
    ) {
        let key = RefusalKey(
            connection: connection,
            uid: caller.uid,
            unit: caller.unit,
            exe: caller.exe,
            reason: error.code
        )
        let identity = Self.identity(caller)
        let (opened, flushed) = self.windows.withLock { windows -> (Bool, Record?) in
            if var window = windows[key], now - window.opened < Self.coalescingWindow {
                window.suppressed += 1
                windows[key] = window
                return (false, nil)
            }
            let flushed = windows[key].flatMap { Self.summary(of: $0, connection: connection, reason: error.code) }
            windows[key] = RefusalWindow(
                opened: now,
                openedWall: Timestamp.now(),
                suppressed: 0,
                actor: caller.auditActor,
                identity: identity
            )
            return (true, flushed)
        }
        if let flushed { self.submit(flushed) }
        guard opened else { return }
        var detail = "\(Self.printable(request, limit: 300)) by \(identity)"
        if let rule { detail += " (rule \(rule.label))" }
        detail += " refused: \(error.message)"
        detail += "; further refusals of this caller for this reason within 10 s are counted in one row"
        self.submit(
            .refused(connection: connection, actor: caller.auditActor, reason: error.code.rawValue, detail: detail)
        )
    }

    /// Writes the counts of windows that have passed and forgets them (called from the broker's refresh loop).
    func flush(at now: ContinuousClock.Instant) {
        let due = self.windows.withLock { windows -> [Record] in
            var due: [Record] = []
            for (key, window) in windows where now - window.opened >= Self.coalescingWindow {
                if let record = Self.summary(of: window, connection: key.connection, reason: key.reason) {
                    due.append(record)
                }
                windows.removeValue(forKey: key)
            }
            return due
        }
        for record in due { self.submit(record) }
    }

    private static func summary(of window: RefusalWindow, connection: String, reason: VaultError.Code) -> Record? {
        guard window.suppressed > 0 else { return nil }
        return .refused(
            connection: connection,
            actor: window.actor,
            reason: reason.rawValue,
            detail: "\(window.suppressed) more request(s) by \(window.identity) refused (\(reason.rawValue)) "
                + "in the 10 s after \(window.openedWall)"
        )
    }

    private func submit(_ record: Record) {
        if case .dropped = self.continuation.yield(record) {
            // Reported by the writer's log line below when it catches up; nothing else can be done without blocking.
            self.dropped.add(1, ordering: .relaxed)
        }
    }

    private let dropped = Atomic<Int>(0)

    // MARK: - Writing

    /// Writes records as they come until cancelled (a task of the broker's `run()`).
    func run(vault: Vault, logger: Logger) async {
        for await record in self.records {
            let dropped = self.dropped.exchange(0, ordering: .relaxed)
            if dropped > 0 {
                logger.error(
                    "access trail records dropped: the audit writer fell behind",
                    metadata: ["count": "\(dropped)"]
                )
            }
            do {
                switch record {
                case .issued(let connection, let actor, let detail):
                    try await vault.recordTokenIssued(connection, to: actor, detail: detail)
                case .refused(let connection, let actor, let reason, let detail):
                    try await vault.recordProxyRefused(connection, by: actor, reason: reason, detail: detail)
                }
            } catch {
                logger.error("cannot write an access trail row", metadata: ["error": "\(error)"])
            }
        }
    }

    // MARK: - Wording

    /// The identity DESIGN §10 records: uid, unit, executable (and its hash when known), printable.
    static func identity(_ caller: Caller) -> String {
        var text = "uid \(caller.uid)"
        text += ", unit " + (caller.unit.map { Self.printable($0, limit: 256) } ?? "(none)")
        text += ", exe " + (caller.exe.map { Self.printable($0, limit: 1024) } ?? "(unknown)")
        if let hash = caller.exeSHA256 { text += ", exe_sha256 " + Self.printable(hash, limit: 64) }
        return text
    }

    /// `value` cut to `limit` characters, anything but printable ASCII as `?` (paths and units are the caller's).
    static func printable(_ value: String, limit: Int) -> String {
        String(
            String.UnicodeScalarView(
                value.unicodeScalars.prefix(limit).map { $0.isASCII && $0.value >= 0x20 && $0.value < 0x7F ? $0 : "?" }
            )
        )
    }
}
