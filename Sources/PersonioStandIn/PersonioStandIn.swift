import NIOCore
import NIOHTTP1
import NIOPosix
import VaultLocks

/// A stand-in for Personio's authentication API (and a few protected resources), served over real HTTP/1.1 on
/// 127.0.0.1 and a free port, for tests and benchmarks. It never listens on another address.
///
/// It behaves like Personio as described in the project's notes: v2 `POST /v2/auth/token` (form body only,
/// `client_credentials` only, `invalid_client` / `invalid_scope` … as `application/problem+json`), v1 `POST /v1/auth`
/// (JSON or form body, 403 for credentials in the query string), `POST /v2/auth/revoke`, tokens stable per
/// credential pair and scope set while valid, and protected resources that check the bearer token:
/// `/v2/persons…` and `/v2/webhooks…` (a token holds exactly the scopes it was asked for; reading needs
/// `personio:<resource>:read`, writing `…:write`, else 403 "Insufficient access scope"), `GET /v1/company/employees`
/// and `GET /v1/recruiting/applications`. Failures, latency, token lifetime and a rate
/// limit can be injected; every call is counted and recorded.
///
/// Use only fake credentials with it ("fake-client-id-1"). Call ``shutdown()`` when done, or use
/// ``withStandIn(group:_:)``.
///
/// Every stand-in of a process serves on one event loop group, `MultiThreadedEventLoopGroup.singleton` unless
/// given another: a test run starts hundreds of them, and a group each left hundreds of idle threads behind.
public final class PersonioStandIn: Sendable {
    /// Scopes a client gets when registered without a list.
    public static let defaultScopes = [
        "personio:persons:read", "personio:persons:write", "personio:webhooks:read", "personio:recruiting:read",
    ]

    /// `http://127.0.0.1:PORT`, to use as a connection's base URL.
    public let baseURL: String
    /// The port the stand-in listens on.
    public let port: Int

    private let core: StandInCore
    private let channel: any Channel
    private let connections: StandInConnections
    private let isShutDown = Locked(false)

    private init(core: StandInCore, channel: any Channel, connections: StandInConnections, port: Int) {
        self.core = core
        self.connections = connections
        self.channel = channel
        self.port = port
        self.baseURL = "http://127.0.0.1:\(port)"
    }

    // MARK: - Lifecycle

