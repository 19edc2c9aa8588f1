import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import TestSupport
import Testing
import VaultLocks

@testable import PersonioClient

/// The proxy's own upstream client (`UpstreamClient`, `UpstreamConnection`) on real sockets: keep-alive, the
/// per-host cap and its waiters, every time-out, stale connections, redirects, TLS verification, cancellation and
/// shutdown, against small SwiftNIO servers on 127.0.0.1 that count what they see.
@Suite struct UpstreamClientTests {
    /// An obviously fake credential; no message or log line may contain it.
    static let token = "test-token-not-a-secret"
    /// The head time-out of requests that are not about it: far beyond any answer on a loaded machine.
    static let longTimeout = TimeScale.scaled(.seconds(30))

    // MARK: - Keep-alive and the cap

    @Test func sequentialRequestsShareOneKeptAliveConnection() async throws {
        try await self.withUpstream(answering: .ok) { upstream in
            try await self.withProxy { proxy, _ in
                for index in 0..<20 {
                    let response = try await Self.get(proxy, upstream.baseURL, path: "/v2/persons/\(index)")
                    #expect(response.status == 200)
                    #expect(try await Self.text(response) == "ok")
                }
            }
            #expect(upstream.requests.map(\.uri) == (0..<20).map { "/v2/persons/\($0)" })
            #expect(upstream.accepted == 1)
        }
    }

    @Test func theCapBoundsTheConnectionsAndWaitersAreServedInArrivalOrder() async throws {
        try await self.withUpstream(answering: .hold) { upstream in
            try await self.withProxy(Self.configuration(maximumConnectionsPerHost: 2)) { proxy, loop in
                let paths = (0..<5).map { "/v2/persons/\($0)" }
                let started = try await Self.start(proxy, on: loop, baseURL: upstream.baseURL, paths: paths)
                try #require(try await Self.eventually { upstream.heldCount == 2 })
                // One answer at a time: each frees a connection, which the request that has waited longest takes.
                for arrived in 3...5 {
                    upstream.release(1)
                    try #require(try await Self.eventually { upstream.requests.count == arrived }, "request \(arrived)")
                }
                upstream.release(.max)
                try #require(try await Self.eventually { started.allSatisfy { $0.sink.record.isDone } })
                for (_, sink) in started {
                    let record = sink.record
                    #expect(record.status == 200 && record.body == "released" && record.ended, "\(record)")
                }
            }
            let arrivals = upstream.requests.map(\.uri)
            #expect(Set(arrivals.prefix(2)) == ["/v2/persons/0", "/v2/persons/1"])
            #expect(Array(arrivals.dropFirst(2)) == ["/v2/persons/2", "/v2/persons/3", "/v2/persons/4"])
            #expect(upstream.accepted == 2)
        }
    }

    // MARK: - Time-outs

