import CSodium
import CTestSupport
import Foundation
import Synchronization
import VaultLocks

#if canImport(Glibc)
import Glibc
#endif

/// SHA-256 over bytes fed piece by piece (libsodium's), for a test to hash a body it streams without keeping it.
public struct StreamingSHA256: Sendable {
    private var state = crypto_hash_sha256_state()

    public init() {
        _ = sodium_init()
        crypto_hash_sha256_init(&self.state)
    }

    /// Adds `bytes` to the hash.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        crypto_hash_sha256_update(&self.state, base.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count))
    }

    /// The digest, as lowercase hex. Ends the hash: call it once.
    public mutating func finish() -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        crypto_hash_sha256_final(&self.state, &digest)
        return digest.map { String(format: "%02x", $0) }.joined()
    }
}

/// A real HTTP/1.1 server on 127.0.0.1 standing in for Personio's API behind the vault's proxy: keep-alive, one
/// thread per connection, plain blocking sockets, every wait bounded.
///
/// It answers
/// - `POST /v2/auth/token` with `{"access_token":"upstream-token-N",…}` (N counting up from 1) and
///   `POST /v2/auth/revoke` with 200, so a v2 connection whose `api_base_url` is ``baseURL`` works;
/// - `GET /download/BYTES` with BYTES bytes of ``downloadByte(at:)`` made on the fly (`?chunked=1`: chunked, else
///   Content-Length), recorded in ``downloads`` as the kernel accepts them;
/// - `POST|PUT /upload` by reading the body as it arrives without keeping it, answering
///   `{"bytes":N,"sha256":"…"}`, recorded in ``uploads``;
/// - a path given to ``register(path:status:headers:body:delay:)`` with that answer;
/// - anything else with 200 and `{"method":…,"target":…}`.
///
/// Every request is recorded in ``requests`` from the moment its head arrives. ``shutdown()`` ends every thread and
/// connection (a send blocked on a stalled reader included) and waits for them, at most 10 s.
public final class ProxyUpstream: Sendable {
    /// One header line as received or sent.
    public struct Header: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    /// A request as the upstream received it.
    public struct Request: Sendable {
        /// The method, as sent.
        public var method: String
        /// The request target exactly as received (path and query).
        public var target: String
        /// Every header line, in order.
        public var headers: [Header]
        /// Body bytes received so far (after de-chunking).
        public var bodyBytes: Int
        /// The first 64 KiB of the body, except for `/upload`, whose body is never kept.
        public var body: [UInt8]
        /// Whether the whole body arrived.
        public var bodyComplete: Bool
        /// Whether the whole answer was sent.
        public var answered: Bool
        /// Whether the client closed the connection before the answer was complete (body cut short included).
        public var cancelled: Bool
        /// The connection it arrived on (1, 2, …), to tell keep-alive reuse from new connections.
        public var connection: Int

        /// The path, without the query.
        public var path: String { String(self.target.prefix { $0 != "?" }) }

        /// The value of the first header called `name` (case-insensitive), if any.
        public func header(_ name: String) -> String? {
            self.headers.first { $0.name.lowercased() == name.lowercased() }?.value
        }

        /// The values of every header called `name` (case-insensitive).
        public func headers(_ name: String) -> [String] {
            self.headers.filter { $0.name.lowercased() == name.lowercased() }.map(\.value)
        }
    }

    /// A `GET /download/BYTES` answer.
    public struct Download: Sendable {
        /// The size announced (or, chunked, meant to be sent).
        public var size: Int
        /// Whether it went out chunked.
        public var chunked: Bool
        /// Body bytes the kernel has accepted so far (`send` returned them).
        public var bytesAccepted: Int
        /// Whether every byte was accepted.
        public var completed: Bool
        /// Whether the connection failed (the client closed it) before every byte was accepted.
        public var closedMidway: Bool
        /// When the last `send` returned bytes.
        public var lastSendAt: ContinuousClock.Instant?
    }

    /// A `POST|PUT /upload` body.
    public struct Upload: Sendable {
        /// Body bytes received so far.
        public var bytes: Int
        /// Lowercase hex SHA-256 of the whole body, once it is complete.
        public var sha256: String?
        /// Whether it arrived chunked.
        public var chunked: Bool
        /// Whether the whole body arrived.
        public var completed: Bool
        /// Whether the connection ended before the whole body arrived.
        public var closedMidway: Bool
        /// When the first body bytes arrived.
        public var firstByteAt: ContinuousClock.Instant?
        /// When the last body bytes arrived.
        public var lastByteAt: ContinuousClock.Instant?
    }

