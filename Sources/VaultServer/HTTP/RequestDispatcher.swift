import Logging
import NIOCore
import NIOHTTP1
import VaultAPI
import VaultCore

/// Everything one socket needs to answer requests: its route table, who may use it, its counters and logger.
///
/// The dispatcher checks, in this order: the caller's authorization, the route, `{id}` parameters, the body's
/// presence and media type; then it runs the route's action. Every failure on the way is thrown to
/// ``ErrorResponse``, the one place that turns errors into responses.
public struct RequestDispatcher: Sendable {
    /// The socket's name in logs and metrics: `admin` or `app`.
    public var socket: String
    public var router: Router
    /// Whether a caller may use this socket at all. The admin socket refuses everyone but admins on every route.
    public var authorize: @Sendable (Caller) -> Bool
    public var metrics: ServerMetrics
    public var logger: Logger
    /// The largest request body accepted (DESIGN §7: 64 KiB).
    public var bodyLimit: Int

    public static let defaultBodyLimit = 64 * 1024

    /// Whether this socket's connections allocate their buffers from the zeroing allocator: the admin socket's
    /// requests carry secrets (create, edit, reset), and NIO frees read buffers without zeroing them.
    var zeroesFreedBuffers: Bool { self.socket == "admin" }

    public init(
        socket: String,
        router: Router,
        authorize: @escaping @Sendable (Caller) -> Bool = { _ in true },
        metrics: ServerMetrics,
        logger: Logger,
        bodyLimit: Int = Self.defaultBodyLimit
    ) {
        self.socket = socket
        self.router = router
        self.authorize = authorize
        self.metrics = metrics
        self.logger = logger
        self.bodyLimit = bodyLimit
    }

    /// A response now, or one to wait for.
    enum Outcome {
        case immediate(Response)
        case deferred(EventLoopFuture<Response>)
    }

    /// What the connection handler needs to finish a request: the outcome, and names for the log and metrics.
    struct Dispatch {
        var outcome: Outcome
        var requestID: RequestID
        /// The matched route's name, or a fixed word when none matched.
        var route: String
        /// The connection's logger (``logger`` adds the request's metadata).
        var connectionLogger: Logger
        /// The `{id}` of the route, once it is known to be a valid connection id.
        var connectionID: String?

        /// A logger with the request's metadata, built when something is logged.
        var logger: Logger {
            RequestDispatcher.requestLogger(
                self.connectionLogger,
                requestID: self.requestID,
                connectionID: self.connectionID
            )
        }
    }

    /// `connectionLogger` with `request.id` and, when there is one, `connection.id` (ids are checked before a route
    /// runs, so only valid ones get here).
    static func requestLogger(_ connectionLogger: Logger, requestID: RequestID, connectionID: String?) -> Logger {
        var logger = connectionLogger
        logger[metadataKey: "request.id"] = "\(requestID)"
        if let connectionID { logger[metadataKey: "connection.id"] = "\(connectionID)" }
        return logger
    }

    /// The part of a dispatch that needs only the request head: the caller's authorization, the route and its
    /// `{id}`. Made when the head arrives, so that a route that streams its body (the proxy) can start at once.
    ///
    /// A class, and immutable: the handler, the forwarding exchange and the answer's head each keep or pass it, and
    /// copying the struct it was (a `Result` of a route match or an error) cost about 800 instructions a copy,
    /// three times per proxied request.
    final class Resolution {
        let requestID: RequestID
        let routeName: String
        let connectionID: String?
        /// The route with its parameters and the split target, or why there is none (answered once the request is
        /// complete, like every refusal).
        let matched: Result<Matched, HTTPError>

        init(requestID: RequestID, routeName: String, connectionID: String?, matched: Result<Matched, HTTPError>) {
            self.requestID = requestID
            self.routeName = routeName
            self.connectionID = connectionID
            self.matched = matched
        }