    @Test func theHeadTimeOutCoversWaitingForAConnection() async throws {
        try await self.withUpstream(answering: .hold) { upstream in
            try await self.withProxy(Self.configuration(maximumConnectionsPerHost: 1)) { proxy, loop in
                let held = try await Self.start(proxy, on: loop, baseURL: upstream.baseURL, paths: ["/v2/held"])
                try #require(try await Self.eventually { upstream.heldCount == 1 })
                let timeout = TimeScale.scaled(.milliseconds(500))
                let started = ContinuousClock.now
                let error = await #expect(throws: PersonioAuthError.self) {
                    _ = try await Self.get(proxy, upstream.baseURL, path: "/v2/waiting", timeout: timeout)
                }
                let elapsed = ContinuousClock.now - started
                #expect(error?.code == .unavailable)
                #expect(error?.message.contains("did not answer within") == true, "\(String(describing: error))")
                #expect(elapsed >= timeout * 0.9 && elapsed < TimeScale.scaled(.seconds(10)), "\(elapsed)")
                #expect(upstream.requests.map(\.uri) == ["/v2/held"], "the waiting request was never sent")
                #expect(!held[0].sink.record.isDone, "the held request is not affected")
                upstream.release(1)
                #expect(try await Self.eventually { held[0].sink.record.ended })
            }
            #expect(upstream.accepted == 1)
        }
    }

    @Test func anAnswerThatStopsHalfwayFailsAtTheReadTimeOut() async throws {
        try await self.withUpstream(answering: .partial) { upstream in
            try await self.withProxy(Self.configuration(readTimeout: .milliseconds(300))) { proxy, _ in
                let started = ContinuousClock.now
                // The head time-out is 30 s: only the read time-out can end this exchange early.
                let error = await #expect(throws: PersonioAuthError.self) {
                    _ = try await Self.get(proxy, upstream.baseURL)
                }
                let elapsed = ContinuousClock.now - started
                #expect(error?.code == .unavailable)
                #expect(error?.message.contains("halfway") == true, "\(String(describing: error))")
                #expect(elapsed >= .milliseconds(270) && elapsed < TimeScale.scaled(.seconds(10)), "\(elapsed)")
                let closed = try await Self.eventually { upstream.closedByClient == 1 }
                #expect(closed, "the stalled connection is closed")
            }
        }
    }

    /// A caller that takes none of the answer must not hold the upstream connection (and its share of the cap) for
    /// as long as it likes: after the read time-out without progress the answer is cut, as nginx's `send_timeout`
    /// does, and the connection to Personio closed.
    @Test func aCallerThatStopsReadingIsCutAtTheReadTimeOut() async throws {
        try await self.withUpstream(answering: .partial) { upstream in
            try await self.withProxy(Self.configuration(readTimeout: .milliseconds(300))) { proxy, loop in
                let started = ContinuousClock.now
                let sink = try await Self.start(proxy, on: loop, baseURL: upstream.baseURL, paths: ["/v2/persons"]) {
                    StallingSink(eventLoop: loop)
                }[0].sink
                let cut = try await Self.eventually { sink.failure != nil }
                let elapsed = ContinuousClock.now - started
                try await loop.submit { sink.release() }.get()
                #expect(cut, "the stalled caller's exchange was never cut")
                #expect(
                    sink.failure?.message.contains("stopped reading") == true,
                    "\(String(describing: sink.failure))"
                )
                #expect(elapsed >= .milliseconds(270) && elapsed < TimeScale.scaled(.seconds(10)), "\(elapsed)")
                #expect(
                    try await Self.eventually { upstream.closedByClient == 1 },
                    "the upstream connection stays open"
                )
            }
        }
    }

    @Test func anIdleConnectionIsClosedAfterTheIdleTimeOut() async throws {
        try await self.withUpstream(answering: .ok) { upstream in
            try await self.withProxy(Self.configuration(idleTimeout: .milliseconds(300))) { proxy, _ in
                #expect(try await Self.text(try await Self.get(proxy, upstream.baseURL)) == "ok")
                try #require(try await Self.eventually { upstream.closedByClient == 1 })
                // Measured on the server, from its answer to the client's close: no scheduling of the test in it.
                let idle = try #require(upstream.idleBeforeClientClose.first)
                #expect(idle >= .milliseconds(270) && idle < TimeScale.scaled(.seconds(2)), "\(idle)")
            }
            #expect(upstream.accepted == 1)
        }
    }

    // MARK: - Stale connections

    /// Personio closing an idle kept-alive connection (without having said `Connection: close`) is noticed while
    /// the connection is idle: the next request, even one that may not be sent twice, goes to a fresh connection.
    @Test func aConnectionClosedWhileIdleIsNotReused() async throws {
        try await self.withUpstream(answering: .okThenClose(after: .milliseconds(100))) { upstream in
            try await self.withProxy { proxy, _ in
                #expect(try await Self.text(try await Self.get(proxy, upstream.baseURL, path: "/v2/first")) == "ok")
                try #require(try await Self.eventually { upstream.closedByServer == 1 })
                let second = try await Self.get(proxy, upstream.baseURL, path: "/v2/second")
                #expect(second.status == 200)
                #expect(try await Self.text(second) == "ok")
                try #require(try await Self.eventually { upstream.closedByServer == 2 })
                // A POST with a body is never retried: it succeeds only because the close was noticed while idle.
                let posted = try await Self.post(proxy, upstream.baseURL, path: "/v2/posted")
                #expect(posted.status == 200)
                #expect(try await Self.text(posted) == "ok")
            }
            #expect(upstream.requests.map(\.uri) == ["/v2/first", "/v2/second", "/v2/posted"])
            #expect(upstream.requests.map(\.connection) == [0, 1, 2])
            #expect(upstream.accepted == 3)
        }
    }

    /// An idle connection keeps a read pending: an answer Personio sends unasked (here a whole, well-framed one) is
    /// not taken for the next request's, the connection is closed and the next request goes to a fresh one.
    @Test func anAnswerSentUnaskedOnAnIdleConnectionClosesIt() async throws {
        try await self.withUpstream(answering: .okThenUnasked(after: .milliseconds(50))) { upstream in
            try await self.withProxy { proxy, _ in
                #expect(try await Self.text(try await Self.get(proxy, upstream.baseURL, path: "/v2/first")) == "ok")
                try #require(try await Self.eventually { upstream.closedByClient == 1 }, "the client closes it")
                #expect(try await Self.text(try await Self.get(proxy, upstream.baseURL, path: "/v2/second")) == "ok")
            }
            #expect(upstream.requests.map(\.connection) == [0, 1])
            #expect(upstream.accepted == 2)
        }
    }

    /// The race the retry is for: a kept-alive connection that Personio closes just as a request goes out on it.
    /// The server answers the first request on each connection and closes the connection on the second without an
    /// answer: a GET is sent once more on a fresh connection, a POST with a body is not.
    @Test func aRequestOnAKeptAliveConnectionClosedUnansweredIsRetriedOnlyWhenSafe() async throws {
        try await self.withUpstream(answering: .ok, thenOnTheSameConnection: .close) { upstream in
            try await self.withProxy { proxy, _ in
                #expect(try await Self.text(try await Self.get(proxy, upstream.baseURL, path: "/v2/first")) == "ok")
                let retried = try await Self.get(proxy, upstream.baseURL, path: "/v2/retried")
                #expect(retried.status == 200)
                #expect(try await Self.text(retried) == "ok")
                #expect(upstream.accepted == 2)
                let error = await #expect(throws: PersonioAuthError.self) {
                    _ = try await Self.post(proxy, upstream.baseURL, path: "/v2/posted")
                }
                #expect(error?.code == .unavailable)
                #expect(!String(describing: error).contains(Self.token))
            }
            #expect(upstream.requests.map(\.uri) == ["/v2/first", "/v2/retried", "/v2/retried", "/v2/posted"])
            #expect(upstream.requests.map(\.connection) == [0, 0, 1, 1])
            #expect(upstream.accepted == 2, "the POST was not sent again")
        }
    }

    /// An answer on a kept-alive connection that the parser refuses (here two `Content-Length`s) came from Personio:
    /// the request is not sent again, even a GET, and the failure names the rule.
    @Test func aRefusedAnswerOnAKeptAliveConnectionIsNotRetried() async throws {
        let twoLengths = UpstreamTestServer.Answer.status(200, headers: [("Content-Length", "2")])
        try await self.withUpstream(answering: .ok, thenOnTheSameConnection: twoLengths) { upstream in
            try await self.withProxy { proxy, _ in
                let first = try await Self.get(proxy, upstream.baseURL, path: "/v2/first")
                #expect(try await Self.text(first) == "ok")
                let error = await #expect(throws: PersonioAuthError.self) {
                    _ = try await Self.get(proxy, upstream.baseURL, path: "/v2/refused")
                }
                #expect(error?.code == .invalidResponse)
                #expect(
                    error?.message.contains("Content-Length comes more than once") == true,
                    "\(String(describing: error))"
                )
            }
            #expect(upstream.requests.map(\.uri) == ["/v2/first", "/v2/refused"])
            #expect(upstream.requests.map(\.connection) == [0, 0])
        }
    }

    // MARK: - Redirects

    @Test func aRedirectIsAnAnswerAndIsNeverFollowed() async throws {
        try await self.withUpstream(answering: .ok) { elsewhere in
            let location = "\(elsewhere.baseURL)/v2/elsewhere"
            try await self.withUpstream(answering: .status(302, headers: [("Location", location)])) { upstream in
                try await self.withProxy { proxy, _ in
                    let response = try await Self.get(proxy, upstream.baseURL)
                    #expect(response.status == 302)
                    #expect(response.header("Location") == location)
                    _ = try await Self.text(response)
                }
                #expect(upstream.requests.count == 1)
            }
            // The answer above was the 302 itself: a followed redirect would have been sent before it came back.
            #expect(elsewhere.accepted == 0)
            #expect(elsewhere.requests.isEmpty)
        }
    }

    // MARK: - TLS

    @Test func httpsWithTheTestCAVerifiesAnAddressAndAName() async throws {
        let certificates = try await UpstreamTestCertificates.make()
        try await self.withUpstream(tls: certificates.matching, answering: .ok) { upstream in
            try await self.withProxy(Self.configuration(trustRoots: .certificates([certificates.ca]))) { proxy, _ in
                let response = try await Self.get(proxy, "https://127.0.0.1:\(upstream.port)")
                #expect(response.status == 200)
                #expect(try await Self.text(response) == "ok")
            }
            // The name is checked (and sent as SNI) while the connection goes to 127.0.0.1.
            try await self.withProxy(
                Self.configuration(
                    trustRoots: .certificates([certificates.ca]),
                    connectOverride: (host: "127.0.0.1", port: upstream.port)
                )
            ) { proxy, _ in
                let response = try await Self.get(proxy, "https://localhost:\(upstream.port)")
                #expect(response.status == 200)
                #expect(try await Self.text(response) == "ok")
            }
            #expect(upstream.requests.count == 2)
        }
    }

    @Test func httpsWithTheSystemRootsRefusesTheTestCertificate() async throws {
        let certificates = try await UpstreamTestCertificates.make()
        try await self.withUpstream(tls: certificates.matching, answering: .ok) { upstream in
            try await self.withProxy { proxy, _ in
                let error = await #expect(throws: PersonioAuthError.self) {
                    _ = try await Self.get(proxy, "https://127.0.0.1:\(upstream.port)")
                }
                #expect(error?.code == .unavailable)
                let text = "\(error?.message ?? "") | \(String(describing: error))"
                #expect(text.lowercased().contains("certificate"), "\(text)")
                #expect(!text.contains(Self.token))
            }
            #expect(upstream.requests.isEmpty)
        }
    }

    @Test(arguments: ["127.0.0.1", "localhost"])
    func httpsRefusesACertificateForAnotherHost(host: String) async throws {
        let certificates = try await UpstreamTestCertificates.make()
        try await self.withUpstream(tls: certificates.mismatched, answering: .ok) { upstream in
            try await self.withProxy(
                Self.configuration(
                    trustRoots: .certificates([certificates.ca]),
                    connectOverride: (host: "127.0.0.1", port: upstream.port)
                )
            ) { proxy, _ in
                let error = await #expect(throws: PersonioAuthError.self) {
                    _ = try await Self.get(proxy, "https://\(host):\(upstream.port)")
                }
                #expect(error?.code == .unavailable)
                #expect(error?.message.contains("could not reach Personio") == true, "\(String(describing: error))")
                #expect(!String(describing: error).contains(Self.token))
            }
            #expect(upstream.requests.isEmpty)
        }
    }

    // MARK: - Several addresses

    /// A host with an IPv6 and an IPv4 address: NIO tries the IPv6 one first and, when it has not connected within
    /// 250 ms, the IPv4 one beside it (happy eyeballs), running the channel initializer for each attempt. Here the
    /// IPv6 address never answers (a listener on ::1 whose accept queue is full: the kernel drops the SYN), so the
    /// IPv4 attempt wins and NIO closes the other. The losing attempt must not close or clear the connection the
    /// requests then share: every request is answered, on the one connection the upstream accepted.
    /// Needs an IPv6 loopback address (a host without one cannot make the IPv6 attempt wait).
    @Test(.enabled(if: UnansweredIPv6Address.isAvailable))
    func aHostWithTwoAddressesKeepsTheAttemptThatConnectedAndReusesIt() async throws {
        let unanswered = try UnansweredIPv6Address()
        defer { unanswered.close() }
        try await self.withUpstream(answering: .ok) { upstream in
            var configuration = PersonioProxy.UpstreamConfiguration()
            let queries = TwoAddressResolver.Queries()
            let v6 = try SocketAddress(ipAddress: "::1", port: unanswered.port)
            let v4 = try SocketAddress(ipAddress: "127.0.0.1", port: upstream.port)
            configuration.resolver = { loop in TwoAddressResolver(loop: loop, v6: v6, v4: v4, queries: queries) }
            try await self.withProxy(configuration) { proxy, _ in
                let baseURL = "http://dual-stack.invalid:\(upstream.port)"
                let started = ContinuousClock.now
                let first = try await Self.get(proxy, baseURL, path: "/v2/persons/0")
                let elapsed = ContinuousClock.now - started
                #expect(first.status == 200)
                #expect(try await Self.text(first) == "ok")
                // Not sooner than NIO's connection delay: the IPv6 attempt was made first and was still in flight.
                #expect(elapsed >= .milliseconds(200), "\(elapsed)")
                for index in 1..<10 {
                    let response = try await Self.get(proxy, baseURL, path: "/v2/persons/\(index)")
                    #expect(response.status == 200)
                    #expect(try await Self.text(response) == "ok")
                }
            }
            #expect(queries.aaaa.withLock { $0 } >= 1, "the IPv6 address was never asked for")
            #expect(upstream.requests.map(\.uri) == (0..<10).map { "/v2/persons/\($0)" })
            #expect(upstream.accepted == 1, "the connection that won was not the one reused")
        }
    }

    // MARK: - Cancellation

    @Test func cancellingAnExchangeClosesItsConnectionAndFailsTheSink() async throws {
        try await self.withUpstream(answering: .hold) { upstream in
            try await self.withProxy { proxy, loop in
                let held = try await Self.start(proxy, on: loop, baseURL: upstream.baseURL, paths: ["/v2/persons"])
                try #require(try await Self.eventually { upstream.heldCount == 1 })
                try await loop.submit { held[0].exchange.cancel() }.get()
                #expect(try await Self.eventually { upstream.closedByClient == 1 }, "the server sees the close")
                let record = held[0].sink.record
                #expect(record.failure?.code == .unavailable)
                #expect(record.failure?.message.contains("cancelled") == true, "\(record)")
                #expect(record.status == nil && !record.ended)
            }
        }
    }

    @Test func cancellingTheTaskAroundForwardClosesItsConnection() async throws {
        try await self.withUpstream(answering: .hold) { upstream in
            try await self.withProxy { proxy, _ in
                try await withThrowingTaskGroup(of: PersonioAuthError?.self) { tasks in
                    tasks.addTask {
                        do throws(PersonioAuthError) {
                            _ = try await Self.get(proxy, upstream.baseURL)
                            return nil
                        } catch {
                            return error
                        }
                    }
                    try #require(try await Self.eventually { upstream.heldCount == 1 })
                    tasks.cancelAll()
                    let error = try await tasks.next() ?? nil
                    #expect(error?.code == .unavailable)
                    #expect(error?.message.contains("cancelled") == true, "\(String(describing: error))")
                }
                #expect(try await Self.eventually { upstream.closedByClient == 1 }, "the server sees the close")
            }
        }
    }

    // MARK: - Shutdown

    @Test func shutdownClosesIdleConnectionsAndFailsWaitingRequests() async throws {
        try await self.withUpstream(answering: .ok) { idle in
            try await self.withUpstream(answering: .hold) { busy in
                try await self.withProxy(Self.configuration(maximumConnectionsPerHost: 1)) { proxy, loop in
                    #expect(try await Self.text(try await Self.get(proxy, idle.baseURL)) == "ok")
                    let started = try await Self.start(
                        proxy,
                        on: loop,
                        baseURL: busy.baseURL,
                        paths: ["/v2/in-flight", "/v2/waiting"]
                    )
                    try #require(try await Self.eventually { busy.heldCount == 1 })
                    #expect(!started[1].sink.record.isDone)
                    try await proxy.shutdown()
                    #expect(try await Self.eventually { idle.closedByClient == 1 }, "the idle connection is closed")
                    #expect(try await Self.eventually { busy.closedByClient == 1 }, "the busy one too")
                    for (_, sink) in started {
                        let record = sink.record
                        #expect(record.failure?.code == .unavailable)
                        #expect(record.failure?.message.contains("shutting down") == true, "\(record)")
                    }
                    let after = await #expect(throws: PersonioAuthError.self) {
                        _ = try await Self.get(proxy, idle.baseURL)
                    }
                    #expect(after?.message.contains("shutting down") == true, "\(String(describing: after))")
                }
                #expect(busy.requests.map(\.uri) == ["/v2/in-flight"])
                #expect(busy.accepted == 1)
            }
            #expect(idle.accepted == 1)
        }
    }

    /// A connection is first a host name being resolved off the loop, with no channel yet: shutting down then must
    /// fail its request too, not send it once the channel exists.
    @Test func shutdownFailsARequestWhoseConnectionIsStillBeingMade() async throws {
        try await self.withUpstream(answering: .hold) { upstream in
            try await self.withProxy { proxy, loop in
                let destination = try Self.destination(upstream.baseURL)
                let sink = try await loop.submit {
                    let sink = UpstreamTestSink(eventLoop: loop)
                    _ = try proxy.start(
                        PersonioProxy.RequestHead(method: "GET", path: "/v2/persons", query: nil, headers: []),
                        body: nil,
                        to: destination,
                        on: loop,
                        timeout: Self.longTimeout,
                        sink: sink
                    )
                    // In the same turn of the loop: the connection's address is still being resolved.
                    proxy.client(for: loop)?.shutdown()
                    return sink
                }.get()
                #expect(try await Self.eventually { sink.record.isDone }, "\(sink.record)")
                #expect(sink.record.failure?.message.contains("shutting down") == true, "\(sink.record)")
            }
            #expect(upstream.requests.isEmpty, "nothing was sent after the shutdown")
        }
    }

    // MARK: - Helpers

    /// A test upstream, stopped afterwards, that gives every request the answer `first` when it is the first on its
    /// connection and `later` otherwise.
    func withUpstream<T>(
        tls: NIOSSLContext? = nil,
        answering first: UpstreamTestServer.Answer,
        thenOnTheSameConnection later: UpstreamTestServer.Answer? = nil,
        _ body: (UpstreamTestServer) async throws -> T
    ) async throws -> T {
        let later = later ?? first
        let upstream = try await UpstreamTestServer.start(tls: tls) { $0.indexOnConnection == 0 ? first : later }
        do {
            let result = try await body(upstream)
            await upstream.stop()
            return result
        } catch {
            await upstream.stop()
            throw error
        }
    }

    /// A proxy on one event loop of its own (so that every request to an origin shares one pool), shut down with its
    /// loop afterwards. A test whose behaviour is broken must fail, not hang: if `body` has not returned after 60 s
    /// (scaled), the proxy is shut down under it, which fails whatever it waits for. No log line may contain the
    /// credential.
    func withProxy<T>(
        _ configuration: PersonioProxy.UpstreamConfiguration = PersonioProxy.UpstreamConfiguration(),
        _ body: (PersonioProxy, any EventLoop) async throws -> T
    ) async throws -> T {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let logs = LogCapture()
        let proxy = PersonioProxy(
            eventLoopsOf: group,
            configuration: configuration,
            logger: logs.logger(label: "upstream-client-test")
        )
        let loop = group.next()
        let outcome: Result<T, any Error> = await withTaskGroup(of: Void.self) { watchdog in
            watchdog.addTask {
                guard (try? await Task.sleep(for: TimeScale.scaled(.seconds(60)))) != nil else { return }
                Issue.record("the test ran for 60 s: shutting the proxy down under it")
                try? await proxy.shutdown()
            }
            defer { watchdog.cancelAll() }
            do {
                return .success(try await body(proxy, loop))
            } catch {
                return .failure(error)
            }
        }
        try? await proxy.shutdown()
        try? await group.shutdownGracefully()
        #expect(!logs.lines.contains { $0.contains(Self.token) })
        return try outcome.get()
    }

    /// The default upstream configuration with the given changes.
    static func configuration(
        maximumConnectionsPerHost: Int? = nil,
        readTimeout: Duration? = nil,
        idleTimeout: Duration? = nil,
        trustRoots: NIOSSLTrustRoots? = nil,
        connectOverride: (host: String, port: Int)? = nil
    ) -> PersonioProxy.UpstreamConfiguration {
        var configuration = PersonioProxy.UpstreamConfiguration()
        if let maximumConnectionsPerHost { configuration.maximumConnectionsPerHost = maximumConnectionsPerHost }
        if let readTimeout { configuration.readTimeout = readTimeout }
        if let idleTimeout { configuration.idleTimeout = idleTimeout }
        if let trustRoots { configuration.tls.trustRoots = trustRoots }
        if let connectOverride { configuration.connectOverride = connectOverride }
        return configuration
    }

    static func destination(_ baseURL: String) throws -> ProxyDestination {
        try ProxyDestination(baseURL: baseURL, authorization: .bearer(Self.token), appID: nil, partnerID: nil)
    }

    static func get(
        _ proxy: PersonioProxy,
        _ baseURL: String,
        path: String = "/v2/persons",
        timeout: Duration = Self.longTimeout
    ) async throws(PersonioAuthError) -> ProxyResponse {
        try await proxy.forward(
            ProxyRequest(method: "GET", path: path),
            baseURL: baseURL,
            authorization: .bearer(Self.token),
            appID: nil,
            partnerID: nil,
            timeout: timeout
        )
    }

    static func post(
        _ proxy: PersonioProxy,
        _ baseURL: String,
        path: String
    ) async throws(PersonioAuthError) -> ProxyResponse {
        try await proxy.forward(
            ProxyRequest(
                method: "POST",
                path: path,
                headers: [("Content-Type", "application/json")],
                body: ByteBuffer(string: #"{"first_name":"Fake"}"#)
            ),
            baseURL: baseURL,
            authorization: .bearer(Self.token),
            appID: nil,
            partnerID: nil,
            timeout: Self.longTimeout
        )
    }

    static func text(_ response: ProxyResponse) async throws -> String {
        String(buffer: try await response.body.collect(upTo: 1 << 20))
    }

    /// Starts a GET for each of `paths` on `loop`, in that order, within one turn of the loop: they ask for a
    /// connection in that order.
    static func start(
        _ proxy: PersonioProxy,
        on loop: any EventLoop,
        baseURL: String,
        paths: [String]
    ) async throws -> [(exchange: ProxyExchange, sink: UpstreamTestSink)] {
        try await Self.start(proxy, on: loop, baseURL: baseURL, paths: paths) { UpstreamTestSink(eventLoop: loop) }
    }

    /// ``start(_:on:baseURL:paths:)`` with sinks of the test's own kind, made on the loop.
    static func start<Sink: ProxyResponseSink & Sendable>(
        _ proxy: PersonioProxy,
        on loop: any EventLoop,
        baseURL: String,
        paths: [String],
        sink makeSink: @escaping @Sendable () -> Sink
    ) async throws -> [(exchange: ProxyExchange, sink: Sink)] {
        let destination = try Self.destination(baseURL)
        return try await loop.submit {
            try paths.map { path in
                let sink = makeSink()
                let exchange = try proxy.start(
                    PersonioProxy.RequestHead(method: "GET", path: path, query: nil, headers: []),
                    body: nil,
                    to: destination,
                    on: loop,
                    timeout: Self.longTimeout,
                    sink: sink
                )
                return (exchange, sink)
            }
        }.get()
    }

    /// Whether `condition` holds within `timeout`, checked every 10 ms.
    static func eventually(
        within timeout: Duration = TimeScale.scaled(.seconds(10)),
        _ condition: () -> Bool
    ) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            guard ContinuousClock.now < deadline else { return false }
            try await Task.sleep(for: .milliseconds(10))
        }
        return true
    }
}

