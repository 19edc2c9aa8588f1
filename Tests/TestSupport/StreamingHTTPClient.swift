import CSodium
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A blocking HTTP/1.1 client over one stream socket (Unix or TCP) for bodies too large to hold: it sends a body
/// piece by piece as the test makes it and reads a response body (Content-Length, chunked, or up to end of stream)
/// into a caller's closure, never keeping it. Every `recv` and `send` waits at most the connection's time-out.
///
/// Used from one thread at a time.
public final class StreamingHTTPClient: @unchecked Sendable {
    /// A response head.
    public struct Head: Sendable {
        public var status: Int
        public var headers: [ProxyUpstream.Header]

        /// The value of the first header called `name` (case-insensitive).
        public func header(_ name: String) -> String? {
            self.headers.first { $0.name.lowercased() == name.lowercased() }?.value
        }
    }

    /// The socket; the client closes it.
    public let fd: Int32
    private var buffer = [UInt8](repeating: 0, count: 65536)
    private var start = 0
    private var end = 0
    private var isClosed = false

    /// Connects to the Unix socket at `socketPath`.
    public convenience init(socketPath: String, timeout: Duration = .seconds(30)) throws {
        try self.init(fd: BlockingHTTPConnection.connectedSocket(socketPath), timeout: timeout)
    }

