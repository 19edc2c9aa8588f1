import CTestSupport
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A misbehaving upstream on 127.0.0.1 that echoes each request back: the whole request (head and body) as the
/// response body, the `Authorization` header also in `ETag` and `X-Echo`, with the status the path asks for
/// (`/status/401/…`, else 200). The body goes out chunked in pieces of `chunkSize` bytes, so that an echoed credential
/// is split across chunks. One thread, one connection at a time, `Connection: close`.
public final class EchoUpstream: Sendable {
    public let port: Int
    public var baseURL: String { "http://127.0.0.1:\(self.port)" }

    private let listener: Int32
    private let chunkSize: Int
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private let served = Atomic<Int>(0)

    /// Requests answered so far.
    public var requests: Int { self.served.load(ordering: .acquiring) }

    /// Starts listening on an ephemeral port.
    /// - Parameter chunkSize: The size of each chunk of the echoed body.
    public init(chunkSize: Int = 7) throws {
        let (fd, port) = try LoopbackListener.open(backlog: 16)
        self.port = port
        self.listener = fd
        self.chunkSize = max(1, chunkSize)
        let thread = Thread { [self] in self.serve() }
        thread.start()
    }

    /// Stops accepting and waits (at most 10 s) for the serving thread to end.
    public func stop() {
        guard !self.stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        _ = self.finished.wait(timeout: .now() + 10)
        close(self.listener)
    }

    deinit { self.stop() }

    private func serve() {
        defer { self.finished.signal() }
        while !self.stopping.load(ordering: .acquiring) {
            var poller = pollfd(fd: self.listener, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 50) > 0 else { continue }
            let client = cts_accept_cloexec(self.listener)
            guard client >= 0 else { continue }
            // Only this thread uses the descriptor, and it is closed before the next accept; no child inherits it
            // in between unless a test spawns one in that instant, hence close-on-exec all the same.
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            self.answer(client)
            close(client)
        }
    }

    private func answer(_ client: Int32) {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        var expected: Int?
        while expected.map({ received.count < $0 }) ?? true {
            let count = buffer.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { break }
            received += buffer[0..<count]
            if expected == nil, let end = Self.endOfHead(received) {
                let head = String(decoding: received[0..<end], as: UTF8.self)
                expected = end + (Self.header("Content-Length", in: head).flatMap { Int($0) } ?? 0)
            }
        }
        // A connection closed without a request (an HTTP client's spare connection) is no request to answer.
        guard !received.isEmpty else { return }
        let headEnd = Self.endOfHead(received) ?? received.count
        let head = String(decoding: received[0..<headEnd], as: UTF8.self)
        let target = head.split(separator: " ").dropFirst().first.map(String.init) ?? "/"
        var status = 200
        if let range = target.range(of: "/status/") {
            status = Int(target[range.upperBound...].prefix { $0.isNumber }) ?? 200
        }
        let authorization = Self.header("Authorization", in: head) ?? ""
        var response = "HTTP/1.1 \(status) Echo\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
        response += "ETag: \"\(authorization)\"\r\nX-Echo: \(authorization)\r\nConnection: close\r\n\r\n"
        var bytes = Array(response.utf8)
        var offset = 0
        while offset < received.count {
            let piece = received[offset..<min(offset + self.chunkSize, received.count)]
            bytes += Array("\(String(piece.count, radix: 16))\r\n".utf8) + piece + Array("\r\n".utf8)
            offset += piece.count
        }
        bytes += Array("0\r\n\r\n".utf8)
        try? SocketWrites.sendAll(client, bytes)
        self.served.add(1, ordering: .releasing)
    }

    private static func endOfHead(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for index in 0...(bytes.count - 4)
        where bytes[index] == 13 && bytes[index + 1] == 10 && bytes[index + 2] == 13 && bytes[index + 3] == 10 {
            return index + 4
        }
        return nil
    }

    private static func header(_ name: String, in head: String) -> String? {
        for line in head.split(separator: "\r\n").dropFirst() {
            let pieces = line.split(separator: ":", maxSplits: 1)
            if pieces.count == 2, pieces[0].lowercased() == name.lowercased() {
                return pieces[1].trimmingCharacters(in: .whitespaces)
            }
        }
        return nil
    }
}