// MARK: - The test upstream

/// A small HTTP/1.1 server on 127.0.0.1 (SwiftNIO, TLS when given a context) standing in for Personio: it counts
/// the connections it accepts and those the client closes, records every request once it has arrived whole, and
/// answers each as its behaviour says. Every answer is kept alive unless the behaviour closes the connection.
final class UpstreamTestServer: Sendable {
    /// What the server does with a request.
    enum Answer: Sendable {
        /// This status with the body `ok` and these headers.
        case status(Int, headers: [(String, String)] = [])
        /// Nothing until ``release(_:)``, then 200 with the body `released`.
        case hold
        /// The head (`Content-Length: 1000`) and 100 bytes of the body, then silence.
        case partial
        /// Closes the connection without an answer.
        case close
        /// 200 with `ok` (no `Connection: close`), then closes the connection after `delay`.
        case okThenClose(after: TimeAmount)
        /// 200 with `ok`, then after `delay` a second, unasked 200 with the body `stale`.
        case okThenUnasked(after: TimeAmount)

        static let ok = Answer.status(200)
    }

    /// A request as the server received it.
    struct Request: Sendable {
        var method: String
        var uri: String
        /// The connection it came on, numbered from 0 in the order they were accepted.
        var connection: Int
        /// Its place on that connection, from 0.
        var indexOnConnection: Int
        var bodyBytes: Int
    }