        /// The route streams its body: it runs when the head arrives.
        var forwardAction: (@Sendable (Request, ForwardingExchange) -> Void)? {
            guard case .success(let matched) = self.matched, case .forward(let action) = matched.route.action else {
                return nil
            }
            return action
        }
    }

    struct Matched {
        var route: Route
        var parameters: PathParameters
        var path: Substring
        var query: Substring
    }

    /// Authorizes `caller`, matches the route of `head` and checks its `{id}`.
    func resolve(head: HTTPRequestHead, caller: Caller) -> Resolution {
        var routeName = "unmatched"
        var connectionID: String?
        let matched = self.match(head, caller: caller, routeName: &routeName, connectionID: &connectionID)
        return Resolution(
            requestID: RequestID.next(),
            routeName: routeName,
            connectionID: connectionID,
            matched: matched
        )
    }

    private func match(
        _ head: HTTPRequestHead,
        caller: Caller,
        routeName: inout String,
        connectionID: inout String?
    ) -> Result<Matched, HTTPError> {
        guard self.authorize(caller) else {
            routeName = "forbidden"
            return .failure(
                HTTPError(
                    .forbidden,
                    "uid \(caller.uid) may not use the \(self.socket) socket: it serves only root, the daemon's own user and members of its admin group"
                )
            )
        }
        let (path, query) = Self.split(head.uri)
        switch self.router.match(method: head.method, path: path) {
        case .notFound:
            return .failure(
                HTTPError(
                    .notFound,
                    "no such route: \(head.method.rawValue) \(DecodingProblem.printable(String(path)))"
                )
            )
        case .methodNotAllowed(let allowed):
            let names = allowed.map(\.rawValue).joined(separator: ", ")
            return .failure(
                HTTPError(
                    .methodNotAllowed,
                    "\(head.method.rawValue) is not allowed here; allowed: \(names)",
                    headers: ["Allow": names]
                )
            )
        case .matched(let route, let parameters):
            routeName = route.name
            if let id = parameters["id"] {
                guard ConnectionID.isValid(id) else {
                    return .failure(
                        HTTPError(
                            .invalidID,
                            "connection ids are 1 to 63 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
                        )
                    )
                }
                connectionID = id
            }
            return .success(Matched(route: route, parameters: parameters, path: path, query: query))
        }
    }

    /// The request a route sees, for a resolved head and its body.
    func request(
        _ matched: Matched,
        _ resolution: Resolution,
        head: HTTPRequestHead,
        body: RequestBody,
        caller: Caller,
        logger connectionLogger: Logger
    ) -> Request {
        Request(
            id: resolution.requestID,
            method: head.method,
            path: matched.path,
            query: matched.query,
            headers: head.headers,
            caller: caller,
            parameters: matched.parameters,
            body: body,
            connectionLogger: connectionLogger
        )
    }

    /// Runs the request described by `head` and `body` for `caller`.
    ///
    /// Synchronous routes and every refusal answer at once on the calling event loop; asynchronous routes run in a
    /// task whose result is delivered on `eventLoop`.
    func dispatch(
        head: HTTPRequestHead,
        body: RequestBody,
        caller: Caller,
        logger connectionLogger: Logger,
        on eventLoop: any EventLoop
    ) -> Dispatch {
        self.dispatch(
            self.resolve(head: head, caller: caller),
            head: head,
            body: body,
            caller: caller,
            logger: connectionLogger,
            on: eventLoop
        )
    }

