import Foundation
import VaultAPI

extension RawHTTP {
    /// Sends one well-formed request with `Connection: close` and reads the whole answer, however it is framed
    /// (`Content-Length`, chunked, or until the server closes).
    ///
    /// - Parameters:
    ///   - path: The Unix socket.
    ///   - target: The request target, sent exactly as given (no normalisation, no encoding).
    ///   - method: The HTTP method.
    ///   - headers: Extra request headers.
    ///   - body: A request body, sent with its `Content-Length`.
    ///   - timeout: How long to wait for the whole answer.
    /// - Returns: The parsed response (status 0 when nothing parseable arrived).
    public static func exchange(
        socket path: String,
        _ target: String,
        method: String = "GET",
        headers: [(String, String)] = [],
        body: String? = nil,
        timeout: Duration = .seconds(10)
    ) throws -> Response {
        var request = "\(method) \(target) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        if let body { request += "Content-Length: \(body.utf8.count)\r\n" }
        request += "\r\n" + (body ?? "")
        return try Self.request(socket: path, request, timeout: timeout)
    }
}

extension RawHTTP.Response {
    /// The first value of the response header `name`, compared case-insensitively.
    public func header(_ name: String) -> String? {
        let wanted = name.lowercased()
        for line in self.head.split(separator: "\r\n").dropFirst() {
            let pieces = line.split(separator: ":", maxSplits: 1)
            if pieces.count == 2, pieces[0].trimmingCharacters(in: .whitespaces).lowercased() == wanted {
                return pieces[1].trimmingCharacters(in: .whitespaces)
            }
        }
        return nil
    }

    /// The media type of the body, without parameters (`application/problem+json`).
    public var mediaType: String? {
        self.header("Content-Type").map {
            String($0.split(separator: ";")[0]).trimmingCharacters(in: .whitespaces).lowercased()
        }
    }

    /// The body with chunked transfer coding removed when the server used it.
    public var content: String {
        guard self.header("Transfer-Encoding")?.lowercased().contains("chunked") == true else { return self.body }
        let bytes = Array(self.body.utf8)
        var output: [UInt8] = []
        var index = 0
        while index < bytes.count {
            guard let lineEnd = Self.crlf(in: bytes, from: index) else { break }
            let sizeText = String(decoding: bytes[index..<lineEnd], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16), size > 0 else { break }
            let start = lineEnd + 2
            let end = min(bytes.count, start + size)
            output += bytes[start..<end]
            index = end + 2
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// The body decoded as `type`.
    /// - Throws: `TestSupportError` quoting the response when it does not decode.
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        do {
            return try VaultJSON.decoder().decode(T.self, from: Data(self.content.utf8))
        } catch {
            throw TestSupportError("cannot decode \(T.self) (\(error)) from:\n\(self.raw)")
        }
    }

    /// The body as the vault's problem+json, when it is one.
    public var problem: Problem? {
        try? VaultJSON.decoder().decode(Problem.self, from: Data(self.content.utf8))
    }

    private static func crlf(in bytes: [UInt8], from start: Int) -> Int? {
        var index = start
        while index + 1 < bytes.count {
            if bytes[index] == 13 && bytes[index + 1] == 10 { return index }
            index += 1
        }
        return nil
    }
}