    fileprivate struct Held: Sendable {
        let eventLoop: any EventLoop
        let answer: NIOLoopBound<() -> Void>
    }

    fileprivate struct State {
        var accepted = 0
        var closedByClient = 0
        var closedByServer = 0
        var requests: [Request] = []
        var held: [Held] = []
        var channels: [ObjectIdentifier: any Channel] = [:]
        var lastAnswer: ContinuousClock.Instant?
        var idleBeforeClientClose: [Duration] = []
    }

    let port: Int
    let baseURL: String
    private let group: MultiThreadedEventLoopGroup
    private let listener: any Channel
    fileprivate let state: Locked<State>

    private init(
        port: Int,
        tls: Bool,
        group: MultiThreadedEventLoopGroup,
        listener: any Channel,
        state: Locked<State>
    ) {
        self.port = port
        self.baseURL = "\(tls ? "https" : "http")://127.0.0.1:\(port)"
        self.group = group
        self.listener = listener
        self.state = state
    }

    /// Starts listening on an ephemeral port of 127.0.0.1.
    static func start(
        tls: NIOSSLContext?,
        _ behaviour: @escaping @Sendable (Request) -> Answer
    ) async throws -> UpstreamTestServer {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let state = Locked(State())
        do {
            let listener = try await ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let pipeline = channel.pipeline.syncOperations
                        if let tls { try pipeline.addHandler(NIOSSLServerHandler(context: tls)) }
                        try pipeline.configureHTTPServerPipeline(
                            withPipeliningAssistance: false,
                            withErrorHandling: false
                        )
                        try pipeline.addHandler(UpstreamTestConnection(state: state, behaviour: behaviour))
                    }
                }
                .bind(host: "127.0.0.1", port: 0)
                .get()
            let port = try #require(listener.localAddress?.port)
            return UpstreamTestServer(port: port, tls: tls != nil, group: group, listener: listener, state: state)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    /// Closes the listener and every connection, and ends the server's thread.
    func stop() async {
        try? await self.listener.close()
        for channel in self.state.withLock({ Array($0.channels.values) }) {
            try? await channel.close()
        }
        try? await self.group.shutdownGracefully()
    }

