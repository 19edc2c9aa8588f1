import AsyncHTTPClient
import NIOCore

/// Personio's answer to a proxied request: status and filtered headers at once, the body as it arrives.
///
/// Every status comes back as it is, 4xx and 5xx included: they are Personio's answer to the caller, not a failure
/// of the proxy. Iterate ``body`` once, promptly: until it is read to the end or dropped, the upstream connection
/// stays busy.
public struct ProxyResponse: Sendable {
    /// Personio's HTTP status.
    public var status: Int
    /// The headers ``PersonioProxy`` passes back (`Content-Type`, `Content-Length` when the body is not chunked,
    /// `Retry-After`, `X-RateLimit-*`, `ETag`, `Last-Modified`), in arrival order.
    public var headers: [(String, String)]
    /// The body, streamed.
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

    /// The response body as a single-pass stream of buffers. A failure while it streams (Personio fell silent for
    /// the HTTP client's read time-out, closed the connection, the task was cancelled) is thrown as a
    /// ``PersonioAuthError`` with code `.unavailable`, sanitized like every other.
    public struct Body: AsyncSequence, Sendable {
        public typealias Element = ByteBuffer
        public typealias Failure = PersonioAuthError

        private enum Source: Sendable {
            case upstream(HTTPClientResponse.Body, Redactor)
            case buffers([ByteBuffer])
        }

        private let source: Source
        /// Overwrites the injected credential wherever it appears in the body.
        private let scrubber: CredentialScrubber
        private let report: CredentialEchoReport

        init(
            upstream: HTTPClientResponse.Body,
            redactor: Redactor,
            scrubber: CredentialScrubber,
            report: CredentialEchoReport
        ) {
            self.source = .upstream(upstream, redactor)
            self.scrubber = scrubber
            self.report = report
        }

        /// A body made of `buffers`, for tests and for answers that do not come from Personio.
        ///
        /// - Parameter buffers: The chunks, in order.
        public init(_ buffers: [ByteBuffer] = []) {
            self.init(buffers, scrubber: .none, report: CredentialEchoReport(nil))
        }

        /// A body made of `buffers`, scrubbed like an upstream body: for tests of the scrubbing.
        init(_ buffers: [ByteBuffer], scrubber: CredentialScrubber, report: CredentialEchoReport) {
            self.source = .buffers(buffers)
            self.scrubber = scrubber
            self.report = report
        }

        public func makeAsyncIterator() -> AsyncIterator {
            switch self.source {
            case .upstream(let body, let redactor):
                AsyncIterator(
                    upstream: body.makeAsyncIterator(),
                    buffers: [],
                    redactor: redactor,
                    scrubber: self.scrubber,
                    report: self.report
                )
            case .buffers(let buffers):
                AsyncIterator(
                    upstream: nil,
                    buffers: buffers,
                    redactor: .none,
                    scrubber: self.scrubber,
                    report: self.report
                )
            }
        }

        /// Reads the whole body, failing past `maximumBytes`.
        ///
        /// - Parameter maximumBytes: The most bytes accepted.
        /// - Returns: The body in one buffer.
        /// - Throws: ``PersonioAuthError``: `.unavailable` as for iteration, `.invalidResponse` past `maximumBytes`.
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

            /// Advanced in place (never copied out and back), so that the HTTP client's iterator stays uniquely
            /// referenced.
            private var upstream: HTTPClientResponse.Body.AsyncIterator?
            private var buffers: IndexingIterator<[ByteBuffer]>
            private let redactor: Redactor
            private let scrubber: CredentialScrubber
            private let report: CredentialEchoReport
            /// The last ``CredentialScrubber/overlap`` bytes seen, scrubbed as far as they go but held back: they may
            /// be the start of an occurrence that the next chunk completes.
            private var heldBack: ByteBuffer?

            fileprivate init(
                upstream: HTTPClientResponse.Body.AsyncIterator?,
                buffers: [ByteBuffer],
                redactor: Redactor,
                scrubber: CredentialScrubber,
                report: CredentialEchoReport
            ) {
                self.upstream = upstream
                self.buffers = buffers.makeIterator()
                self.redactor = redactor
                self.scrubber = scrubber
                self.report = report
            }

            public mutating func next() async throws(PersonioAuthError) -> ByteBuffer? {
                guard !self.scrubber.isEmpty else { return try await self.nextChunk() }
                while true {
                    guard let chunk = try await self.nextChunk() else {
                        // The end: what was held back cannot begin an occurrence any more.
                        defer { self.heldBack = nil }
                        return self.heldBack.flatMap { $0.readableBytes > 0 ? $0 : nil }
                    }
                    if let piece = await self.scrubbed(chunk) { return piece }
                }
            }

            /// `chunk` after the held-back bytes, scrubbed, minus the new held-back tail; nil when everything is
            /// held back (a chunk shorter than the overlap).
            private mutating func scrubbed(_ chunk: ByteBuffer) async -> ByteBuffer? {
                var combined: ByteBuffer
                if let heldBack = self.heldBack, heldBack.readableBytes > 0 {
                    // One copy per chunk; the stream holds at most one chunk and the overlap at a time.
                    combined = ByteBufferAllocator().buffer(capacity: heldBack.readableBytes + chunk.readableBytes)
                    combined.writeImmutableBuffer(heldBack)
                    combined.writeImmutableBuffer(chunk)
                } else {
                    combined = chunk
                }
                self.heldBack = nil
                if self.scrubber.scrub(&combined) { await self.report.report() }
                let keep = Swift.min(self.scrubber.overlap, combined.readableBytes)
                let piece = combined.readSlice(length: combined.readableBytes - keep)
                self.heldBack = combined
                return piece.flatMap { $0.readableBytes > 0 ? $0 : nil }
            }

            private mutating func nextChunk() async throws(PersonioAuthError) -> ByteBuffer? {
                guard self.upstream != nil else { return self.buffers.next() }
                do {
                    return try await self.upstream?.next()
                } catch {
                    throw Self.streamFailure(error, redactor: self.redactor)
                }
            }

            private static func streamFailure(_ error: any Error, redactor: Redactor) -> PersonioAuthError {
                if let error = error as? HTTPClientError, error == .readTimeout {
                    return PersonioAuthError(.unavailable, "Personio stopped sending its answer halfway")
                }
                if let error = error as? HTTPClientError, error == .remoteConnectionClosed {
                    return PersonioAuthError(
                        .unavailable,
                        "Personio closed the connection before the end of its answer"
                    )
                }
                return PersonioAuthClient.transportFailure(
                    error,
                    timeout: PersonioAuthClient.defaultReadTimeout,
                    redactor: redactor
                )
            }
        }
    }
}