    /// Everything recorded so far, read at one instant.
    public struct Snapshot: Sendable {
        public var requests: [Request]
        public var downloads: [Download]
        public var uploads: [Upload]
        /// Connections accepted so far.
        public var connections: Int
        /// Connections open now.
        public var openConnections: Int
    }

    fileprivate struct Script: Sendable {
        var status: Int
        var headers: [Header]
        var body: [UInt8]
        var delay: Duration
    }

    private struct State: Sendable {
        var requests: [Request] = []
        var downloads: [Download] = []
        var uploads: [Upload] = []
        var scripts: [String: Script] = [:]
        var sockets: Set<Int32> = []
        var connections = 0
        var threads = 0
        var tokens = 0
    }

    /// The port it listens on (127.0.0.1).
    public let port: Int
    /// `http://127.0.0.1:PORT`.
    public var baseURL: String { "http://127.0.0.1:\(self.port)" }

    /// Longest request head read.
    public static let maximumHeadBytes = 65536
    /// How long a connection may sit idle (between requests, or in the middle of one) before it is closed.
    public static let idleTimeout: Duration = .seconds(30)
    /// How long one `send` may block on a reader that does not read before the connection is given up.
    public static let sendTimeoutSeconds = 120

    private let listener: Int32
    private let stopping = Atomic<Bool>(false)
    private let state = Locked(State())

    /// Starts listening on an ephemeral port of 127.0.0.1.
    public init() throws {
        let (fd, port) = try LoopbackListener.open(backlog: 64)
        _ = sodium_init()
        self.port = port
        self.listener = fd
        self.state.withLock { $0.threads = 1 }
        ChildProcess.thread("proxy upstream accept") { [self] in self.acceptLoop() }
    }

    deinit { self.shutdown() }

