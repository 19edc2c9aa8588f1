import Foundation
import VaultLocks

#if canImport(Glibc)
import Glibc
#endif

/// A request as the test server received it.
public struct ReceivedRequest: Sendable {
    public var head: String
    public var body: [UInt8]

    /// `GET /v1/status`: the request line's method and target.
    public var requestLine: String { String(self.head.split(separator: "\r\n", maxSplits: 1).first ?? "") }

    public func header(_ name: String) -> String? {
        for line in self.head.split(separator: "\r\n").dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == name.lowercased() {
                return parts[1].trimmingCharacters(in: .whitespaces)
            }
        }
        return nil
    }
}

/// What the test server does with a request.
public enum TestReply: Sendable {
    /// Writes these bytes, then keeps the connection open for the next request (or closes it when `close`).
    case bytes([UInt8], close: Bool)
    /// Closes the connection without answering.
    case hangUp
    /// Never answers; waits for the client to give up and close.
    case silence

    /// A complete response with a Content-Length body.
    public static func response(
        _ status: Int,
        _ reason: String,
        contentType: String = "application/json",
        body: String,
        extraHeaders: [String] = [],
        close: Bool = false
    ) -> TestReply {
        var head =
            "HTTP/1.1 \(status) \(reason)\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.utf8.count)\r\n"
        for header in extraHeaders { head += header + "\r\n" }
        if close { head += "Connection: close\r\n" }
        return .bytes(Array((head + "\r\n" + body).utf8), close: close)
    }

    public static func problem(_ status: Int, _ code: String, detail: String) -> TestReply {
        let body = """
            {"code":"\(code)","detail":"\(detail)","status":\(status),"title":"Refused",\
            "type":"https://connvault.invalid/problems/\(code)"}
            """
        return .response(status, "Refused", contentType: "application/problem+json", body: body)
    }
}

/// A tiny HTTP/1.1 server on a Unix socket under a short `/tmp/cv-XXXXXX` directory, serving one connection at a
/// time on its own thread; each request's answer comes from `handler`.
public final class TestUnixServer: Sendable {
    public let directory: String
    public let path: String
    private let listener: Int32
    private let handler: @Sendable (ReceivedRequest) -> TestReply
    private let state = Locked(State())
    private let finished = DispatchSemaphore(value: 0)

    private struct State {
        var requests: [ReceivedRequest] = []
        var connections = 0
        var closed = 0
    }

    public var requests: [ReceivedRequest] { self.state.withLock { $0.requests } }
    public var connectionCount: Int { self.state.withLock { $0.connections } }
    /// Connections the server is done with: the client closed, or the server hung up after answering.
    public var closedCount: Int { self.state.withLock { $0.closed } }

    public init(handler: @escaping @Sendable (ReceivedRequest) -> TestReply) throws {
        var template = Array("/tmp/cv-XXXXXX".utf8CString)
        guard let created = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw TestServerError("mkdtemp failed")
        }
        self.directory = String(cString: created)
        self.path = self.directory + "/s.sock"
        self.handler = handler

        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard listener >= 0 else { throw TestServerError("socket failed") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let path = self.path
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: path.utf8)
            raw[path.utf8.count] = 0
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0, listen(listener, 16) == 0 else {
            close(listener)
            throw TestServerError("bind/listen failed: \(String(cString: strerror(errno)))")
        }
        self.listener = listener
        Thread.detachNewThread { [self] in
            self.acceptLoop()
            self.finished.signal()
        }
    }

    /// Stops accepting, waits for the server thread, removes the socket and its directory.
    public func stop() {
        self.stopKeepingFile()
        unlink(self.path)
        rmdir(self.directory)
    }

    /// Stops accepting and closes the listener, leaving the socket file behind (connecting to it is then refused).
    public func stopKeepingFile() {
        shutdown(self.listener, Int32(SHUT_RDWR))
        self.finished.wait()
        close(self.listener)
    }

    // MARK: - Serving

    private func acceptLoop() {
        while true {
            let connection = accept(self.listener, nil, nil)
            if connection < 0 {
                if errno == EINTR { continue }
                return
            }
            self.state.withLock { $0.connections += 1 }
            self.serve(connection)
            close(connection)
            self.state.withLock { $0.closed += 1 }
        }
    }

    private func serve(_ connection: Int32) {
        var buffer: [UInt8] = []
        while true {
            guard let request = Self.readRequest(connection, buffer: &buffer) else { return }
            self.state.withLock { $0.requests.append(request) }
            switch self.handler(request) {
            case .bytes(let bytes, let close):
                _ = bytes.withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if close { return }
            case .hangUp:
                return
            case .silence:
                var scratch = [UInt8](repeating: 0, count: 1024)
                while recv(connection, &scratch, scratch.count, 0) > 0 {}
                return
            }
        }
    }

    /// Reads one request (head, then a Content-Length body); nil when the client closed.
    private static func readRequest(_ connection: Int32, buffer: inout [UInt8]) -> ReceivedRequest? {
        let separator = Array("\r\n\r\n".utf8)
        var scratch = [UInt8](repeating: 0, count: 4096)
        while true {
            if let end = Self.find(separator, in: buffer) {
                let head = String(decoding: buffer[0..<end], as: UTF8.self)
                var request = ReceivedRequest(head: head, body: [])
                let length = Int(request.header("Content-Length") ?? "0") ?? 0
                let bodyStart = end + separator.count
                while buffer.count < bodyStart + length {
                    let count = recv(connection, &scratch, scratch.count, 0)
                    if count <= 0 { return nil }
                    buffer.append(contentsOf: scratch[0..<count])
                }
                request.body = Array(buffer[bodyStart..<bodyStart + length])
                buffer.removeFirst(bodyStart + length)
                return request
            }
            let count = recv(connection, &scratch, scratch.count, 0)
            if count <= 0 { return nil }
            buffer.append(contentsOf: scratch[0..<count])
        }
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for index in 0...(haystack.count - needle.count)
        where haystack[index..<index + needle.count].elementsEqual(needle) {
            return index
        }
        return nil
    }
}

public struct TestServerError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
