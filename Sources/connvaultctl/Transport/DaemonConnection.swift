import VaultAPI

/// One request to one of the daemon's Unix sockets on a connection of its own: connect (and, for the admin socket,
/// check who serves it), write the request, read the whole response, close. `connvaultctl` makes one or two requests
/// per run, so nothing is kept alive.
///
/// The call blocks the calling thread until the answer or ``timeout``: the CLI has nothing else to do meanwhile.
struct DaemonConnection {
    let socketPath: String
    let kind: SocketKind
    let timeout: Duration

    /// Sends a request whose body is read straight from `body` (no copy, so a caller holding a secret can zero it).
    /// Any status is returned as a response; only transport failures throw.
    ///
    /// - Throws: `DaemonError` `.cannotConnect`, `.timedOut`, `.invalidResponse`, `.invalidRequest` or
    ///   `.untrustedServer`.
    func perform(
        method: String,
        target: String,
        headers: [HeaderField],
        body: UnsafeRawBufferPointer?
    ) throws -> ClientResponse {
        try self.validate(method: method, target: target, headers: headers)
        let deadline = Deadline(after: self.timeout)
        let head = RequestHead.encode(method: method, target: target, headers: headers, bodyLength: body?.count)
        let socket = try UnixSocket(connectingTo: self.socketPath, kind: self.kind, deadline: deadline)
        defer { socket.close() }
        do {
            return try Self.exchange(on: socket, head: head, body: body, method: method, deadline: deadline)
        } catch SocketIOError.closed {
            throw DaemonError(
                .invalidResponse,
                "\(self.socketPath) closed the connection without answering",
                socketPath: self.socketPath
            )
        } catch var error as DaemonError {
            if error.socketPath == nil {
                error.socketPath = self.socketPath
                if error.code == .invalidResponse {
                    error.message = "bad answer from \(self.socketPath): \(error.message)"
                }
            }
            throw error
        }
    }

    private static func exchange(
        on socket: UnixSocket,
        head: [UInt8],
        body: UnsafeRawBufferPointer?,
        method: String,
        deadline: Deadline
    ) throws -> ClientResponse {
        do {
            try head.withUnsafeBytes { try socket.writeAll($0, deadline: deadline) }
            if let body, !body.isEmpty {
                try socket.writeAll(body, deadline: deadline)
            }
        } catch SocketIOError.closed {
            // The server may have answered early (413 for a body too large) and closed: read what it said, if anything.
        }
        var parser = ResponseParser(requestMethod: method)
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let count: Int
            do {
                count = try buffer.withUnsafeMutableBytes { try socket.read(into: $0, deadline: deadline) }
            } catch SocketIOError.closed where parser.receivedAnything {
                throw DaemonError(.invalidResponse, "the connection was reset in the middle of a response")
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

    private func validate(method: String, target: String, headers: [HeaderField]) throws {
        guard RequestHead.isSafe(method), RequestHead.isSafe(target), target.hasPrefix("/") else {
            throw DaemonError(
                .invalidRequest,
                "the request line has a space, a control character or no leading '/'",
                socketPath: self.socketPath
            )
        }
        for header in headers {
            let nameOK = RequestHead.isSafe(header.name) && !header.name.contains(":")
            let valueOK = header.value.utf8.allSatisfy { $0 >= 0x20 && $0 != 0x7F || $0 == 0x09 }
            guard nameOK, valueOK else {
                throw DaemonError(
                    .invalidRequest,
                    "the header '\(header.name)' would break the request",
                    socketPath: self.socketPath
                )
            }
        }
    }
}