    /// Stops accepting, ends every connection (unblocking a blocked `send` or `recv`) and waits, at most 10 s, for
    /// every thread to end. Idempotent.
    public func shutdown() {
        guard !self.stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        self.state.withLock { state in
            for fd in state.sockets { Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while self.state.withLock({ $0.threads }) > 0, ContinuousClock.now < deadline {
            // A connection accepted in the instant before `stopping` was set is shut down here.
            self.state.withLock { state in
                for fd in state.sockets { Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
            }
            usleep(5000)
        }
        close(self.listener)
    }

    // MARK: - Scripting and recording

    /// Answers requests whose path (without the query) is `path` with this, instead of the default.
    ///
    /// `Content-Length` is added unless `headers` has `Content-Length` or `Transfer-Encoding`; a `Connection: close`
    /// in `headers` closes the connection after the answer. During `delay` a client that closes is recorded as
    /// cancelled.
    public func register(
        path: String,
        status: Int = 200,
        headers: [(String, String)] = [],
        body: String = "",
        delay: Duration = .zero
    ) {
        let script = Script(
            status: status,
            headers: headers.map { Header($0.0, $0.1) },
            body: Array(body.utf8),
            delay: delay
        )
        self.state.withLock { $0.scripts[path] = script }
    }

    /// Every request so far, in arrival order.
    public var requests: [Request] { self.state.withLock { $0.requests } }
    /// Every download so far.
    public var downloads: [Download] { self.state.withLock { $0.downloads } }
    /// Every upload so far.
    public var uploads: [Upload] { self.state.withLock { $0.uploads } }
    /// Everything, at one instant.
    public var snapshot: Snapshot {
        self.state.withLock {
            Snapshot(
                requests: $0.requests,
                downloads: $0.downloads,
                uploads: $0.uploads,
                connections: $0.connections,
                openConnections: $0.sockets.count
            )
        }
    }

    /// Waits (blocking, polling every 5 ms) until `condition` holds or `timeout` passes.
    /// - Returns: Whether it held.
    @discardableResult
    public func wait(timeout: Duration, until condition: (Snapshot) -> Bool) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while true {
            if condition(self.snapshot) { return true }
            if ContinuousClock.now >= deadline { return false }
            usleep(5000)
        }
    }

    /// Waits until at least `count` request heads have arrived.
    @discardableResult
    public func waitForRequest(count: Int = 1, timeout: Duration) -> Bool {
        self.wait(timeout: timeout) { $0.requests.count >= count }
    }

    /// Waits until some request has been cancelled by the client.
    @discardableResult
    public func waitForCancellation(timeout: Duration) -> Bool {
        self.wait(timeout: timeout) { $0.requests.contains { $0.cancelled } }
    }

    /// The byte at `offset` of every download: `offset % 251`.
    public static func downloadByte(at offset: Int) -> UInt8 { UInt8(offset % 251) }

    // MARK: - Connections

    private func acceptLoop() {
        defer { self.state.withLock { $0.threads -= 1 } }
        while !self.stopping.load(ordering: .acquiring) {
            var poller = pollfd(fd: self.listener, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 50) > 0 else { continue }
            let client = cts_accept_cloexec(self.listener)
            guard client >= 0 else { continue }
            var one: Int32 = 1
            setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            var timeout = timeval(tv_sec: Self.sendTimeoutSeconds, tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let number: Int? = self.state.withLock { state in
                guard !self.stopping.load(ordering: .acquiring) else { return nil }
                state.connections += 1
                state.threads += 1
                state.sockets.insert(client)
                return state.connections
            }
            guard let number else {
                close(client)
                break
            }
            ChildProcess.thread("proxy upstream connection \(number)") { [self] in
                Connection(upstream: self, fd: client, number: number).run()
                self.state.withLock { state in
                    state.sockets.remove(client)
                    state.threads -= 1
                }
                close(client)
            }
        }
    }

    fileprivate var isStopping: Bool { self.stopping.load(ordering: .acquiring) }

    fileprivate func record(_ request: Request) -> Int {
        self.state.withLock { state in
            state.requests.append(request)
            return state.requests.count - 1
        }
    }

    fileprivate func updateRequest(_ index: Int, _ change: (inout Request) -> Void) {
        self.state.withLock { change(&$0.requests[index]) }
    }

    fileprivate func startDownload(_ download: Download) -> Int {
        self.state.withLock { state in
            state.downloads.append(download)
            return state.downloads.count - 1
        }
    }

    fileprivate func updateDownload(_ index: Int, _ change: (inout Download) -> Void) {
        self.state.withLock { change(&$0.downloads[index]) }
    }

    fileprivate func startUpload(_ upload: Upload) -> Int {
        self.state.withLock { state in
            state.uploads.append(upload)
            return state.uploads.count - 1
        }
    }

    fileprivate func updateUpload(_ index: Int, _ change: (inout Upload) -> Void) {
        self.state.withLock { change(&$0.uploads[index]) }
    }

    fileprivate func nextToken() -> Int {
        self.state.withLock { state in
            state.tokens += 1
            return state.tokens
        }
    }

    fileprivate func script(for path: String) -> Script? {
        self.state.withLock { $0.scripts[path] }
    }

    // MARK: - One connection

    /// Reads requests and writes answers on one connection until either side ends it.
    private final class Connection {
        let upstream: ProxyUpstream
        let fd: Int32
        let number: Int
        /// Received bytes not consumed yet: `buffer[start..<end]`.
        var buffer = [UInt8](repeating: 0, count: 65536)
        var start = 0
        var end = 0

        init(upstream: ProxyUpstream, fd: Int32, number: Int) {
            self.upstream = upstream
            self.fd = fd
            self.number = number
        }

        func run() {
            while !self.upstream.isStopping {
                guard self.serveOne() else { return }
            }
        }

        // MARK: Reading

        /// Waits for more bytes and appends them to the buffer. False on end of stream, error, idle time-out or
        /// shutdown.
        func fill() -> Bool {
            if self.start == self.end {
                self.start = 0
                self.end = 0
            } else if self.end == self.buffer.count {
                if self.start > 0 {
                    self.buffer.withUnsafeMutableBufferPointer { pointer in
                        let base = pointer.baseAddress!
                        base.update(from: base + self.start, count: self.end - self.start)
                    }
                    self.end -= self.start
                    self.start = 0
                } else {
                    return false  // A line longer than the buffer.
                }
            }
            let deadline = ContinuousClock.now + ProxyUpstream.idleTimeout
            while true {
                if self.upstream.isStopping || ContinuousClock.now >= deadline { return false }
                var poller = pollfd(fd: self.fd, events: Int16(POLLIN), revents: 0)
                let ready = poll(&poller, 1, 50)
                if ready < 0 && errno != EINTR { return false }
                if ready <= 0 { continue }
                let count = self.buffer.withUnsafeMutableBytes { raw in
                    recv(self.fd, raw.baseAddress! + self.end, raw.count - self.end, 0)
                }
                if count < 0 && (errno == EINTR || errno == EAGAIN) { continue }
                guard count > 0 else { return false }
                self.end += count
                return true
            }
        }

        /// One CRLF- (or LF-) terminated line without its terminator, or nil when the stream ends first.
        func readLine() -> [UInt8]? {
            var scanned = self.start
            while true {
                if let newline = self.buffer[scanned..<self.end].firstIndex(of: 10) {
                    var line = Array(self.buffer[self.start..<newline])
                    if line.last == 13 { line.removeLast() }
                    self.start = newline + 1
                    return line
                }
                scanned = self.end
                let before = self.start
                guard self.fill() else { return nil }
                scanned -= before - self.start  // The buffer may have been compacted.
            }
        }

        /// Hands exactly `count` bytes to `sink` as they arrive. False when the stream ends first.
        func readExact(_ count: Int, _ sink: (ArraySlice<UInt8>) -> Void) -> Bool {
            var remaining = count
            while remaining > 0 {
                if self.start == self.end {
                    guard self.fill() else { return false }
                }
                let take = min(remaining, self.end - self.start)
                sink(self.buffer[self.start..<(self.start + take)])
                self.start += take
                remaining -= take
            }
            return true
        }

        /// Reads a body framed by `chunked` or `contentLength`, handing its bytes to `sink`. False when it is cut
        /// short or malformed.
        func readBody(chunked: Bool, contentLength: Int, _ sink: (ArraySlice<UInt8>) -> Void) -> Bool {
            guard chunked else { return self.readExact(contentLength, sink) }
            while true {
                guard let line = self.readLine() else { return false }
                let sizeText = String(decoding: line.prefix { $0 != 59 }, as: UTF8.self)  // Before any ';'.
                guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16), size >= 0 else {
                    return false
                }
                if size == 0 {
                    while true {  // Trailers, up to the empty line.
                        guard let trailer = self.readLine() else { return false }
                        if trailer.isEmpty { return true }
                    }
                }
                guard self.readExact(size, sink), let empty = self.readLine(), empty.isEmpty else { return false }
            }
        }

        // MARK: Writing

        /// Sends all of `bytes`. False when the connection fails.
        func send(_ bytes: some Collection<UInt8>) -> Bool {
            let array = Array(bytes)
            var sent = 0
            while sent < array.count {
                let count = array[sent...].withUnsafeBytes {
                    Glibc.send(self.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
                }
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { return false }
                sent += count
            }
            return true
        }

        func head(status: Int, headers: [Header]) -> [UInt8] {
            var text = "HTTP/1.1 \(status) \(Self.reason(status))\r\n"
            for header in headers { text += "\(header.name): \(header.value)\r\n" }
            return Array((text + "\r\n").utf8)
        }

        static func reason(_ status: Int) -> String {
            switch status {
            case 200: "OK"
            case 201: "Created"
            case 204: "No Content"
            case 301: "Moved Permanently"
            case 302: "Found"
            case 304: "Not Modified"
            case 307: "Temporary Redirect"
            case 400: "Bad Request"
            case 401: "Unauthorized"
            case 403: "Forbidden"
            case 404: "Not Found"
            case 413: "Content Too Large"
            case 429: "Too Many Requests"
            case 500: "Internal Server Error"
            case 502: "Bad Gateway"
            case 503: "Service Unavailable"
            default: "Status"
            }
        }

        /// Whether the peer has closed its end (readable with nothing to read). Pipelined bytes do not count.
        func peerClosed() -> Bool {
            var poller = pollfd(fd: self.fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 0) > 0 else { return false }
            if poller.revents & Int16(POLLHUP | POLLERR) != 0 { return true }
            var byte: UInt8 = 0
            let count = recv(self.fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
            return count == 0 || (count < 0 && errno != EAGAIN && errno != EINTR)
        }

        // MARK: Requests

        /// Serves one request. False when the connection is to be closed.
        func serveOne() -> Bool {
            var headBytes = 0
            var requestLine: [UInt8] = []
            while requestLine.isEmpty {  // Blank lines between requests are tolerated.
                guard let line = self.readLine() else { return false }
                requestLine = line
                headBytes += line.count + 2
            }
            var headers: [Header] = []
            while true {
                guard let line = self.readLine() else { return false }
                headBytes += line.count + 2
                guard headBytes <= ProxyUpstream.maximumHeadBytes else { return false }
                if line.isEmpty { break }
                let text = String(decoding: line, as: UTF8.self)
                guard let colon = text.firstIndex(of: ":") else { return false }
                headers.append(
                    Header(
                        String(text[..<colon]),
                        String(text[text.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
                    )
                )
            }
            let parts = String(decoding: requestLine, as: UTF8.self).split(separator: " ", maxSplits: 2)
            guard parts.count == 3 else { return false }
            let method = String(parts[0])
            let target = String(parts[1])
            let version = String(parts[2])
            let request = Request(
                method: method,
                target: target,
                headers: headers,
                bodyBytes: 0,
                body: [],
                bodyComplete: false,
                answered: false,
                cancelled: false,
                connection: self.number
            )
            let index = self.upstream.record(request)
            let chunked = request.header("Transfer-Encoding")?.lowercased().contains("chunked") ?? false
            let contentLength = chunked ? 0 : (request.header("Content-Length").flatMap { Int($0) } ?? 0)
            let connectionTokens = request.headers("Connection").joined(separator: ",").lowercased()
            var keepAlive =
                version == "HTTP/1.1" ? !connectionTokens.contains("close") : connectionTokens.contains("keep-alive")
            if request.header("Expect")?.lowercased() == "100-continue" {
                guard self.send(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)) else {
                    self.upstream.updateRequest(index) { $0.cancelled = true }
                    return false
                }
            }

            let path = request.path
            let answered: Bool
            if path == "/upload" && (method == "POST" || method == "PUT") {
                guard let ok = self.upload(index: index, chunked: chunked, contentLength: contentLength) else {
                    return false
                }
                answered = ok
            } else {
                var kept: [UInt8] = []
                var total = 0
                let complete = self.readBody(chunked: chunked, contentLength: contentLength) { piece in
                    total += piece.count
                    if kept.count < 65536 { kept += piece.prefix(65536 - kept.count) }
                }
                self.upstream.updateRequest(index) {
                    $0.bodyBytes = total
                    $0.body = kept
                    $0.bodyComplete = complete
                    if !complete { $0.cancelled = true }
                }
                guard complete else { return false }
                if method == "POST" && path == "/v2/auth/token" {
                    let number = self.upstream.nextToken()
                    answered = self.answer(
                        index: index,
                        status: 200,
                        json: "{\"access_token\":\"upstream-token-\(number)\",\"token_type\":\"Bearer\","
                            + "\"expires_in\":3600,\"scope\":\"personio:persons:read personio:persons:write\"}"
                    )
                } else if method == "POST" && path == "/v2/auth/revoke" {
                    answered = self.answer(index: index, status: 200, json: "{}")
                } else if method == "GET", path.hasPrefix("/download/"), let size = Int(path.dropFirst(10)) {
                    answered = self.download(index: index, size: size, chunked: target.contains("chunked=1"))
                } else if let script = self.upstream.script(for: path) {
                    let (ok, close) = self.scripted(index: index, script: script, method: method)
                    answered = ok
                    if close { keepAlive = false }
                } else {
                    answered = self.answer(
                        index: index,
                        status: 200,
                        json: "{\"method\":\(Self.jsonString(method)),\"target\":\(Self.jsonString(target))}"
                    )
                }
            }
            return answered && keepAlive
        }

        /// Marks the request answered, or cancelled when `sent` is false. Returns `sent`.
        func finish(_ index: Int, sent: Bool) -> Bool {
            self.upstream.updateRequest(index) {
                if sent { $0.answered = true } else { $0.cancelled = true }
            }
            return sent
        }

        func answer(index: Int, status: Int, json: String) -> Bool {
            let body = Array(json.utf8)
            let head = self.head(
                status: status,
                headers: [Header("Content-Type", "application/json"), Header("Content-Length", "\(body.count)")]
            )
            return self.finish(index, sent: self.send(head + body))
        }

        /// Returns (answer sent, close the connection after it).
        func scripted(index: Int, script: Script, method: String) -> (Bool, Bool) {
            if script.delay > .zero {
                let deadline = ContinuousClock.now + script.delay
                while ContinuousClock.now < deadline {
                    if self.upstream.isStopping || self.peerClosed() {
                        _ = self.finish(index, sent: false)
                        return (false, true)
                    }
                    usleep(5000)
                }
            }
            var headers = script.headers
            let names = Set(headers.map { $0.name.lowercased() })
            let bodiless = method == "HEAD" || script.status == 204 || script.status == 304
            if !names.contains("content-length") && !names.contains("transfer-encoding") && !bodiless {
                headers.append(Header("Content-Length", "\(script.body.count)"))
            }
            let close = headers.contains {
                $0.name.lowercased() == "connection" && $0.value.lowercased().contains("close")
            }
            let bytes = self.head(status: script.status, headers: headers) + (bodiless ? [] : script.body)
            return (self.finish(index, sent: self.send(bytes)), close)
        }

        /// 251 × 256 bytes of the download pattern: every piece starts at a multiple of 251, so a piece is the same
        /// bytes wherever it falls.
        static let pattern: [UInt8] = (0..<(251 * 256)).map { ProxyUpstream.downloadByte(at: $0) }

        func download(index: Int, size: Int, chunked: Bool) -> Bool {
            let download = self.upstream.startDownload(
                Download(
                    size: size,
                    chunked: chunked,
                    bytesAccepted: 0,
                    completed: false,
                    closedMidway: false,
                    lastSendAt: nil
                )
            )
            let framing =
                chunked ? Header("Transfer-Encoding", "chunked") : Header("Content-Length", "\(size)")
            let head = self.head(
                status: 200,
                headers: [Header("Content-Type", "application/octet-stream"), framing]
            )
            var ok = self.send(head)
            var accepted = 0
            let pattern = Self.pattern
            while ok && accepted < size {
                let piece = min(pattern.count, size - accepted)
                if chunked {
                    ok = self.send(Array("\(String(piece, radix: 16))\r\n".utf8))
                    guard ok else { break }
                }
                // Send the piece, counting what the kernel takes as it takes it.
                var sent = 0
                while sent < piece {
                    let count = pattern.withUnsafeBytes {
                        Glibc.send(self.fd, $0.baseAddress! + sent, piece - sent, Int32(MSG_NOSIGNAL))
                    }
                    if count < 0 && errno == EINTR { continue }
                    guard count > 0 else {
                        ok = false
                        break
                    }
                    sent += count
                    accepted += count
                    let now = ContinuousClock.now
                    self.upstream.updateDownload(download) {
                        $0.bytesAccepted = accepted
                        $0.lastSendAt = now
                    }
                }
                if ok && chunked { ok = self.send(Array("\r\n".utf8)) }
            }
            if ok && chunked { ok = self.send(Array("0\r\n\r\n".utf8)) }
            let completed = ok
            self.upstream.updateDownload(download) {
                $0.completed = completed
                $0.closedMidway = !completed
            }
            return self.finish(index, sent: ok)
        }

        /// Reads an upload body without keeping it. Nil when the body was cut short (the connection is done).
        func upload(index: Int, chunked: Bool, contentLength: Int) -> Bool? {
            let upload = self.upstream.startUpload(
                Upload(
                    bytes: 0,
                    sha256: nil,
                    chunked: chunked,
                    completed: false,
                    closedMidway: false,
                    firstByteAt: nil,
                    lastByteAt: nil
                )
            )
            var hash = StreamingSHA256()
            var total = 0
            let complete = self.readBody(chunked: chunked, contentLength: contentLength) { piece in
                guard !piece.isEmpty else { return }
                piece.withUnsafeBytes { hash.update($0) }
                total += piece.count
                let now = ContinuousClock.now
                let bytes = total
                self.upstream.updateUpload(upload) {
                    if $0.firstByteAt == nil { $0.firstByteAt = now }
                    $0.lastByteAt = now
                    $0.bytes = bytes
                }
                self.upstream.updateRequest(index) { $0.bodyBytes = bytes }
            }
            guard complete else {
                self.upstream.updateUpload(upload) { $0.closedMidway = true }
                self.upstream.updateRequest(index) { $0.cancelled = true }
                return nil
            }
            let hex = hash.finish()
            self.upstream.updateUpload(upload) {
                $0.completed = true
                $0.sha256 = hex
            }
            self.upstream.updateRequest(index) { $0.bodyComplete = true }
            return self.answer(index: index, status: 200, json: "{\"bytes\":\(total),\"sha256\":\"\(hex)\"}")
        }

        static func jsonString(_ text: String) -> String {
            var out = "\""
            for scalar in text.unicodeScalars {
                switch scalar {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
                default: out.unicodeScalars.append(scalar)
                }
            }
            return out + "\""
        }
    }
}
