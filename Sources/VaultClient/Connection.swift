import Synchronization

/// An HTTP/1.1 connection to one of the daemon's Unix sockets, kept alive between requests when the server allows.
///
/// Requests on one `Connection` are serialised: a second caller waits until the first response has been read. The
/// socket is opened on the first request, reopened transparently when the server closed an idle connection, and
/// closed by ``close()`` (or when the object goes away). Every request, including connecting, must finish within
/// ``timeout``.
///
/// The calls block the calling thread; from Swift concurrency use ``AppClient`` or ``AdminClient``, whose `async`
/// methods run them on a dispatch queue outside the cooperative pool.
public final class Connection: Sendable {
    public let socketPath: String
    public let kind: SocketKind?
    public let timeout: Duration
    /// Whether to ask the server to close after each response (one-shot use, as in `connvaultctl`).
    public let closesAfterEachRequest: Bool
    private let socket = Mutex<UnixSocket?>(nil)

    /// A connection to `socketPath`; nothing is opened until the first request.
    ///
    /// - Parameters:
    ///   - socketPath: The Unix socket's path, at most 107 bytes.
    ///   - kind: Which socket this is, used in error messages to name the flag and environment variable.
    ///   - timeout: The limit for one request: connect, write, and read the whole response. 30 s by default.
    ///   - closesAfterEachRequest: Sends `Connection: close` and closes after each response.
    /// - Throws: `VaultClientError` `.invalidRequest` when the path is empty or too long.
    public init(
        socketPath: String,
        kind: SocketKind? = nil,
        timeout: Duration = .seconds(30),
        closesAfterEachRequest: Bool = false
    ) throws {
        try SocketPath.validate(socketPath, kind: kind)
        self.socketPath = socketPath
        self.kind = kind
        self.timeout = timeout
        self.closesAfterEachRequest = closesAfterEachRequest
    }

    deinit {
        self.close()
    }

    /// Closes the socket if one is open; the next request opens a new one.
    public func close() {
        self.socket.withLock { socket in
            socket?.close()
            socket = nil
        }
    }

    /// Sends `request` and reads the whole response. Any status is returned as a response; only transport failures
    /// throw.
    ///
    /// - Throws: `VaultClientError` `.cannotConnect`, `.timedOut`, `.invalidResponse` or `.invalidRequest`.
    public func send(_ request: ClientRequest) throws -> ClientResponse {
        if let body = request.body {
            return try body.withUnsafeBytes { bytes in
                try self.perform(
                    method: request.method,
                    target: request.target,
                    headers: request.headers,
                    body: bytes,
                    cancellation: nil
                )
            }
        }
        return try self.perform(
            method: request.method,
            target: request.target,
            headers: request.headers,
            body: nil,
            cancellation: nil
        )
    }

    // MARK: - Exchange

    /// Sends a request whose body is read straight from `body` (no copy, so a caller holding a secret can zero it).
    func perform(
        method: String,
        target: String,
        headers: [HeaderField],
        body: UnsafeRawBufferPointer?,
        cancellation: CancellationFlag?
    ) throws -> ClientResponse {
        try Self.validate(method: method, target: target, headers: headers, socketPath: self.socketPath)
        let deadline = Deadline(after: self.timeout)
        let head = RequestHead.encode(
            method: method,
            target: target,
            headers: headers,
            bodyLength: body?.count,
            close: self.closesAfterEachRequest
        )
        return try self.socket.withLock { socket in
            var reused = true
            if socket == nil || socket?.isStale == true {
                socket?.close()
                socket = nil
                reused = false
            }
            var attempt = 0
            while true {
                attempt += 1
                let current: UnixSocket
                if let existing = socket {
                    current = existing
                } else {
                    current = try UnixSocket(
                        connectingTo: self.socketPath,
                        kind: self.kind,
                        deadline: deadline,
                        cancellation: cancellation
                    )
                    socket = current
                }
                do {
                    let response = try Self.exchange(
                        on: current,
                        head: head,
                        body: body,
                        method: method,
                        deadline: deadline,
                        cancellation: cancellation
                    )
                    if !response.keepAlive || self.closesAfterEachRequest {
                        current.close()
                        socket = nil
                    }
                    return response
                } catch SocketIOError.closed {
                    current.close()
                    socket = nil
                    // A kept-alive connection the server closed just as we reused it: the request was never read.
                    if reused && attempt == 1 {
                        reused = false
                        continue
                    }
                    throw VaultClientError(
                        .invalidResponse,
                        "\(self.socketPath) closed the connection without answering",
                        socketPath: self.socketPath
                    )
                } catch var error as VaultClientError {
                    current.close()
                    socket = nil
                    if error.socketPath == nil {
                        error.socketPath = self.socketPath
                        if error.code == .invalidResponse {
                            error.message = "bad answer from \(self.socketPath): \(error.message)"
                        }
                    }
                    throw error
                } catch {
                    current.close()
                    socket = nil
                    throw error
                }
            }
        }
    }

    private static func exchange(
        on socket: UnixSocket,
        head: [UInt8],
        body: UnsafeRawBufferPointer?,
        method: String,
        deadline: Deadline,
        cancellation: CancellationFlag?
    ) throws -> ClientResponse {
        do {
            try head.withUnsafeBytes { try socket.writeAll($0, deadline: deadline, cancellation: cancellation) }
            if let body, !body.isEmpty {
                try socket.writeAll(body, deadline: deadline, cancellation: cancellation)
            }
        } catch SocketIOError.closed {
            // The server may have answered early (413 for a body too large) and closed: read what it said, if anything.
        }
        var parser = ResponseParser(requestMethod: method)
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let count: Int
            do {
                count = try buffer.withUnsafeMutableBytes {
                    try socket.read(into: $0, deadline: deadline, cancellation: cancellation)
                }
            } catch SocketIOError.closed where parser.receivedAnything {
                throw VaultClientError(.invalidResponse, "the connection was reset in the middle of a response")
            }
            if count == 0 {
                if !parser.receivedAnything { throw SocketIOError.closed }
                return try parser.finish()
            }
            if let response = try parser.feed(buffer[0..<count]) {
                return response
            }
        }
    }

    private static func validate(method: String, target: String, headers: [HeaderField], socketPath: String) throws {
        guard RequestHead.isSafe(method), RequestHead.isSafe(target), target.hasPrefix("/") else {
            throw VaultClientError(
                .invalidRequest,
                "the request line has a space, a control character or no leading '/'",
                socketPath: socketPath
            )
        }
        for header in headers {
            let nameOK = RequestHead.isSafe(header.name) && !header.name.contains(":")
            let valueOK = header.value.utf8.allSatisfy { $0 >= 0x20 && $0 != 0x7F || $0 == 0x09 }
            guard nameOK, valueOK else {
                throw VaultClientError(
                    .invalidRequest,
                    "the header '\(header.name)' would break the request",
                    socketPath: socketPath
                )
            }
        }
    }
}