    var accepted: Int { self.state.withLock { $0.accepted } }
    /// Connections that ended without the server closing them: the client closed them.
    var closedByClient: Int { self.state.withLock { $0.closedByClient } }
    var closedByServer: Int { self.state.withLock { $0.closedByServer } }
    var requests: [Request] { self.state.withLock { $0.requests } }
    var heldCount: Int { self.state.withLock { $0.held.count } }
    /// For each connection the client closed after an answer: the time from that answer to the close.
    var idleBeforeClientClose: [Duration] { self.state.withLock { $0.idleBeforeClientClose } }

    /// Answers the `count` requests held longest.
    func release(_ count: Int) {
        let released = self.state.withLock { state in
            let released = Array(state.held.prefix(count))
            state.held.removeFirst(released.count)
            return released
        }
        for held in released {
            held.eventLoop.execute { held.answer.value() }
        }
    }
}

/// One connection of ``UpstreamTestServer``, after NIO's HTTP server codec.
private final class UpstreamTestConnection: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let state: Locked<UpstreamTestServer.State>
    private let behaviour: @Sendable (UpstreamTestServer.Request) -> UpstreamTestServer.Answer
    private var number = 0
    private var served = 0
    private var request: UpstreamTestServer.Request?
    private var closing = false

    init(
        state: Locked<UpstreamTestServer.State>,
        behaviour: @escaping @Sendable (UpstreamTestServer.Request) -> UpstreamTestServer.Answer
    ) {
        self.state = state
        self.behaviour = behaviour
    }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        self.number = self.state.withLock { state in
            state.channels[ObjectIdentifier(channel)] = channel
            state.accepted += 1
            return state.accepted - 1
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        let channel = context.channel
        let byServer = self.closing
        self.state.withLock { state in
            state.channels[ObjectIdentifier(channel)] = nil
            if byServer {
                state.closedByServer += 1
            } else {
                state.closedByClient += 1
                if let lastAnswer = state.lastAnswer {
                    state.idleBeforeClientClose.append(ContinuousClock.now - lastAnswer)
                }
            }
        }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.request = UpstreamTestServer.Request(
                method: head.method.rawValue,
                uri: head.uri,
                connection: self.number,
                indexOnConnection: self.served,
                bodyBytes: 0
            )
            self.served += 1
        case .body(let buffer):
            self.request?.bodyBytes += buffer.readableBytes
        case .end:
            guard let request = self.request else { return }
            self.request = nil
            let answer = self.behaviour(request)
            self.state.withLock { $0.requests.append(request) }
            self.perform(answer, context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A TLS handshake the client refused, or a client gone without TLS's close_notify.
        context.close(promise: nil)
    }

    private func perform(_ answer: UpstreamTestServer.Answer, context: ChannelHandlerContext) {
        switch answer {
        case .status(let status, let headers):
            self.respond(status: status, headers: headers, body: "ok", context: context)
        case .hold:
            let answer = NIOLoopBound(
                { self.respond(status: 200, headers: [], body: "released", context: context) },
                eventLoop: context.eventLoop
            )
            let held = UpstreamTestServer.Held(eventLoop: context.eventLoop, answer: answer)
            self.state.withLock { $0.held.append(held) }
        case .partial:
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "text/plain")
            headers.add(name: "Content-Length", value: "1000")
            context.write(
                self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))),
                promise: nil
            )
            context.writeAndFlush(
                // More than the scrubbing holds back, so that a piece reaches the sink.
                self.wrapOutboundOut(
                    .body(.byteBuffer(ByteBuffer(string: String(repeating: "0123456789", count: 10))))
                ),
                promise: nil
            )
        case .close:
            self.closing = true
            context.close(promise: nil)
        case .okThenClose(let delay):
            self.respond(status: 200, headers: [], body: "ok", context: context)
            context.eventLoop.assumeIsolated().scheduleTask(in: delay) {
                self.closing = true
                context.close(promise: nil)
            }
        case .okThenUnasked(let delay):
            self.respond(status: 200, headers: [], body: "ok", context: context)
            context.eventLoop.assumeIsolated().scheduleTask(in: delay) {
                self.respond(status: 200, headers: [], body: "stale", context: context)
            }
        }
    }

    private func respond(status: Int, headers: [(String, String)], body: String, context: ChannelHandlerContext) {
        var fields = HTTPHeaders(headers)
        fields.add(name: "Content-Type", value: "text/plain")
        fields.add(name: "Content-Length", value: String(body.utf8.count))
        let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: fields)
        context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        context.write(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
        context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        self.state.withLock { $0.lastAnswer = .now }
    }
}

