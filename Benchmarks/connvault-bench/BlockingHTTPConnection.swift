import Glibc

/// One keep-alive HTTP/1.1 connection over a Unix socket, with blocking `send`/`read` and a minimal response parser
/// (status line, `Content-Length`): the load generator's client, lean enough that its own CPU time stays small
/// beside the server's.
///
/// `@unchecked Sendable`: a connection is opened by the coordinating thread and then handed to exactly one
/// connection thread, which alone uses it until it is joined; it is never used from two threads at once.
final class BlockingHTTPConnection: @unchecked Sendable {
    /// A parsed response. `body` is filled only when asked for; the load loop needs only the status.
    struct Response {
        var status: Int
        /// Status line and headers, with the blank line that ends them.
        var headerLength: Int
        var bodyLength: Int
        var body: [UInt8]
    }

    private static let capacity = 1 << 16
    private let fd: Int32
    private let buffer: UnsafeMutablePointer<UInt8>
    /// Unconsumed bytes are `buffer[start..<end]`.
    private var start = 0
    private var end = 0
    private var isClosed = false

    /// Connects to `socketPath`.
    /// - Throws: `BenchError` when the socket does not accept the connection.
    init(socketPath: String) throws {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw BenchError.posix("socket") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let path = Array(socketPath.utf8)
        guard path.count < MemoryLayout.size(ofValue: address.sun_path) else {
            Glibc.close(fd)
            throw BenchError("socket path too long (\(path.count) bytes): \(socketPath)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: path)
        }
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else {
            let error = BenchError.posix("connect", socketPath)
            Glibc.close(fd)
            throw error
        }
        // A server that stops answering must end the run with an error, not hang it in `read`.
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        self.fd = fd
        self.buffer = .allocate(capacity: Self.capacity)
    }

    /// Waits until `socketPath` accepts connections, or fails early when `process` has ended.
    static func waitUntilAccepting(socketPath: String, process: ChildProcess, timeout: Double = 30) throws {
        let deadline = MonotonicClock.now() + UInt64(timeout * 1e9)
        while MonotonicClock.now() < deadline {
            guard process.isRunning else {
                throw BenchError("\(process.executable) exited during start-up:\n\(process.logTail())")
            }
            if let connection = try? BlockingHTTPConnection(socketPath: socketPath) {
                connection.close()
                return
            }
            MonotonicClock.sleep(seconds: 0.02)
        }
        throw BenchError("\(process.executable) did not accept on \(socketPath) within \(timeout) s")
    }

    /// Writes a whole pre-built request.
    func send(_ request: [UInt8]) throws {
        try request.withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let sent = Glibc.send(self.fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
                if sent < 0 && errno == EINTR { continue }
                guard sent > 0 else { throw BenchError.posix("send") }
                offset += sent
            }
        }
    }

    /// Reads one response.
    /// - Parameter keepBody: copy the body out; the load loop skips the copy.
    func receive(keepBody: Bool = false) throws -> Response {
        var headerEnd = 0
        while true {
            headerEnd = self.findHeaderEnd()
            if headerEnd > 0 { break }
            try self.fill()
        }
        let status = try self.parseStatus()
        guard let bodyLength = self.parseContentLength(headerEnd: headerEnd) else {
            throw BenchError("response without Content-Length (chunked responses are not supported)")
        }
        let total = headerEnd - self.start + bodyLength
        guard total <= Self.capacity else { throw BenchError("response of \(total) bytes is too large") }
        while self.end - self.start < total {
            try self.fill()
        }
        let body = keepBody ? Array(UnsafeBufferPointer(start: self.buffer + headerEnd, count: bodyLength)) : []
        let headerLength = headerEnd - self.start
        self.start += total
        if self.start == self.end {
            self.start = 0
            self.end = 0
        }
        return Response(status: status, headerLength: headerLength, bodyLength: bodyLength, body: body)
    }

    /// Sends a `GET` and reads the response, body included.
    func get(_ path: String) throws -> Response {
        try self.send(Self.request(path: path))
        return try self.receive(keepBody: true)
    }

    /// The bytes of `GET <path> HTTP/1.1` with a `Host` header, built once per connection.
    static func request(path: String) -> [UInt8] {
        Array("GET \(path) HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8)
    }

    func close() {
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
        guard self.end < Self.capacity else { throw BenchError("response header too large") }
        while true {
            let count = read(self.fd, self.buffer + self.end, Self.capacity - self.end)
            if count < 0 && errno == EINTR { continue }
            if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                throw BenchError("no response within 30 s")
            }
            guard count >= 0 else { throw BenchError.posix("read") }
            guard count > 0 else { throw BenchError("the server closed the connection") }
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
        guard self.end - self.start >= 12 else { throw BenchError("malformed status line") }
        let digits = (9..<12).map { self.buffer[self.start + $0] }
        guard digits.allSatisfy({ (0x30...0x39).contains($0) }) else { throw BenchError("malformed status line") }
        return digits.reduce(0) { $0 * 10 + Int($1 - 0x30) }
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
