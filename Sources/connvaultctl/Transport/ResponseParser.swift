/// An incremental HTTP/1.1 response parser: feed it bytes as they arrive, it returns the response once complete.
///
/// Framing follows RFC 9112 §6.3: no body for `HEAD`, 1xx, 204 and 304; `Transfer-Encoding` ending in `chunked`;
/// otherwise `Content-Length` (repeated values must agree); otherwise the body runs until the server closes.
/// Interim 1xx responses are skipped. Heads and bodies have size limits so a misbehaving peer cannot exhaust memory.
struct ResponseParser {
    static let maximumHeadBytes = 64 * 1024
    static let maximumHeaderCount = 128
    // A `list` of 100,000 connections is some 56 MiB of JSON; 256 MiB leaves room for four times that.
    static let maximumBodyBytes = 256 * 1024 * 1024
    static let maximumLineBytes = 16 * 1024

    private enum State {
        case statusLine
        case headers
        case fixedBody(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers
        case untilClose
        case complete
    }

    private let requestMethod: String
    private var state = State.statusLine
    private var buffer: [UInt8] = []
    private var cursor = 0
    private var headBytes = 0
    private var status = 0
    private var reason = ""
    private var isHTTP11 = true
    private var headers: [HeaderField] = []
    private var body: [UInt8] = []
    private var keepAlive = true
    /// Whether any byte arrived: a reused connection that closes before answering may be retried.
    private(set) var receivedAnything = false

    init(requestMethod: String = "GET") {
        self.requestMethod = requestMethod
    }

    /// Bytes received after the end of the response (a server that pipelines garbage); such a connection is not reused.
    var hasUnconsumedBytes: Bool { self.cursor < self.buffer.count }

    /// Adds received bytes.
    ///
    /// - Returns: The response once it is complete, else nil.
    /// - Throws: `DaemonError` with code `.invalidResponse` when the bytes are not a valid response.
    mutating func feed(_ bytes: some Collection<UInt8>) throws -> ClientResponse? {
        guard !bytes.isEmpty else { return nil }
        self.receivedAnything = true
        if case .complete = self.state {
            self.buffer.append(contentsOf: bytes)
            return nil
        }
        self.buffer.append(contentsOf: bytes)
        let response = try self.advance()
        if response == nil {
            self.buffer.removeSubrange(0..<self.cursor)
            self.cursor = 0
        }
        return response
    }

    /// Tells the parser the server closed the connection.
    ///
    /// - Returns: The response, when a read-to-close body ends here.
    /// - Throws: `DaemonError` with code `.invalidResponse` when the response is incomplete.
    mutating func finish() throws -> ClientResponse {
        switch self.state {
        case .untilClose:
            self.state = .complete
            return self.response()
        case .complete:
            return self.response()
        case .statusLine where !self.receivedAnything:
            throw Self.malformed("the daemon closed the connection without answering")
        default:
            throw Self.malformed("the daemon closed the connection in the middle of a response")
        }
    }

    // MARK: - State machine

