/// One header line.
public struct HeaderField: Sendable, Equatable {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// An HTTP/1.1 request to the daemon. The client adds `Host`, `Content-Length` and, for one-shot connections,
/// `Connection: close`.
public struct ClientRequest: Sendable {
    public var method: String
    /// Path and query, already percent-encoded (see ``PathComponent``).
    public var target: String
    public var headers: [HeaderField]
    /// The body; nil sends none. Bodies carrying secrets are built and zeroed by ``AdminClient`` instead.
    public var body: [UInt8]?

    public init(method: String, target: String, headers: [HeaderField] = [], body: [UInt8]? = nil) {
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
    }

    /// A request with a JSON body.
    public static func json(_ method: String, _ target: String, body: [UInt8]) -> ClientRequest {
        ClientRequest(
            method: method,
            target: target,
            headers: [HeaderField("Content-Type", "application/json")],
            body: body
        )
    }
}

/// Serialises request heads. The body is written separately, straight from the caller's buffer, so a body holding a
/// secret is never copied into a second buffer that would need zeroing too.
enum RequestHead {
    /// `METHOD target HTTP/1.1`, `Host`, the caller's headers, `Content-Length` (when a body is sent or the method
    /// normally has one), `Connection: close` when asked, and the blank line.
    static func encode(method: String, target: String, headers: [HeaderField], bodyLength: Int?, close: Bool) -> [UInt8]
    {
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
        if close { head += "Connection: close\r\n" }
        head += "\r\n"
        return Array(head.utf8)
    }

    /// Whether `value` can go into a request line or header without splitting it.
    static func isSafe(_ value: String) -> Bool {
        value.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }
}

/// Percent-encoding for path segments and query values taken from user input (connection ids).
public enum PathComponent {
    /// `value` with every byte outside RFC 3986 `unreserved` percent-encoded, so an id can never add a path segment,
    /// a query or a space to the request line.
    public static func encode(_ value: String) -> String {
        var result = ""
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                result.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".utf8)
                result.unicodeScalars.append("%")
                result.unicodeScalars.append(Unicode.Scalar(hex[Int(byte >> 4)]))
                result.unicodeScalars.append(Unicode.Scalar(hex[Int(byte & 0x0F)]))
            }
        }
        return result
    }

    /// `path?name=value&…` with each value encoded; nil values are left out.
    public static func target(_ path: String, query: [(String, String?)]) -> String {
        let items = query.compactMap { name, value in value.map { "\(name)=\(Self.encode($0))" } }
        return items.isEmpty ? path : path + "?" + items.joined(separator: "&")
    }
}
