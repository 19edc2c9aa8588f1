import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import VaultLocks

/// Reads one answer of a token call whole, on the HTTP client's event loop: status, headers and at most `limit` bytes
/// of body. It keeps no reference to the request (whose body carries the credentials), and it holds the call to its
/// deadline on the loop: an answer whose head or end is read after the deadline fails with `.deadlineExceeded`, even
/// when the loop was held up and the answer and the deadline's timer became ready in the same turn.
///
/// With the future-based `execute(request:delegate:deadline:)` the deadline's timer fails the request on the event
/// loop itself. The `async` `execute(_:deadline:)` instead hands the deadline to a `Task`, which needs a thread of
/// Swift's cooperative pool; while that pool was busy, an answer that came after the deadline was taken as a success.
final class AnswerCollector: HTTPClientResponseDelegate {
    typealias Response = UpstreamResponse

    /// The body grew past `limit`.
    struct TooLarge: Error {}

    private struct State {
        var head: HTTPResponseHead?
        var body = ByteBuffer()
        var visitedURLs = 0
    }

    private let limit: Int
    private let deadline: NIODeadline
    private let state = Locked(State())

    init(limit: Int, deadline: NIODeadline) {
        self.limit = limit
        self.deadline = deadline
    }

    /// How many URLs the request went to: more than one when the HTTP client followed a redirect.
    var visitedURLs: Int { self.state.withLock { $0.visitedURLs } }

    func didVisitURL(task: HTTPClient.Task<Response>, _ request: HTTPClient.Request, _ head: HTTPResponseHead) {
        self.state.withLock { $0.visitedURLs += 1 }
    }

    func didReceiveHead(task: HTTPClient.Task<Response>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
        if NIODeadline.now() >= self.deadline {
            return task.eventLoop.makeFailedFuture(HTTPClientError.deadlineExceeded)
        }
        if let length = head.headers.first(name: "Content-Length").flatMap({ Int($0) }), length > self.limit {
            return task.eventLoop.makeFailedFuture(TooLarge())
        }
        self.state.withLock { $0.head = head }
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didReceiveBodyPart(task: HTTPClient.Task<Response>, _ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        let fits = self.state.withLock { state in
            guard state.body.readableBytes + buffer.readableBytes <= self.limit else { return false }
            var buffer = buffer
            state.body.writeBuffer(&buffer)
            return true
        }
        return fits ? task.eventLoop.makeSucceededVoidFuture() : task.eventLoop.makeFailedFuture(TooLarge())
    }

    func didFinishRequest(task: HTTPClient.Task<Response>) throws -> Response {
        if NIODeadline.now() >= self.deadline {
            throw HTTPClientError.deadlineExceeded
        }
        return try self.state.withLock { state in
            guard let head = state.head else { throw HTTPClientError.remoteConnectionClosed }
            return UpstreamResponse(status: Int(head.status.code), headers: head.headers, body: state.body)
        }
    }
}