    /// Connects to 127.0.0.1:`port`.
    public convenience init(port: Int, timeout: Duration = .seconds(30)) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestSupportError("socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            let message = String(cString: strerror(errno))
            Glibc.close(fd)
            throw TestSupportError("connect 127.0.0.1:\(port): \(message)")
        }
        try self.init(fd: fd, timeout: timeout)
    }

    /// Takes over a connected stream socket.
    public init(fd: Int32, timeout: Duration = .seconds(30)) throws {
        let (seconds, attoseconds) = timeout.components
        var value = timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
        self.fd = fd
    }

    deinit { self.close() }

    /// Closes the socket; again does nothing.
    public func close() {
        guard !self.isClosed else { return }
        self.isClosed = true
        Glibc.close(self.fd)
    }

    /// Sets `SO_RCVBUF` (a small one makes a stalled reader stall its sender sooner).
    public func setReceiveBuffer(_ bytes: Int) {
        var value = Int32(bytes)
        setsockopt(self.fd, SOL_SOCKET, SO_RCVBUF, &value, socklen_t(MemoryLayout<Int32>.size))
    }

    // MARK: - Sending

    /// Writes all of `bytes`.
    /// - Throws: `TestSupportError` when the peer closed the connection or the time-out passed.
    public func send(_ bytes: UnsafeRawBufferPointer) throws {
        try SocketWrites.sendAll(self.fd, bytes)
    }

    /// Writes all of `bytes`.
    public func send(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try self.send($0) }
    }

    /// Writes all of `text`'s UTF-8.
    public func send(_ text: String) throws {
        try self.send(Array(text.utf8))
    }

    /// Writes a request head: `METHOD target HTTP/1.1`, `Host: localhost`, then `headers`, then the blank line.
    public func sendHead(method: String, target: String, headers: [(String, String)]) throws {
        var text = "\(method) \(target) HTTP/1.1\r\nHost: localhost\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        try self.send(text + "\r\n")
    }

    /// Writes `bytes` as one chunk of a chunked body (nothing for an empty piece; ``sendLastChunk()`` ends it).
    public func sendChunk(_ bytes: UnsafeRawBufferPointer) throws {
        guard bytes.count > 0 else { return }
        try self.send("\(String(bytes.count, radix: 16))\r\n")
        try self.send(bytes)
        try self.send("\r\n")
    }

    /// Ends a chunked body.
    public func sendLastChunk() throws {
        try self.send("0\r\n\r\n")
    }

    // MARK: - Receiving

    /// Whether the peer has sent something not read yet, or closed its end: an early answer to a request whose body
    /// is still being sent.
    public var hasPendingInput: Bool {
        if self.start < self.end { return true }
        var poller = pollfd(fd: self.fd, events: Int16(POLLIN), revents: 0)
        return poll(&poller, 1, 0) > 0
    }

    /// Reads more bytes into the buffer.
    /// - Throws: `TestSupportError` at end of stream, on error, or after the time-out.
    private func fill() throws {
        if self.start == self.end {
            self.start = 0
            self.end = 0
        } else if self.start > 0 {
            let count = self.end - self.start
            self.buffer.withUnsafeMutableBufferPointer { pointer in
                let base = pointer.baseAddress!
                base.update(from: base + self.start, count: count)
            }
            self.end = count
            self.start = 0
        }
        guard self.end < self.buffer.count else { throw TestSupportError("a response line is too long") }
        while true {
            let count = self.buffer.withUnsafeMutableBytes { raw in
                recv(self.fd, raw.baseAddress! + self.end, raw.count - self.end, 0)
            }
            if count < 0 && errno == EINTR { continue }
            if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                throw TestSupportError("nothing received within the connection's time-out")
            }
            guard count >= 0 else { throw TestSupportError("recv: \(String(cString: strerror(errno)))") }
            guard count > 0 else { throw EndOfStream() }
            self.end += count
            return
        }
    }

    /// The peer closed the connection.
    public struct EndOfStream: Error, CustomStringConvertible {
        public var description: String { "the peer closed the connection" }
    }

    private func readLine() throws -> String {
        var scanned = self.start
        while true {
            if let newline = self.buffer[scanned..<self.end].firstIndex(of: 10) {
                var line = self.buffer[self.start..<newline]
                if line.last == 13 { line = line.dropLast() }
                self.start = newline + 1
                return String(decoding: line, as: UTF8.self)
            }
            let offset = self.end - self.start
            try self.fill()
            scanned = self.start + offset
        }
    }

    /// Reads a response head (skipping any 1xx interim answer).
    /// - Throws: ``EndOfStream`` when the peer closed first; `TestSupportError` otherwise.
    public func readHead() throws -> Head {
        while true {
            let statusLine = try self.readLine()
            let parts = statusLine.split(separator: " ", maxSplits: 2)
            guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
                throw TestSupportError("malformed status line \(statusLine.debugDescription)")
            }
            var headers: [ProxyUpstream.Header] = []
            while true {
                let line = try self.readLine()
                if line.isEmpty { break }
                guard let colon = line.firstIndex(of: ":") else { throw TestSupportError("malformed header line") }
                headers.append(
                    ProxyUpstream.Header(
                        String(line[..<colon]),
                        String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
                    )
                )
            }
            if (100..<200).contains(status) && status != 101 { continue }
            return Head(status: status, headers: headers)
        }
    }

    /// Reads the body of a response with `head`, handing it to `sink` in pieces as it arrives, up to `limit` bytes
    /// (then it stops reading and returns; the rest stays unread).
    /// - Returns: The body bytes read.
    /// - Throws: ``EndOfStream`` when the peer closed before the body was complete (a Content-Length or chunked
    ///   body), `TestSupportError` on a time-out or a malformed body.
    @discardableResult
    public func readBody(
        of head: Head,
        method: String = "GET",
        limit: Int = .max,
        _ sink: (UnsafeRawBufferPointer) -> Void = { _ in }
    ) throws -> Int {
        if method == "HEAD" || head.status == 204 || head.status == 304 { return 0 }
        if head.header("Transfer-Encoding")?.lowercased().contains("chunked") ?? false {
            var total = 0
            while total < limit {
                let line = try self.readLine()
                let sizeText = line.prefix { $0 != ";" }.trimmingCharacters(in: .whitespaces)
                guard let size = Int(sizeText, radix: 16), size >= 0 else {
                    throw TestSupportError("malformed chunk size \(line.debugDescription)")
                }
                if size == 0 {
                    while try !self.readLine().isEmpty {}
                    return total
                }
                let read = try self.readExact(min(size, limit - total), sink)
                total += read
                guard total < limit else { return total }
                guard try self.readLine().isEmpty else { throw TestSupportError("malformed chunk end") }
            }
            return total
        }
        if let length = head.header("Content-Length").flatMap({ Int($0) }) {
            return try self.readExact(min(length, limit), sink)
        }
        var total = 0
        while total < limit {  // Until end of stream.
            if self.start == self.end {
                do { try self.fill() } catch is EndOfStream { return total }
            }
            let take = min(self.end - self.start, limit - total)
            self.buffer.withUnsafeBytes { sink(UnsafeRawBufferPointer(rebasing: $0[self.start..<(self.start + take)])) }
            self.start += take
            total += take
        }
        return total
    }

    private func readExact(_ count: Int, _ sink: (UnsafeRawBufferPointer) -> Void) throws -> Int {
        var remaining = count
        while remaining > 0 {
            if self.start == self.end { try self.fill() }
            let take = min(remaining, self.end - self.start)
            self.buffer.withUnsafeBytes { sink(UnsafeRawBufferPointer(rebasing: $0[self.start..<(self.start + take)])) }
            self.start += take
            remaining -= take
        }
        return count
    }

    /// Reads a whole response whose body is small, returning the head and the body as text.
    public func readResponse(method: String = "GET") throws -> (head: Head, body: String) {
        let head = try self.readHead()
        var body: [UInt8] = []
        try self.readBody(of: head, method: method, limit: 1 << 20) { body += $0 }
        return (head, String(decoding: body, as: UTF8.self))
    }
}
