#if canImport(Glibc)
import Glibc
#endif

/// One keep-alive HTTP/1.1 connection over a Unix socket, with blocking `send` and `receive` and a minimal
/// response parser (status line, `Content-Length`): lean enough to be the load generator's client
/// (`connvault-bench`), whose own CPU time must stay small beside the server's, and what a test uses to hold a
/// connection open or to send several requests on one.
///
/// No allocation per request on the receive path when the body is not kept: one buffer per connection, parsed in
/// place. No Foundation, no polling: `receive` blocks in `read` up to the connection's time-out.
///
/// `@unchecked Sendable`: a connection may be opened on one thread and handed to another, which alone uses it from
/// then on (the load generator's connection threads, joined before the connection is closed); it is never used from
/// two threads at once.
public final class BlockingHTTPConnection: @unchecked Sendable {
    /// A parsed response. `body` is filled only when asked for; a load loop needs only the status.
    public struct Response: Sendable {
        public var status: Int
        /// Status line and headers, with the blank line that ends them.
        public var headerLength: Int
        public var bodyLength: Int
        /// The status line and headers, without the blank line; filled only with the body.
        public var head: String
        public var body: [UInt8]
    }

    private static let capacity = 1 << 16
    private let fd: Int32
    private let buffer: UnsafeMutablePointer<UInt8>
    /// Unconsumed bytes are `buffer[start..<end]`.
    private var start = 0
    private var end = 0
    private var isClosed = false