    private mutating func advance() throws -> ClientResponse? {
        while true {
            switch self.state {
            case .statusLine:
                guard let line = try self.nextLine(countingTowardsHead: true) else { return nil }
                // RFC 9112 §2.2: a client should ignore empty lines received before the status line.
                if line.isEmpty { continue }
                try self.parseStatusLine(line)
                self.state = .headers
            case .headers:
                guard let line = try self.nextLine(countingTowardsHead: true) else { return nil }
                if line.isEmpty {
                    try self.headersComplete()
                } else {
                    try self.parseHeader(line)
                }
            case .fixedBody(let remaining):
                let taken = self.take(upTo: remaining)
                if taken == remaining {
                    self.state = .complete
                } else {
                    self.state = .fixedBody(remaining: remaining - taken)
                    return nil
                }
            case .chunkSize:
                guard let line = try self.nextLine(countingTowardsHead: false) else { return nil }
                let size = try Self.parseChunkSize(line)
                if size == 0 {
                    self.state = .trailers
                } else {
                    guard self.body.count + size <= Self.maximumBodyBytes else { throw Self.tooLarge() }
                    self.state = .chunkData(remaining: size)
                }
            case .chunkData(let remaining):
                let taken = self.take(upTo: remaining)
                if taken == remaining {
                    self.state = .chunkDataEnd
                } else {
                    self.state = .chunkData(remaining: remaining - taken)
                    return nil
                }
            case .chunkDataEnd:
                guard let line = try self.nextLine(countingTowardsHead: false) else { return nil }
                guard line.isEmpty else { throw Self.malformed("a chunk is longer than its declared size") }
                self.state = .chunkSize
            case .trailers:
                guard let line = try self.nextLine(countingTowardsHead: true) else { return nil }
                if line.isEmpty { self.state = .complete }
            case .untilClose:
                let available = self.buffer.count - self.cursor
                guard self.body.count + available <= Self.maximumBodyBytes else { throw Self.tooLarge() }
                _ = self.take(upTo: available)
                return nil
            case .complete:
                return self.response()
            }
        }
    }

    private func response() -> ClientResponse {
        ClientResponse(
            status: self.status,
            reason: self.reason,
            headers: self.headers,
            body: self.body,
            keepAlive: self.keepAlive && !self.hasUnconsumedBytes
        )
    }

    /// Moves up to `count` buffered bytes into the body; returns how many.
    private mutating func take(upTo count: Int) -> Int {
        let taken = min(count, self.buffer.count - self.cursor)
        self.body.append(contentsOf: self.buffer[self.cursor..<self.cursor + taken])
        self.cursor += taken
        return taken
    }

    /// The next line without its LF (and CR), or nil when it has not fully arrived.
    private mutating func nextLine(countingTowardsHead: Bool) throws -> ArraySlice<UInt8>? {
        guard let newline = self.buffer[self.cursor...].firstIndex(of: UInt8(ascii: "\n")) else {
            let pending = self.buffer.count - self.cursor
            if pending > Self.maximumLineBytes
                || (countingTowardsHead && self.headBytes + pending > Self.maximumHeadBytes)
            {
                throw Self.malformed("a header or chunk line is too long")
            }
            return nil
        }
        var line = self.buffer[self.cursor..<newline]
        let consumed = newline + 1 - self.cursor
        self.cursor = newline + 1
        if countingTowardsHead {
            self.headBytes += consumed
            if self.headBytes > Self.maximumHeadBytes { throw Self.malformed("the response head is too large") }
        }
        if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
        if line.contains(UInt8(ascii: "\r")) { throw Self.malformed("a line contains a bare CR") }
        return line
    }

    // MARK: - Head

    private mutating func parseStatusLine(_ line: ArraySlice<UInt8>) throws {
        let bytes = Array(line)
        let prefix = Array("HTTP/1.".utf8)
        guard bytes.count >= 12, Array(bytes[0..<7]) == prefix,
            bytes[7] == UInt8(ascii: "0") || bytes[7] == UInt8(ascii: "1"),
            bytes[8] == UInt8(ascii: " "),
            bytes[9...11].allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
            bytes.count == 12 || bytes[12] == UInt8(ascii: " ")
        else {
            throw Self.malformed("the status line is not HTTP/1.x")
        }
        self.isHTTP11 = bytes[7] == UInt8(ascii: "1")
        self.status = bytes[9...11].reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
        guard self.status >= 100 else { throw Self.malformed("the status code \(self.status) is out of range") }
        self.reason = bytes.count > 13 ? String(decoding: bytes[13...], as: UTF8.self) : ""
        self.headers = []
    }

