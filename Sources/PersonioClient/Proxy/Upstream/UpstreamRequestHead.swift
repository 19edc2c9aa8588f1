import HTTP1Wire
import NIOCore
import NIOHTTP1
import VaultCrypto
import ZeroedBuffers

/// A proxied request's head as the bytes that go to Personio, encoded by the vault rather than NIO's request encoder,
/// and how its body is framed.
///
/// Encoding it here lets a recruiting key go from its `sodium_malloc` memory straight into a buffer of the zeroing
/// allocator (`HTTPHeaders` holds `String`s, which are freed without being zeroed), and costs one buffer per request
/// instead of a header list and its encoding. Every byte has been checked before: the method and path by the path
/// checks, the caller's headers by ``PersonioProxy/forwardedRequestHeaders(_:)`` (names are tokens, values printable
/// ASCII), the rest when the ``ProxyDestination`` was built.
struct UpstreamRequestHead {
    enum Framing {
        /// No body: nothing follows the head.
        case none
        /// `Content-Length`: the body's bytes as they are.
        case contentLength
        /// `Transfer-Encoding: chunked`: each piece framed, a last empty chunk at the end.
        case chunked
    }

    var bytes: ByteBuffer
    var framing: Framing
    var method: HTTPMethod

    /// - Parameters:
    ///   - method: The checked method.
    ///   - target: The request target: the base URL's path prefix, the checked path and the query.
    ///   - callerHeaders: The caller headers that pass.
    ///   - destination: Host, identification and credential lines.
    ///   - body: nil for no body, else the length the caller declared, if any.
    init(
        method: HTTPMethod,
        target: String,
        callerHeaders: [(String, String)],
        destination: ProxyDestination,
        body: Int??
    ) {
        let framingLine: String
        switch body {
        case .none:
            self.framing = .none
            // A request that has a body by definition says it is empty; a GET or DELETE says nothing.
            // Matched by case: NIO's `==` compares the methods' `rawValue` strings.
            switch method {
            case .POST, .PUT, .PATCH: framingLine = "Content-Length: 0\r\n"
            default: framingLine = ""
            }
        case .some(.some(let length)):
            self.framing = .contentLength
            framingLine = "Content-Length: \(length)\r\n"
        case .some(.none):
            self.framing = .chunked
            framingLine = "Transfer-Encoding: chunked\r\n"
        }
        self.method = method
        let methodName = method.rawValue
        var size = methodName.utf8.count + 1 + target.utf8.count + 11
        for (name, value) in callerHeaders { size += name.utf8.count + value.utf8.count + 4 }
        size += destination.headerLines.readableBytes + framingLine.utf8.count + 2
        let secret = destination.secretHeaderLines
        if let secret { size += secret.count }
        // Sized exactly, and written in one pass (HTTPBytes.put): a buffer of the zeroing allocator must not grow
        // (the move would go through its own reallocation, which wipes the old block, but there is no reason to make
        // it), and a ByteBuffer write per piece costs more than the copy it makes.
        var bytes = (secret == nil ? Self.plain : ZeroingAllocator.allocator).buffer(capacity: size)
        let (space, version, separator, crlf): (StaticString, StaticString, StaticString, StaticString) =
            (" ", " HTTP/1.1\r\n", ": ", "\r\n")
        bytes.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { out in
            var at = HTTPBytes.put(methodName, into: out, at: 0)
            at = HTTPBytes.put(space, into: out, at: at)
            at = HTTPBytes.put(target, into: out, at: at)
            at = HTTPBytes.put(version, into: out, at: at)
            for (name, value) in callerHeaders {
                at = HTTPBytes.put(name, into: out, at: at)
                at = HTTPBytes.put(separator, into: out, at: at)
                at = HTTPBytes.put(value, into: out, at: at)
                at = HTTPBytes.put(crlf, into: out, at: at)
            }
            at = destination.headerLines.withUnsafeReadableBytes { HTTPBytes.put($0, into: out, at: at) }
            if let secret { at = secret.withUnsafeBytes { HTTPBytes.put($0, into: out, at: at) } }
            at = HTTPBytes.put(framingLine, into: out, at: at)
            at = HTTPBytes.put(crlf, into: out, at: at)
            assert(at == size)
            return at
        }
        self.bytes = bytes
    }

    private static let plain = ByteBufferAllocator()

    /// The last chunk of a chunked body.
    static let lastChunk = ByteBuffer(string: "0\r\n\r\n")
    static let chunkEnd = ByteBuffer(string: "\r\n")

    /// The line that opens a chunk of `count` bytes.
    static func chunkHeader(_ count: Int) -> ByteBuffer {
        ByteBuffer(string: String(count, radix: 16) + "\r\n")
    }
}