    /// Connects to `socketPath` (close-on-exec, so no child process started meanwhile inherits it).
    /// - Parameters:
    ///   - socketPath: The Unix socket.
    ///   - timeout: How long one `receive` may wait for the server (`SO_RCVTIMEO`): a server that stops answering
    ///     ends the caller with an error instead of hanging it.
    /// - Throws: `TestSupportError` when the path is too long or the socket does not accept the connection.
    public init(socketPath: String, timeout: Duration = .seconds(30)) throws {
        let fd = try Self.connectedSocket(socketPath)
        let (seconds, attoseconds) = timeout.components
        var receiveTimeout = timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &receiveTimeout, socklen_t(MemoryLayout<timeval>.size))
        self.fd = fd
        self.buffer = .allocate(capacity: Self.capacity)
    }

    /// A stream socket connected to the Unix socket at `path`, close-on-exec; the caller closes it. For a test that
    /// needs the bare descriptor (to hold a connection open, or to send bytes no client would).
    /// - Throws: `TestSupportError` when the path is too long or nothing accepts the connection.
    public static func connectedSocket(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestSupportError("socket: \(String(cString: strerror(errno)))") }
        do {
            guard try UnixAddress.connect(fd, to: path) == 0 else {
                throw TestSupportError("connect \(path): \(String(cString: strerror(errno)))")
            }
        } catch {
            Glibc.close(fd)
            throw error
        }
        return fd
    }

    /// Waits until `socketPath` accepts connections.
    /// - Parameters:
    ///   - socketPath: The Unix socket.
    ///   - timeout: How long to try.
    ///   - isRunning: Asked before each try; waiting ends early with an error once it says the server has ended.
    /// - Throws: `TestSupportError` when the server ended or the time ran out.
    public static func waitUntilAccepting(
        socketPath: String,
        timeout: Duration = .seconds(30),
        isRunning: () -> Bool = { true }
    ) throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard isRunning() else { throw TestSupportError("the server ended before accepting on \(socketPath)") }
            if let connection = try? BlockingHTTPConnection(socketPath: socketPath) {
                connection.close()
                return
            }
            usleep(20_000)
        }
        throw TestSupportError("nothing accepted on \(socketPath) within \(timeout)")
    }

    /// Writes all of `request`.
    /// - Throws: `TestSupportError` when the server has closed the connection.
    public func send(_ request: [UInt8]) throws {
        try SocketWrites.sendAll(self.fd, request)
    }

    /// Reads one response framed by `Content-Length`.
    /// - Parameter keepBody: Copy the head and body out; a load loop skips the copies.
    /// - Throws: `TestSupportError` when the server closes the connection, answers with no `Content-Length`, or
    ///   sends nothing within the time-out.
    public func receive(keepBody: Bool = false) throws -> Response {
        var headerEnd = 0
        while true {
            headerEnd = self.findHeaderEnd()
            if headerEnd > 0 { break }
            try self.fill()
        }
        let status = try self.parseStatus()
        guard let bodyLength = self.parseContentLength(headerEnd: headerEnd) else {
            throw TestSupportError("response without Content-Length (chunked responses are not supported)")
        }
        let total = headerEnd - self.start + bodyLength
        guard total <= Self.capacity else { throw TestSupportError("response of \(total) bytes is too large") }
        while self.end - self.start < total {
            try self.fill()
        }
        var head = ""
        var body: [UInt8] = []
        if keepBody {
            head = String(
                decoding: UnsafeBufferPointer(start: self.buffer + self.start, count: headerEnd - 4 - self.start),
                as: UTF8.self
            )
            body = Array(UnsafeBufferPointer(start: self.buffer + headerEnd, count: bodyLength))
        }
        let headerLength = headerEnd - self.start
        self.start += total
        if self.start == self.end {
            self.start = 0
            self.end = 0
        }
        return Response(status: status, headerLength: headerLength, bodyLength: bodyLength, head: head, body: body)
    }

    /// Sends `GET path` and reads the response, head and body included.
    public func get(_ path: String) throws -> Response {
        try self.send(Self.request(path: path))
        return try self.receive(keepBody: true)
    }

    /// The bytes of `GET <path> HTTP/1.1` with a `Host` header: build them once and send them many times.
    public static func request(path: String) -> [UInt8] {
        Array("GET \(path) HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8)
    }

    /// Closes the socket; calling it again does nothing.
    public func close() {
        guard !self.isClosed else { return }
        self.isClosed = true
        _ = Glibc.close(self.fd)
        self.buffer.deallocate()
    }

    deinit {
        self.close()
    }

    // MARK: - Parsing

    private func fill() throws {
        if self.start > 0 {
            // Keep the partial response at the front so the buffer has room for the rest.
            memmove(self.buffer, self.buffer + self.start, self.end - self.start)
            self.end -= self.start
            self.start = 0
        }
        guard self.end < Self.capacity else { throw TestSupportError("response header too large") }
        while true {
            let count = read(self.fd, self.buffer + self.end, Self.capacity - self.end)
            if count < 0 && errno == EINTR { continue }
            if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                throw TestSupportError("no response within the connection's time-out")
            }
            guard count >= 0 else { throw TestSupportError("read: \(String(cString: strerror(errno)))") }
            guard count > 0 else { throw TestSupportError("the server closed the connection") }
            self.end += count
            return
        }
    }

    /// The offset just past `\r\n\r\n`, or 0 when the header is not complete yet.
    private func findHeaderEnd() -> Int {
        var index = self.start
        while index + 3 < self.end {
            if self.buffer[index + 3] == 0x0A && self.buffer[index + 2] == 0x0D && self.buffer[index + 1] == 0x0A
                && self.buffer[index] == 0x0D
            {
                return index + 4
            }
            index += 1
        }
        return 0
    }

    private func parseStatus() throws -> Int {
        // "HTTP/1.1 200 ..."
        guard self.end - self.start >= 12 else { throw TestSupportError("malformed status line") }
        var status = 0
        for offset in 9..<12 {
            let digit = self.buffer[self.start + offset]
            guard (0x30...0x39).contains(digit) else { throw TestSupportError("malformed status line") }
            status = status * 10 + Int(digit - 0x30)
        }
        return status
    }

    private static let contentLengthName = Array("content-length:".utf8)

    private func parseContentLength(headerEnd: Int) -> Int? {
        let name = Self.contentLengthName
        var lineStart = self.start
        while lineStart < headerEnd {
            var matches = lineStart + name.count <= headerEnd
            var offset = 0
            while matches && offset < name.count {
                // Header names are case-insensitive; OR-ing 0x20 lower-cases ASCII letters and keeps '-' and ':'.
                matches = (self.buffer[lineStart + offset] | 0x20) == name[offset]
                offset += 1
            }
            if matches {
                var index = lineStart + name.count
                while self.buffer[index] == 0x20 || self.buffer[index] == 0x09 { index += 1 }
                var value = 0
                var sawDigit = false
                while index < headerEnd, (0x30...0x39).contains(self.buffer[index]) {
                    value = value * 10 + Int(self.buffer[index] - 0x30)
                    sawDigit = true
                    index += 1
                }
                return sawDigit ? value : nil
            }
            while lineStart < headerEnd && self.buffer[lineStart] != 0x0A { lineStart += 1 }
            lineStart += 1
        }
        return nil
    }
}