// MARK: - A recording sink

/// Records what reaches it, for a test to read from any thread.
final class UpstreamTestSink: ProxyResponseSink, Sendable {
    struct Record: Sendable, CustomStringConvertible {
        var status: Int?
        var body = ""
        var ended = false
        var failure: PersonioAuthError?

        var isDone: Bool { self.ended || self.failure != nil }

        var description: String {
            "status \(self.status.map(String.init) ?? "none"), body \(self.body.debugDescription), "
                + "ended \(self.ended), failure \(self.failure.map { "\($0)" } ?? "none")"
        }
    }

    private let eventLoop: any EventLoop
    private let state = Locked(Record())

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    var record: Record { self.state.withLock { $0 } }

    func proxyHead(status: Int, headers: [(String, String)]) -> EventLoopFuture<Void> {
        self.state.withLock { $0.status = status }
        return self.eventLoop.makeSucceededVoidFuture()
    }

    func proxyBody(_ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        self.state.withLock { $0.body += String(buffer: buffer) }
        return self.eventLoop.makeSucceededVoidFuture()
    }

    func proxyEnd() {
        self.state.withLock { $0.ended = true }
    }

    func proxyFailed(_ error: PersonioAuthError) {
        self.state.withLock { $0.failure = error }
    }
}

/// A caller that takes nothing: every piece's future stays pending until ``release()`` (on the loop), so the
/// connection's back-pressure holds.
final class StallingSink: ProxyResponseSink, @unchecked Sendable {
    private let eventLoop: any EventLoop
    private var pending: [EventLoopPromise<Void>] = []
    private let failed = Locked<PersonioAuthError?>(nil)

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    var failure: PersonioAuthError? { self.failed.withLock { $0 } }

