/// A complete HTTP/1.1 response from the daemon.
struct ClientResponse: Sendable, Equatable {
    var status: Int
    var reason: String
    var headers: [HeaderField]
    var body: [UInt8]
    /// Whether the server lets the connection be reused for another request.
    var keepAlive: Bool

    init(status: Int, reason: String, headers: [HeaderField], body: [UInt8], keepAlive: Bool) {
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.keepAlive = keepAlive
    }

    /// The first header named `name` (case-insensitive).
    func header(_ name: String) -> String? {
        let lowered = name.lowercased()
        return self.headers.first { $0.name.lowercased() == lowered }?.value
    }

    /// The media type without parameters, lowercased (`application/problem+json`).
    var mediaType: String? {
        guard let value = self.header("Content-Type") else { return nil }
        let type = value.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        return type.trimmingHTTPWhitespace().lowercased()
    }

    var isSuccess: Bool { (200..<300).contains(self.status) }
}

extension Substring {
    func trimmingHTTPWhitespace() -> String {
        String(self.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}
