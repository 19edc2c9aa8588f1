import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Bytes in, bytes out, over a Unix socket: for requests a well-behaved client would never send.
public enum RawHTTP {
    public struct Response: Sendable {
        public var status: Int
        public var head: String
        public var body: String
        public var raw: String
    }

    /// Sends `request` as is (a full HTTP/1.1 request, or garbage) and reads until the server closes or
    /// `timeout` passes; parses the first response when there is one.
    public static func request(
        socket path: String,
        _ request: String,
        timeout: Duration = .seconds(10)
    ) throws -> Response {
        try self.request(socket: path, bytes: Array(request.utf8), timeout: timeout)
    }

    public static func request(
        socket path: String,
        bytes: [UInt8],
        timeout: Duration = .seconds(10),
        closeWrite: Bool = false
    ) throws -> Response {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestSupportError("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        // A listener whose backlog is full (a daemon that stopped accepting) makes a blocking connect wait forever:
        // non-blocking attempts until the deadline instead, then blocking again for the exchange.
        let deadline = ContinuousClock.now + timeout
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        while true {
            let connected = try UnixAddress.connect(fd, to: path)
            if connected == 0 { break }
            guard errno == EAGAIN || errno == EINTR, ContinuousClock.now < deadline else {
                throw TestSupportError("connect \(path): \(String(cString: strerror(errno)))")
            }
            usleep(10_000)
        }
        _ = fcntl(fd, F_SETFL, flags)
        // A server that closes early still gets its answer read.
        try? SocketWrites.sendAll(fd, bytes)
        if closeWrite { shutdown(fd, Int32(SHUT_WR)) }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while ContinuousClock.now < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, 100)
            if ready < 0 { break }
            if ready == 0 {
                if let response = Self.parse(received), response.complete { break }
                continue
            }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            received.append(contentsOf: buffer[0..<n])
            if let response = Self.parse(received), response.complete { break }
        }
        let text = String(decoding: received, as: UTF8.self)
        guard let parsed = Self.parse(received) else {
            return Response(status: 0, head: "", body: "", raw: text)
        }
        return Response(status: parsed.status, head: parsed.head, body: parsed.body, raw: text)
    }

    static func parse(_ bytes: [UInt8]) -> (status: Int, head: String, body: String, complete: Bool)? {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let headEnd = text.range(of: "\r\n\r\n") else { return nil }
        let head = String(text[..<headEnd.lowerBound])
        let body = String(text[headEnd.upperBound...])
        let statusLine = head.split(separator: "\r\n").first.map(String.init) ?? ""
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else { return nil }
        var length: Int?
        for line in head.split(separator: "\r\n").dropFirst() {
            let pieces = line.split(separator: ":", maxSplits: 1)
            if pieces.count == 2, pieces[0].lowercased() == "content-length" {
                length = Int(pieces[1].filter { $0 != " " && $0 != "\t" })
            }
        }
        let complete = length.map { body.utf8.count >= $0 } ?? false
        return (status, head, body, complete)
    }
}
