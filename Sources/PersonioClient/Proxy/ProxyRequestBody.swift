import NIOCore

/// Where a proxied request's body goes: the upstream connection carrying it.
protocol UpstreamBodyWriter: AnyObject {
    /// Writes and flushes a piece; the future completes once the socket took it.
    func writeBodyPart(_ buffer: ByteBuffer) -> EventLoopFuture<Void>
}

/// A proxied request's body while it arrives: the server appends what it reads from the caller, the exchange writes
/// it to Personio as fast as Personio takes it, and ``demand`` tells the server when to stop reading the caller's
/// socket and when to read again. Never holds more than about ``highWaterMark`` bytes plus one read.
///
/// Bound to the caller's event loop, which must also be the exchange's: every method must be called there.
public final class ProxyRequestBody: @unchecked Sendable {
    /// Buffered or in-flight bytes above which the server is asked to stop reading.
    public static let highWaterMark = 256 * 1024
    /// Buffered or in-flight bytes below which it may read again.
    public static let lowWaterMark = 64 * 1024

    /// Why a body stream was abandoned by its producer.
    public struct Abandoned: Error, Sendable, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    public let eventLoop: any EventLoop
    /// The length the caller declared (`Content-Length`), if any: sent to Personio as the same header.
    public let declaredLength: Int?
    /// Called with `false` when the reader must pause, with `true` when it may resume.
    public var demand: ((Bool) -> Void)?

    private var pending = CircularBuffer<ByteBuffer>()
    /// Bytes appended and not yet acknowledged by a completed upstream write.
    private var outstanding = 0
    private var paused = false
    private var finished = false
    private var failure: (any Error)?
    private var writer: (any UpstreamBodyWriter)?
    private var completion: EventLoopPromise<Void>?
    private var writesInFlight = 0

    /// - Parameters:
    ///   - eventLoop: The caller's connection's event loop.
    ///   - declaredLength: The caller's `Content-Length`, if it sent one.
    public init(eventLoop: any EventLoop, declaredLength: Int?) {
        self.eventLoop = eventLoop
        self.declaredLength = declaredLength
    }

    // MARK: - Producer (the server)

    /// Appends a piece of the caller's body.
    public func append(_ buffer: ByteBuffer) {
        self.eventLoop.assertInEventLoop()
        guard !self.finished, self.failure == nil, buffer.readableBytes > 0 else { return }
        self.outstanding += buffer.readableBytes
        self.pending.append(buffer)
        self.pump()
        if !self.paused, self.outstanding >= Self.highWaterMark {
            self.paused = true
            self.demand?(false)
        }
    }

    /// The caller's body is complete.
    public func finish() {
        self.eventLoop.assertInEventLoop()
        guard !self.finished, self.failure == nil else { return }
        self.finished = true
        self.pump()
    }

    /// The caller's body will not be completed (it went over its limit, the caller went away): the upstream request
    /// is failed with `error`.
    public func abandon(_ error: any Error) {
        self.eventLoop.assertInEventLoop()
        guard self.failure == nil else { return }
        self.failure = error
        self.pending.removeAll()
        self.demand = nil
        self.writer = nil
        if let completion = self.completion {
            self.completion = nil
            completion.fail(error)
        }
    }

    // MARK: - Consumer (the upstream connection)

    /// Starts sending the body to `writer`: every piece is written as soon as it is there. The future completes
    /// once the last piece was written after ``finish()``, and fails when the body is abandoned or a write fails.
    func start(_ writer: any UpstreamBodyWriter) -> EventLoopFuture<Void> {
        self.eventLoop.assertInEventLoop()
        if let failure = self.failure { return self.eventLoop.makeFailedFuture(failure) }
        let promise = self.eventLoop.makePromise(of: Void.self)
        self.writer = writer
        self.completion = promise
        self.pump()
        return promise.futureResult
    }

    private func pump() {
        guard let writer = self.writer, self.failure == nil else { return }
        while let buffer = self.pending.popFirst() {
            let bytes = buffer.readableBytes
            self.writesInFlight += 1
            writer.writeBodyPart(buffer).assumeIsolated().whenComplete { result in
                self.writesInFlight -= 1
                self.written(bytes, result)
            }
        }
        self.completeIfDone()
    }

    private func written(_ bytes: Int, _ result: Result<Void, any Error>) {
        if case .failure(let error) = result {
            self.abandon(error)
            return
        }
        self.outstanding -= bytes
        if self.paused, self.outstanding <= Self.lowWaterMark {
            self.paused = false
            self.demand?(true)
        }
        self.completeIfDone()
    }

    private func completeIfDone() {
        guard self.finished, self.pending.isEmpty, self.writesInFlight == 0, let completion = self.completion else {
            return
        }
        self.completion = nil
        self.demand = nil
        self.writer = nil
        completion.succeed(())
    }
}