    /// Runs a request resolved by ``resolve(head:caller:)`` now that its body is complete.
    func dispatch(
        _ resolution: Resolution,
        head: HTTPRequestHead,
        body: RequestBody,
        caller: Caller,
        logger connectionLogger: Logger,
        on eventLoop: any EventLoop
    ) -> Dispatch {
        func answer(_ outcome: Outcome) -> Dispatch {
            Dispatch(
                outcome: outcome,
                requestID: resolution.requestID,
                route: resolution.routeName,
                connectionLogger: connectionLogger,
                connectionID: resolution.connectionID
            )
        }
        do {
            let matched = try resolution.matched.get()
            try Self.checkBody(body, of: head, for: matched.route)
            let request = self.request(
                matched,
                resolution,
                head: head,
                body: body,
                caller: caller,
                logger: connectionLogger
            )
            switch matched.route.action {
            case .sync(let action):
                return answer(.immediate(try action(request)))
            case .async(let action):
                return Self.deferred(action, request, on: eventLoop, route: resolution.routeName)
            case .cached(let cached, let fallback):
                if let response = try cached(request) { return answer(.immediate(response)) }
                return Self.deferred(fallback, request, on: eventLoop, route: resolution.routeName)
            case .forward:
                preconditionFailure("a forwarding route runs when its head arrives")
            }
        } catch {
            let logger = Self.requestLogger(
                connectionLogger,
                requestID: resolution.requestID,
                connectionID: resolution.connectionID
            )
            return answer(
                .immediate(
                    ErrorResponse.response(for: error, requestID: resolution.requestID.description, logger: logger)
                )
            )
        }
    }

    /// Runs `action` in a task; its answer (or its error, as a problem) completes the returned dispatch on `eventLoop`.
    static func deferred(
        _ action: @escaping @Sendable (Request) async throws -> Response,
        _ request: Request,
        on eventLoop: any EventLoop,
        route: String
    ) -> Dispatch {
        let promise = eventLoop.makePromise(of: Response.self)
        promise.completeWithTask {
            do {
                return try await action(request)
            } catch {
                return ErrorResponse.response(for: error, requestID: request.id.description, logger: request.logger)
            }
        }
        return Dispatch(
            outcome: .deferred(promise.futureResult),
            requestID: request.id,
            route: route,
            connectionLogger: request.connectionLogger,
            connectionID: request.parameters["id"]
        )
    }

    /// Refuses a body the route does not take, a missing required body, and a body that is not JSON.
    static func checkBody(_ body: RequestBody, of head: HTTPRequestHead, for route: Route) throws(HTTPError) {
        if body.isEmpty {
            if route.body == .required { throw HTTPError(.invalidJSON, "a JSON body is required") }
            return
        }
        guard route.body != .none else {
            throw HTTPError(.badRequest, "\(route.name) takes no request body")
        }
        guard let contentType = head.headers.first(name: "Content-Type"), Self.isJSON(contentType) else {
            throw HTTPError(.unsupportedMediaType, "request bodies must be application/json")
        }
    }

    /// `application/json`, with or without parameters such as `; charset=utf-8`, in any letter case.
    static func isJSON(_ contentType: String) -> Bool {
        let mediaType = contentType.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false)[0]
        return mediaType.trimmingWhitespace().lowercased() == "application/json"
    }

    /// The request target split into path and query. Only origin-form targets (`/path?query`) can match a route:
    /// clients of a Unix socket have no reason to send any other form.
    static func split(_ uri: String) -> (path: Substring, query: Substring) {
        // Scanned as UTF-8 code units, once: '#' and '?' are ASCII, and a Character walk would cost grapheme breaking.
        // `withUTF8` hands out the bytes in place (it copies only a string that has no contiguous UTF-8).
        var scanned = uri
        let (question, end) = scanned.withUTF8 { bytes -> (question: Int?, end: Int) in
            var question: Int?
            for offset in bytes.indices {
                switch bytes[offset] {
                case UInt8(ascii: "#"): return (question, offset)
                case UInt8(ascii: "?") where question == nil: question = offset
                default: break
                }
            }
            return (question, bytes.count)
        }
        let utf8 = uri.utf8
        let target = Substring(uri)
        let endIndex = utf8.index(utf8.startIndex, offsetBy: end)
        guard let question else { return (target[..<endIndex], target[endIndex..<endIndex]) }
        let questionIndex = utf8.index(utf8.startIndex, offsetBy: question)
        return (target[..<questionIndex], target[utf8.index(after: questionIndex)..<endIndex])
    }
}
