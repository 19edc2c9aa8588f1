import NIOCore

/// Personio's whole answer to a proxied request, as ``PersonioProxy/forward(_:baseURL:authorization:appID:partnerID:timeout:maximumResponseBytes:onCredentialEcho:)``
/// collects it: status, filtered headers and the body.
///
/// Every status comes back as it is, 4xx and 5xx included: they are Personio's answer to the caller, not a failure
/// of the proxy.
public struct ProxyResponse: Sendable {
    /// Personio's HTTP status.
    public var status: Int
    /// The headers ``PersonioProxy`` passes back (`Content-Type`, `Content-Length` when the body is not chunked,
    /// `Content-Disposition`, `Location`, `Retry-After`, `X-RateLimit-*`, `ETag`, `Last-Modified`), in arrival order.
    public var headers: [(String, String)]
    /// The body.
    public var body: Body

    /// - Parameters:
    ///   - status: The HTTP status.
    ///   - headers: The headers to pass back.
    ///   - body: The body.
    public init(status: Int, headers: [(String, String)], body: Body) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The first value of the header `name`, compared case-insensitively.
    ///
    /// - Parameter name: A header name.
    /// - Returns: Its value, if present.
    public func header(_ name: String) -> String? {
        let lowercased = name.lowercased()
        return self.headers.first { $0.0.lowercased() == lowercased }?.1
    }

    /// The response body as a single-pass sequence of buffers, scrubbed of the injected credential.
    public struct Body: AsyncSequence, Sendable {
        public typealias Element = ByteBuffer
        public typealias Failure = PersonioAuthError

        private let buffers: [ByteBuffer]
        /// Overwrites the injected credential wherever it appears in the body.
        private let scrubber: CredentialScrubber
        private let report: CredentialEchoReport

        /// A body made of `buffers`.
        ///
        /// - Parameter buffers: The chunks, in order.
        public init(_ buffers: [ByteBuffer] = []) {
            self.init(buffers, scrubber: .none, report: CredentialEchoReport(nil))
        }

        /// A body made of `buffers`, scrubbed as an answer from Personio is: for tests of the scrubbing.
        init(_ buffers: [ByteBuffer], scrubber: CredentialScrubber, report: CredentialEchoReport) {
            self.buffers = buffers
            self.scrubber = scrubber
            self.report = report
        }

        public func makeAsyncIterator() -> AsyncIterator {
            AsyncIterator(buffers: self.buffers, stream: ScrubbingStream(self.scrubber), report: self.report)
        }

        /// Reads the whole body, failing past `maximumBytes`.
        ///
        /// - Parameter maximumBytes: The most bytes accepted.
        /// - Returns: The body in one buffer.
        /// - Throws: ``PersonioAuthError`` `.invalidResponse` past `maximumBytes`.
        public func collect(upTo maximumBytes: Int) async throws(PersonioAuthError) -> ByteBuffer {
            var collected = ByteBuffer()
            var iterator = self.makeAsyncIterator()
            while var buffer = try await iterator.next() {
                guard collected.readableBytes + buffer.readableBytes <= maximumBytes else {
                    throw PersonioAuthError(.invalidResponse, "Personio's answer exceeded \(maximumBytes) bytes")
                }
                collected.writeBuffer(&buffer)
            }
            return collected
        }

        public struct AsyncIterator: AsyncIteratorProtocol {
            public typealias Element = ByteBuffer
            public typealias Failure = PersonioAuthError

            private var buffers: IndexingIterator<[ByteBuffer]>
            private var stream: ScrubbingStream
            private let report: CredentialEchoReport

            fileprivate init(buffers: [ByteBuffer], stream: ScrubbingStream, report: CredentialEchoReport) {
                self.buffers = buffers.makeIterator()
                self.stream = stream
                self.report = report
            }

            public mutating func next() async throws(PersonioAuthError) -> ByteBuffer? {
                while let chunk = self.buffers.next() {
                    let (piece, echoed) = self.stream.pass(chunk)
                    if echoed { await self.report.report() }
                    if let piece { return piece }
                }
                return self.stream.finish()
            }
        }
    }
}

/// A body stream's scrubbing: every piece is scrubbed together with the tail of the one before, and the last
/// ``CredentialScrubber/overlap`` bytes are held back, since they may be the start of an occurrence that the next
/// piece completes. Holds at most one piece and the overlap at a time.
struct ScrubbingStream {
    private let scrubber: CredentialScrubber
    private var heldBack: ByteBuffer?

    init(_ scrubber: CredentialScrubber) {
        self.scrubber = scrubber
    }