    /// Starts a stand-in on 127.0.0.1 and a port the system picks.
    ///
    /// - Parameter group: The event loops it serves on; the caller keeps them (``shutdown()`` does not shut
    ///   them down).
    /// - Returns: The running stand-in.
    /// - Throws: When the socket cannot be bound.
    public static func start(
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> PersonioStandIn {
        let core = StandInCore()
        let connections = StandInConnections()
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    connections.add(channel)
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(StandInHTTPHandler(core: core))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        guard let port = channel.localAddress?.port else {
            try? await channel.close()
            throw StandInError(.bind, "the stand-in's socket has no local port")
        }
        return PersonioStandIn(core: core, channel: channel, connections: connections, port: port)
    }

    /// Starts a stand-in on the shared group (see ``start(group:)``).
    ///
    /// - Parameter threads: Ignored: kept for callers written when each stand-in had a group of its own. The
    ///   shared group has one thread per core.
    /// - Returns: The running stand-in.
    /// - Throws: When the socket cannot be bound.
    public static func start(threads: Int) async throws -> PersonioStandIn {
        try await Self.start()
    }

    /// Runs `body` with a fresh stand-in and shuts it down afterwards, whether `body` returns or throws.
    ///
    /// - Parameters:
    ///   - group: The event loops it serves on (see ``start(group:)``).
    ///   - body: What to do with the stand-in.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` or starting throws.
    public static func withStandIn<Result>(
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        _ body: (PersonioStandIn) async throws -> Result
    ) async throws -> Result {
        let standIn = try await PersonioStandIn.start(group: group)
        let result: Result
        do {
            result = try await body(standIn)
        } catch {
            try? await standIn.shutdown()
            throw error
        }
        try await standIn.shutdown()
        return result
    }

    /// Stops listening and closes every connection, including requests held open by ``Failure/hang``; the event
    /// loops stay (they are shared). Calling it again does nothing.
    ///
    /// - Throws: Nothing today; kept throwing for callers.
    public func shutdown() async throws {
        let alreadyDown = self.isShutDown.withLock { isShutDown in
            defer { isShutDown = true }
            return isShutDown
        }
        guard !alreadyDown else { return }
        try? await self.channel.close()
        // Their connections are closed next: nothing would read the answers.
        self.core.dropHeld()
        await self.connections.closeAll()
    }

    // MARK: - Clients and credentials

    /// Registers (or replaces) a client; its earlier tokens stop working.
    ///
    /// - Parameters:
    ///   - clientID: A fake client id.
    ///   - clientSecret: A fake client secret.
    ///   - scopes: What the client may ask for; an unknown one is answered `invalid_scope`.
    ///   - api: Which authentication endpoints accept it.
    public func register(
        clientID: String,
        clientSecret: String,
        scopes: [String] = PersonioStandIn.defaultScopes,
        api: API = .both
    ) {
        self.core.withState { $0.register(clientID: clientID, secret: clientSecret, scopes: scopes, api: api) }
    }

    /// Gives a client a new secret, like a reset on Personio's side: the old secret and its tokens stop working.
    ///
    /// - Parameters:
    ///   - clientID: A registered client id.
    ///   - newSecret: Its new fake secret.
    public func changeSecret(clientID: String, newSecret: String) {
        self.core.withState { $0.changeSecret(clientID: clientID, newSecret: newSecret) }
    }

    /// Deletes a client, like a disconnect on Personio's side; its tokens stop working.
    ///
    /// - Parameter clientID: The client id to forget.
    public func remove(clientID: String) {
        self.core.withState { $0.remove(clientID: clientID) }
    }

    /// Accepts `key` as a recruiting key for `companyID` on `GET /v1/recruiting/applications`.
    ///
    /// - Parameters:
    ///   - key: A fake recruiting key.
    ///   - companyID: The company id it belongs to (sent as `X-Company-Id`).
    public func registerRecruitingKey(_ key: String, companyID: String) {
        self.core.withState { $0.recruitingKeys[key] = companyID }
    }

    // MARK: - Behaviour

    /// Waits `latency` before every answer (also before an injected failure).
    ///
    /// - Parameter latency: The delay; `.zero` for none.
    public func setLatency(_ latency: Duration) {
        self.core.withState { $0.latency = latency }
    }

    /// Holds the answers to `endpoints` from now on until ``releaseHeldAnswers()``: each request takes effect as it
    /// arrives (counted, recorded, a token issued), and its answer waits. Lets a test change something while a call
    /// is known to be under way, instead of racing a latency.
    ///
    /// - Parameter endpoints: Whose answers to hold; empty to hold none (the answers held so far still wait).
    public func holdAnswers(on endpoints: Set<Endpoint>) {
        self.core.hold(endpoints)
    }

    /// Stops holding answers and sends every answer held (each after the latency, as usual).
    public func releaseHeldAnswers() {
        self.core.release()
    }

    /// How many answers are held now (``holdAnswers(on:)``).
    public var heldAnswers: Int { self.core.heldCount }

    /// Makes calls to `endpoints` fail as `failure`, for the next `times` calls or until changed.
    ///
    /// - Parameters:
    ///   - failure: What to answer instead; `.none` restores normal answers.
    ///   - times: How many calls fail; `nil` for all until changed.
    ///   - endpoints: Where it applies; the authentication endpoints by default.
    public func setFailure(_ failure: Failure, times: Int? = nil, on endpoints: Set<Endpoint> = Endpoint.auth) {
        self.core.withState { state in
            if failure == .none || times.map({ $0 <= 0 }) == true {
                state.failureRule = nil
            } else {
                state.failureRule = StandInState.FailureRule(failure: failure, remaining: times, endpoints: endpoints)
            }
        }
    }

    /// The `expires_in` of tokens issued from now on; a token is reused only while it is valid.
    ///
    /// - Parameter seconds: Lifetime in seconds (Personio: 86400).
    public func setTokenLifetime(seconds: Int) {
        self.core.withState { $0.tokenLifetimeSeconds = seconds }
    }

    /// The v2 `error` code for wrong credentials (default `invalid_client`).
    ///
    /// - Parameter code: The code to answer.
    public func setRejectionCode(_ code: RejectionCode) {
        self.core.withState { $0.rejectionCode = code }
    }

    /// Limits token requests (v1 and v2) per client id to `limit` per sliding `window`, answering 429 with
    /// `Retry-After` past it (Personio: 150 per minute for v2). Off by default.
    ///
    /// - Parameters:
    ///   - limit: Requests allowed per window; `nil` turns the limit off.
    ///   - window: The window's length.
    public func setRateLimit(_ limit: Int?, window: Duration = .seconds(60)) {
        self.core.withState { state in
            state.rateLimit = limit.map { StandInState.RateLimit(limit: $0, window: window) }
            state.tokenCallTimes = [:]
        }
    }

    // MARK: - Observation

    /// How many calls reached `endpoint` since the start or the last ``resetCounts()``, failed ones included.
    ///
    /// - Parameter endpoint: The endpoint to count.
    /// - Returns: The number of calls.
    public func calls(_ endpoint: Endpoint) -> Int {
        self.core.withState { $0.counts[endpoint, default: 0] }
    }

    /// Calls to every endpoint together.
    public var totalCalls: Int {
        self.core.withState { $0.counts.values.reduce(0, +) }
    }

    /// Sets every count back to zero and forgets the recorded requests.
    public func resetCounts() {
        self.core.withState { state in
            state.counts = [:]
            state.recorded = []
        }
    }

    /// Every token issued so far, oldest first.
    public var issuedTokens: [String] {
        self.core.withState { $0.issuedTokens }
    }

    /// Whether `token` was revoked (by the revoke endpoint, a secret change or a removal).
    ///
    /// - Parameter token: An access token.
    /// - Returns: `true` if it was issued here and revoked since.
    public func isRevoked(token: String) -> Bool {
        self.core.withState { $0.isRevoked(token) }
    }

    /// Whether `token` would be accepted by the protected resources now.
    ///
    /// - Parameter token: An access token.
    /// - Returns: `true` if it was issued here, is not revoked and has not expired.
    public func isValid(token: String) -> Bool {
        self.core.withState { $0.isValid(token, now: $0.now) }
    }

    /// Moves the stand-in's clock forward: tokens expire and rate-limit windows slide as if `duration` had passed,
    /// so a test of expiry or of a window does not wait it out. Injected latency still takes real time.
    ///
    /// - Parameter duration: How far (not negative).
    public func advanceClock(by duration: Duration) {
        precondition(duration >= .zero, "the stand-in's clock only moves forward")
        self.core.withState { $0.clockOffset += duration }
    }

    /// The most recent request, to `endpoint` if given.
    ///
    /// - Parameter endpoint: Only requests to this endpoint, or any.
    /// - Returns: The request, if there was one.
    public func lastRequest(_ endpoint: Endpoint? = nil) -> RecordedRequest? {
        self.core.withState { state in state.recorded.last { endpoint == nil || $0.endpoint == endpoint } }
    }

    /// The recorded requests (at most the last 1000), oldest first, to `endpoint` if given.
    ///
    /// - Parameter endpoint: Only requests to this endpoint, or all.
    /// - Returns: The requests.
    public func requests(_ endpoint: Endpoint? = nil) -> [RecordedRequest] {
        self.core.withState { state in state.recorded.filter { endpoint == nil || $0.endpoint == endpoint } }
    }
}

/// A failure of the stand-in itself (not an injected one).
public struct StandInError: Error, Sendable, CustomStringConvertible, Equatable {
    /// What went wrong.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case bind
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The listening socket could not be set up.
        public static let bind = Code(.bind)

        public var description: String { "\(self.value)" }
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { self.message }

    /// Equal by code, as the house style asks.
    public static func == (lhs: StandInError, rhs: StandInError) -> Bool { lhs.code == rhs.code }
}
