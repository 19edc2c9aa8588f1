/// One header line.
struct HeaderField: Sendable, Equatable {
    var name: String
    var value: String

    init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// Serialises request heads. The body is written separately, straight from the caller's buffer, so a body holding a
/// secret is never copied into a second buffer that would need zeroing too.
enum RequestHead {
    /// `METHOD target HTTP/1.1`, `Host`, the caller's headers, `Content-Length` (when a body is sent or the method
    /// normally has one), `Connection: close` (every connection serves one request), and the blank line.
    static func encode(method: String, target: String, headers: [HeaderField], bodyLength: Int?) -> [UInt8] {
        var head = "\(method) \(target) HTTP/1.1\r\nHost: localhost\r\n"
        head += "User-Agent: connvault-client\r\nAccept: application/json, application/problem+json\r\n"
        for header in headers {
            head += "\(header.name): \(header.value)\r\n"
        }
        if let bodyLength {
            head += "Content-Length: \(bodyLength)\r\n"
        } else if method == "POST" || method == "PUT" || method == "PATCH" {
            head += "Content-Length: 0\r\n"
        }
        head += "Connection: close\r\n\r\n"
        return Array(head.utf8)
    }

    /// Whether `value` can go into a request line or header without splitting it.
    static func isSafe(_ value: String) -> Bool {
        value.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }
}