    func proxyHead(status: Int, headers: [(String, String)]) -> EventLoopFuture<Void> {
        self.eventLoop.makeSucceededVoidFuture()
    }

    func proxyBody(_ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        let promise = self.eventLoop.makePromise(of: Void.self)
        self.pending.append(promise)
        return promise.futureResult
    }

    func proxyEnd() {}

    func proxyFailed(_ error: PersonioAuthError) {
        self.failed.withLock { $0 = error }
    }

    /// Completes every pending piece (a promise must not be dropped uncompleted).
    func release() {
        for promise in self.pending { promise.succeed(()) }
        self.pending.removeAll()
    }
}

// MARK: - Throwaway certificates

/// A throwaway CA and two server certificates it signed, made with openssl in a temporary directory that is removed
/// before they are used (nothing is written anywhere else, nothing is kept).
struct UpstreamTestCertificates {
    let ca: NIOSSLCertificate
    /// For 127.0.0.1 (IP SAN) and localhost (DNS SAN).
    let matching: NIOSSLContext
    /// For a name and an address no test connects to.
    let mismatched: NIOSSLContext

    static func make() async throws -> UpstreamTestCertificates {
        let directory = try TemporaryDirectory(prefix: "cv-tls")
        defer { directory.remove() }
        let caConfig = """
            [req]
            distinguished_name = dn
            x509_extensions = ca
            prompt = no
            [dn]
            CN = Connection Vault upstream test CA
            [ca]
            basicConstraints = critical, CA:TRUE
            keyUsage = critical, keyCertSign, cRLSign
            subjectKeyIdentifier = hash

            """
        try caConfig.write(toFile: directory.file("ca.cnf"), atomically: true, encoding: .utf8)
        let newKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        try await Self.openssl(
            ["req", "-x509", "-config", directory.file("ca.cnf")] + newKey
                + ["-keyout", directory.file("ca.key"), "-out", directory.file("ca.pem"), "-days", "2"]
        )
        var contexts: [NIOSSLContext] = []
        for (serial, names) in [(2, "IP:127.0.0.1, DNS:localhost"), (3, "IP:10.255.255.1, DNS:not-this-host.invalid")] {
            let leaf = directory.file("leaf\(serial)")
            let extensions = """
                subjectAltName = \(names)
                basicConstraints = critical, CA:FALSE
                keyUsage = critical, digitalSignature
                extendedKeyUsage = serverAuth
                authorityKeyIdentifier = keyid

                """
            try extensions.write(toFile: leaf + ".ext", atomically: true, encoding: .utf8)
            try await Self.openssl(
                ["req", "-new", "-config", directory.file("ca.cnf"), "-subj", "/CN=upstream test server"] + newKey
                    + ["-keyout", leaf + ".key", "-out", leaf + ".csr"]
            )
            try await Self.openssl([
                "x509", "-req", "-in", leaf + ".csr", "-CA", directory.file("ca.pem"), "-CAkey",
                directory.file("ca.key"), "-set_serial", String(serial), "-days", "2", "-extfile", leaf + ".ext",
                "-out", leaf + ".pem",
            ])
            let configuration = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(leaf + ".pem").map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: leaf + ".key", format: .pem))
            )
            contexts.append(try NIOSSLContext(configuration: configuration))
        }
        return UpstreamTestCertificates(
            ca: try #require(try NIOSSLCertificate.fromPEMFile(directory.file("ca.pem")).first),
            matching: contexts[0],
            mismatched: contexts[1]
        )
    }

    private static func openssl(_ arguments: [String]) async throws {
        let child = try ChildProcess("/usr/bin/openssl", arguments, standardError: .capture)
        let termination = await child.exit(timeout: TimeScale.scaled(.seconds(30)))
        guard termination == ChildProcess.Termination(status: 0, signaled: false, timedOut: false) else {
            throw TestSupportError("openssl \(arguments[0]): \(termination): \(child.standardError())")
        }
    }
}