    private mutating func parseHeader(_ line: ArraySlice<UInt8>) throws {
        if line.first == UInt8(ascii: " ") || line.first == UInt8(ascii: "\t") {
            throw Self.malformed("a header is folded over several lines (obsolete, not accepted)")
        }
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex,
            line[line.startIndex..<colon].allSatisfy(Self.isTokenByte)
        else {
            throw Self.malformed("a header line has no valid name")
        }
        let rawValue = line[(colon + 1)...]
        if rawValue.contains(0) { throw Self.malformed("a header value contains a NUL byte") }
        guard self.headers.count < Self.maximumHeaderCount else {
            throw Self.malformed("the response has too many headers")
        }
        let name = String(decoding: line[line.startIndex..<colon], as: UTF8.self)
        let value = Substring(String(decoding: rawValue, as: UTF8.self)).trimmingHTTPWhitespace()
        self.headers.append(HeaderField(name, value))
    }

    private mutating func headersComplete() throws {
        self.keepAlive = self.connectionAllowsReuse()
        if (100..<200).contains(self.status) {
            // 101 would hand the connection to another protocol, which the daemon never does.
            if self.status == 101 { throw Self.malformed("the daemon switched protocols") }
            self.state = .statusLine
            self.headBytes = 0
            return
        }
        if self.requestMethod == "HEAD" || self.status == 204 || self.status == 304 {
            self.state = .complete
            return
        }
        let transferCodings = self.values(of: "Transfer-Encoding")
        let lengths = self.values(of: "Content-Length")
        if !transferCodings.isEmpty {
            // RFC 9112 §6.1: Transfer-Encoding overrides Content-Length, and such a connection must not be reused.
            if !lengths.isEmpty { self.keepAlive = false }
            if transferCodings.last?.lowercased() == "chunked" {
                self.state = .chunkSize
            } else {
                self.keepAlive = false
                self.state = .untilClose
            }
            return
        }
        if let first = lengths.first {
            guard lengths.allSatisfy({ $0 == first }) else { throw Self.malformed("Content-Length values disagree") }
            guard !first.isEmpty, first.utf8.count <= 18, first.utf8.allSatisfy({ (48...57).contains($0) }),
                let length = Int(first)
            else {
                throw Self.malformed("Content-Length is not a number")
            }
            guard length <= Self.maximumBodyBytes else { throw Self.tooLarge() }
            self.state = length == 0 ? .complete : .fixedBody(remaining: length)
            return
        }
        self.keepAlive = false
        self.state = .untilClose
    }

    /// Comma-separated values of every header named `name`, trimmed, empty items dropped.
    private func values(of name: String) -> [String] {
        let lowered = name.lowercased()
        return self.headers.filter { $0.name.lowercased() == lowered }.flatMap { header in
            header.value.split(separator: ",").map { $0.trimmingHTTPWhitespace() }.filter { !$0.isEmpty }
        }
    }

    private func connectionAllowsReuse() -> Bool {
        let options = Set(self.values(of: "Connection").map { $0.lowercased() })
        if options.contains("close") { return false }
        return self.isHTTP11 || options.contains("keep-alive")
    }

    // MARK: - Chunks

    private static func parseChunkSize(_ line: ArraySlice<UInt8>) throws -> Int {
        let sizePart = line.prefix { $0 != UInt8(ascii: ";") }.filter {
            $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t")
        }
        guard !sizePart.isEmpty, sizePart.count <= 8 else { throw Self.malformed("a chunk size is not a hex number") }
        var size = 0
        for byte in sizePart {
            let digit: Int
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = Int(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = Int(byte - UInt8(ascii: "a")) + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = Int(byte - UInt8(ascii: "A")) + 10
            default: throw Self.malformed("a chunk size is not a hex number")
            }
            size = size * 16 + digit
        }
        return size
    }

    // MARK: - Helpers

    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        default:
            Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
        }
    }

    private static func malformed(_ what: String) -> DaemonError {
        DaemonError(.invalidResponse, "malformed response: \(what)")
    }

    private static func tooLarge() -> DaemonError {
        DaemonError(.invalidResponse, "malformed response: the body is larger than \(Self.maximumBodyBytes) bytes")
    }
}