    /// What of `chunk` (after the held-back bytes) can go out now, scrubbed, and whether an occurrence was found;
    /// nil when everything is held back (a piece shorter than the overlap).
    mutating func pass(_ chunk: ByteBuffer) -> (piece: ByteBuffer?, echoed: Bool) {
        guard !self.scrubber.isEmpty else { return (chunk.readableBytes > 0 ? chunk : nil, false) }
        var combined: ByteBuffer
        if let heldBack = self.heldBack, heldBack.readableBytes > 0 {
            // One copy per piece.
            combined = ByteBufferAllocator().buffer(capacity: heldBack.readableBytes + chunk.readableBytes)
            combined.writeImmutableBuffer(heldBack)
            combined.writeImmutableBuffer(chunk)
        } else {
            combined = chunk
        }
        self.heldBack = nil
        let echoed = self.scrubber.scrub(&combined)
        let keep = min(self.scrubber.overlap, combined.readableBytes)
        let piece = combined.readSlice(length: combined.readableBytes - keep)
        self.heldBack = combined
        return (piece.flatMap { $0.readableBytes > 0 ? $0 : nil }, echoed)
    }

    /// The held-back bytes at the end of the stream: they cannot begin an occurrence any more.
    mutating func finish() -> ByteBuffer? {
        defer { self.heldBack = nil }
        return self.heldBack.flatMap { $0.readableBytes > 0 ? $0 : nil }
    }
}

/// Collects a proxied answer whole: for ``PersonioProxy/forward(_:baseURL:authorization:appID:partnerID:timeout:maximumResponseBytes:onCredentialEcho:)``
/// and the broker's counterpart. On the exchange's event loop only; ``result`` completes once, with the answer or the
/// first failure.
public final class ProxyResponseCollector: ProxyResponseSink, @unchecked Sendable {
    /// The whole answer, or why there is none.
    public let result: EventLoopPromise<ProxyResponse>
    /// The exchange being collected, cancelled when the answer grows past the limit.
    public var exchange: ProxyExchange?
    private let eventLoop: any EventLoop
    private let limit: Int
    private var head: (status: Int, headers: [(String, String)])?
    private var buffers: [ByteBuffer] = []
    private var size = 0
    private var done = false

    /// - Parameters:
    ///   - eventLoop: The exchange's event loop.
    ///   - limit: The largest body collected; a larger one fails with `tooLarge(limit)`.
    ///   - tooLarge: The failure for a body over `limit`.
    public init(
        eventLoop: any EventLoop,
        limit: Int,
        tooLarge: @escaping @Sendable (Int) -> any Error = {
            PersonioAuthError(.invalidResponse, "Personio's answer exceeded \($0) bytes")
        }
    ) {
        self.eventLoop = eventLoop
        self.result = eventLoop.makePromise(of: ProxyResponse.self)
        self.limit = limit
        self.tooLarge = tooLarge
    }

    private let tooLarge: @Sendable (Int) -> any Error

    public func proxyHead(status: Int, headers: [(String, String)]) -> EventLoopFuture<Void> {
        self.head = (status, headers)
        return self.eventLoop.makeSucceededVoidFuture()
    }

    public func proxyBody(_ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        self.size += buffer.readableBytes
        guard self.size <= self.limit else {
            self.fail(self.tooLarge(self.limit))
            self.exchange?.cancel()
            return self.eventLoop.makeSucceededVoidFuture()
        }
        self.buffers.append(buffer)
        return self.eventLoop.makeSucceededVoidFuture()
    }

    public func proxyEnd() {
        guard let head = self.head else { return }
        self.finish(.success(ProxyResponse(status: head.status, headers: head.headers, body: .init(self.buffers))))
    }

    public func proxyFailed(_ error: PersonioAuthError) {
        self.fail(error)
    }

    /// Whether the collection has ended: an exchange begun now would go to nobody.
    public var isFinished: Bool { self.done }

    /// Cancels the exchange being collected, or, before it has begun, ends the collection with `failure` (what the
    /// exchange would have failed with): a caller's task cancelled before its exchange was started on the event loop
    /// then sends nothing.
    public func cancel(failure: @autoclosure () -> any Error = ProxyExchange.cancelled) {
        if let exchange = self.exchange {
            exchange.cancel()
        } else {
            self.fail(failure())
        }
    }

    /// Ends the collection with `error`, unless it has ended.
    public func fail(_ error: any Error) {
        self.finish(.failure(error))
    }

    private func finish(_ result: Result<ProxyResponse, any Error>) {
        guard !self.done else { return }
        self.done = true
        self.exchange = nil
        self.buffers = []
        self.result.completeWith(result)
    }
}
