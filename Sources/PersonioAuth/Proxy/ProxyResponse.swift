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

        init(upstream: HTTPClientResponse.Body, redactor: Redactor) {
            self.source = .upstream(upstream, redactor)
        }

        /// A body made of `buffers`, for tests and for answers that do not come from Personio.
        ///
        /// - Parameter buffers: The chunks, in order.
        public init(_ buffers: [ByteBuffer] = []) {
            self.source = .buffers(buffers)
        }

        public func makeAsyncIterator() -> AsyncIterator {
            switch self.source {
            case .upstream(let body, let redactor):
                AsyncIterator(upstream: body.makeAsyncIterator(), buffers: [], redactor: redactor)
            case .buffers(let buffers):
                AsyncIterator(upstream: nil, buffers: buffers, redactor: .none)
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

            fileprivate init(
                upstream: HTTPClientResponse.Body.AsyncIterator?,
                buffers: [ByteBuffer],
                redactor: Redactor
            ) {
                self.upstream = upstream
                self.buffers = buffers.makeIterator()
                self.redactor = redactor
            }

            public mutating func next() async throws(PersonioAuthError) -> ByteBuffer? {
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