/// Answers A and AAAA queries with one fixed address each, and counts the AAAA queries.
private final class TwoAddressResolver: Resolver {
    final class Queries: Sendable {
        let aaaa = Locked(0)
    }

    private let loop: any EventLoop
    private let v6: SocketAddress
    private let v4: SocketAddress
    private let queries: Queries

    init(loop: any EventLoop, v6: SocketAddress, v4: SocketAddress, queries: Queries) {
        (self.loop, self.v6, self.v4, self.queries) = (loop, v6, v4, queries)
    }

    func initiateAQuery(host: String, port: Int) -> EventLoopFuture<[SocketAddress]> {
        self.loop.makeSucceededFuture([self.v4])
    }

    func initiateAAAAQuery(host: String, port: Int) -> EventLoopFuture<[SocketAddress]> {
        self.queries.aaaa.withLock { $0 += 1 }
        return self.loop.makeSucceededFuture([self.v6])
    }

    func cancelQueries() {}
}

/// A TCP port on ::1 that takes no connection: a listener with an accept queue of one, filled by a connection of
/// its own and never accepted, so the kernel drops every further SYN and a connect to it waits (as to a host that
/// does not answer) until its caller gives up.
private struct UnansweredIPv6Address {
    let port: Int
    private let listener: Int32
    private let filler: Int32

    init() throws {
        let (listener, port) = try LoopbackListener.open(.ipv6, backlog: 0)
        do {
            // The one connection the queue holds.
            self.filler = try LoopbackListener.connect(.ipv6, port: port)
        } catch {
            _ = Glibc.close(listener)
            throw error
        }
        (self.listener, self.port) = (listener, port)
    }

    /// Whether ::1 can be bound here.
    static var isAvailable: Bool {
        guard let address = try? UnansweredIPv6Address() else { return false }
        address.close()
        return true
    }

    func close() {
        _ = Glibc.close(self.filler)
        _ = Glibc.close(self.listener)
    }
}
