import Foundation
import TestSupport
import Testing
import VaultAPI

#if canImport(Glibc)
import Glibc
#endif

/// Large bodies through `/v1/connections/{id}/proxy/{path}` of the built daemon, in front of a ``ProxyUpstream``:
/// uploads and downloads stream both ways with the daemon's peak resident set growing by less than 16 MB, a caller
/// that stops reading stalls the upstream instead of filling the daemon, and bodies past the connection's
/// `proxy_max_body` (default 64 MiB) are refused or cut off, while every other route keeps its 64 KiB limit.
///
/// Figures (sizes, durations, memory growth) are printed, so that a slow debug build shows in the test output.
@Suite("Proxy streaming, end to end", .offCooperativePool, .serialized, .timeLimit(.minutes(3)))
struct ProxyStreamingEndToEndTests {
    static let connection = "stream"
    /// `proxy_max_body` when the connection does not set it.
    static let defaultBodyLimit = 64 << 20
    /// The most the daemon's peak resident set may grow by while one large body passes. Under a sanitizer
    /// (TimeScale) the resident set also holds its shadow memory and AddressSanitizer's quarantine of freed memory
    /// (256 MiB): there the bound only says that a body is not held whole.
    static let memoryBudgetKiB = TimeScale.sanitizer == nil ? 16 * 1024 : 400 * 1024

    static func proxy(_ path: String) -> String { "/v1/connections/\(Self.connection)/proxy\(path)" }

    /// A connection's `proxy_max_body`: unset (the default applies) or set with `add --proxy-max-body`.
    enum BodyLimit: CustomTestStringConvertible, Sendable {
        case unset
        case configured(bytes: Int, flag: String)

        static let oneMiB = BodyLimit.configured(bytes: 1 << 20, flag: "1MiB")

        var bytes: Int {
            switch self {
            case .unset: ProxyStreamingEndToEndTests.defaultBodyLimit
            case .configured(let bytes, _): bytes
            }
        }

        var addOptions: [String] {
            switch self {
            case .unset: []
            case .configured(_, let flag): ["--proxy-max-body", flag]
            }
        }

        var testDescription: String {
            switch self {
            case .unset: "default 64 MiB"
            case .configured(_, let flag): "proxy_max_body \(flag)"
            }
        }
    }

    // MARK: - Uploads

    @Test(
        "a 50 MB upload reaches Personio whole while it is still being sent, with flat memory",
        arguments: [false, true]
    )
    func upload(chunked: Bool) async throws {
        try await Self.run { fixture, upstream in
            let memory = try Self.warmUp(fixture, upstream)
            let client = try StreamingHTTPClient(socketPath: fixture.daemon.appSocket, timeout: .seconds(60))
            defer { client.close() }
            let size = 50_000_000
            let started = ContinuousClock.now
            let sent = try Self.upload(client, size: size, chunked: chunked)
            let answer = try client.readResponse(method: "POST")
            let elapsed = ContinuousClock.now - started
            let growth = try memory.peakGrowthKiB()
            print(
                "proxy upload (\(chunked ? "chunked" : "Content-Length")): \(sent.bytes) of \(size) bytes sent in "
                    + "\(elapsed), answer \(answer.head.status), daemon peak RSS +\(growth) KiB"
            )

            #expect(sent.failure == nil, "\(sent.failure ?? "")")
            #expect(sent.bytes == size, "the daemon answered after \(sent.bytes) bytes")
            #expect(answer.head.status == 200, "\(answer.head.status): \(answer.body)")
            #expect(answer.body == #"{"bytes":\#(size),"sha256":"\#(sent.sha256)"}"#, "\(answer.body)")
            let upload = try #require(upstream.uploads.last, "nothing was uploaded upstream")
            #expect(upload.completed && upload.bytes == size && upload.sha256 == sent.sha256)
            // Streamed, not buffered: Personio had the first bytes before the caller had sent half of them.
            let first = try #require(upload.firstByteAt)
            let half = try #require(sent.halfSentAt)
            #expect(first < half, "the first body byte reached the upstream only after half the body was sent")
            #expect(growth < Self.memoryBudgetKiB, "peak resident set grew by \(growth) KiB")
        }
    }

    // MARK: - Downloads

    @Test("a 500 MB download streams to the caller with flat memory")
    func download() async throws {
        try await Self.run { fixture, upstream in
            let memory = try Self.warmUp(fixture, upstream)
            let client = try StreamingHTTPClient(socketPath: fixture.daemon.appSocket, timeout: .seconds(60))
            defer { client.close() }
            let size = 500_000_000
            let started = ContinuousClock.now
            try client.sendHead(method: "GET", target: Self.proxy("/download/\(size)"), headers: [])
            let head = try client.readHead()
            #expect(head.status == 200)
            var checker = PatternChecker()
            let received = try client.readBody(of: head) { checker.check($0) }
            let elapsed = ContinuousClock.now - started
            let growth = try memory.peakGrowthKiB()
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            print(
                "proxy download: \(received) of \(size) bytes in \(elapsed) "
                    + "(\(Int(Double(received) / 1_000_000 / max(seconds, 0.001))) MB/s), daemon peak RSS +\(growth) KiB"
            )

            #expect(received == size)
            #expect(checker.mismatches == 0, "\(checker.mismatches) pieces differ from what the upstream sent")
            #expect(growth < Self.memoryBudgetKiB, "peak resident set grew by \(growth) KiB")
            #expect(upstream.wait(timeout: .seconds(5)) { $0.downloads.last?.completed == true })
        }
    }

    @Test("a caller that stops reading stalls the upstream, not the daemon's memory; its close cancels the request")
    func backPressure() async throws {
        try await Self.run { fixture, upstream in
            let memory = try Self.warmUp(fixture, upstream)
            let client = try StreamingHTTPClient(socketPath: fixture.daemon.appSocket, timeout: .seconds(30))
            defer { client.close() }
            let size = 2_000_000_000
            try client.sendHead(method: "GET", target: Self.proxy("/download/\(size)"), headers: [])
            let head = try client.readHead()
            #expect(head.status == 200)
            // Read a little, then stop reading with the connection open.
            try client.readBody(of: head, limit: 1 << 20)

            // The upstream's writes stop: the bytes the kernel accepted from it hold still for a second. A daemon
            // that buffered the rest would instead pull it all in; stop early if its memory shows that.
            var last = -1
            var since = ContinuousClock.now
            var runaway = false
            let stalled = upstream.wait(timeout: .seconds(30)) { snapshot in
                if let resident = try? memory.residentGrowthKiB(), resident > 256 * 1024 {
                    runaway = true
                    return true
                }
                let accepted = snapshot.downloads.last { $0.size == size }?.bytesAccepted ?? -1
                if accepted != last {
                    last = accepted
                    since = ContinuousClock.now
                }
                return accepted > 0 && ContinuousClock.now - since >= .seconds(1)
            }
            let growth = try memory.peakGrowthKiB()
            print("proxy back-pressure: upstream stalled after \(last) bytes, daemon peak RSS +\(growth) KiB")
            #expect(stalled && !runaway, "the upstream's writes did not stall (\(last) bytes accepted)")
            #expect(growth < Self.memoryBudgetKiB, "peak resident set grew by \(growth) KiB")

            // The caller goes away: the upstream request is abandoned within a few seconds.
            client.close()
            let closed = ContinuousClock.now
            let cancelled = upstream.wait(timeout: .seconds(5)) { snapshot in
                snapshot.requests.contains { $0.target == "/download/\(size)" && $0.cancelled }
            }
            #expect(cancelled, "the upstream request was not cancelled")
            print("proxy back-pressure: upstream saw the close after \(ContinuousClock.now - closed)")
            #expect(upstream.downloads.last?.closedMidway == true)
        }
    }

    // MARK: - Limits

    @Test(
        "a declared Content-Length over proxy_max_body is 413 payload_too_large and nothing goes upstream",
        arguments: [BodyLimit.unset, .oneMiB]
    )
    func declaredBodyOverLimit(limit: BodyLimit) async throws {
        try await Self.run(options: limit.addOptions) { fixture, upstream in
            let client = try StreamingHTTPClient(socketPath: fixture.daemon.appSocket, timeout: .seconds(10))
            defer { client.close() }
            try client.sendHead(
                method: "POST",
                target: Self.proxy("/upload"),
                headers: [
                    ("Content-Type", "application/octet-stream"), ("Content-Length", "\(limit.bytes + 1)"),
                ]
            )
            let answer = try client.readResponse(method: "POST")
            #expect(answer.head.status == 413, "\(answer.head.status): \(answer.body)")
            #expect(answer.body.contains(#""code":"payload_too_large""#), "\(answer.body)")

            // A request after it, on another connection, reaches the upstream; the refused one never did.
            let barrier = try await fixture.app(Self.proxy("/barrier"))
            #expect(barrier.status == 200, "\(barrier.raw)")
            #expect(upstream.requests.contains { $0.path == "/barrier" })
            #expect(!upstream.requests.contains { $0.path == "/upload" }, "the refused request reached the upstream")
        }
    }

    /// A chunked body announces no size, so the daemon learns it is too large only when the bytes past the limit
    /// arrive, after it has started the upstream request. It aborts that request (the upstream sees the connection
    /// close before the body ends) and, since Personio's answer head has not gone out to the caller yet, answers
    /// the caller 413 `payload_too_large` and closes the connection: a caller still sending gets a broken pipe, but
    /// the 413 is there for it to read. (A closed connection with no answer would be the only way left once an
    /// answer head is out; an upload's answer comes after its body, so that does not happen here.)
    @Test(
        "a chunked body that crosses proxy_max_body mid-stream is aborted upstream and refused",
        arguments: [BodyLimit.unset, .oneMiB]
    )
    func chunkedBodyCrossesLimit(limit: BodyLimit) async throws {
        try await Self.run(options: limit.addOptions) { fixture, upstream in
            _ = try Self.warmUp(fixture, upstream)
            let client = try StreamingHTTPClient(socketPath: fixture.daemon.appSocket, timeout: .seconds(30))
            defer { client.close() }
            let size = limit.bytes + (1 << 20)
            let sent = try Self.upload(client, size: size, chunked: true)
            let answer = try client.readResponse(method: "POST")
            print(
                "proxy chunked body over \(limit.testDescription): \(sent.bytes) bytes sent "
                    + "(\(sent.failure ?? "no send failed")), caller got \(answer.head.status)"
            )
            #expect(answer.head.status == 413, "\(answer.head.status): \(answer.body)")
            #expect(answer.body.contains(#""code":"payload_too_large""#), "\(answer.body)")
            #expect(sent.bytes <= size)

            #expect(
                upstream.wait(timeout: .seconds(10)) { snapshot in
                    snapshot.requests.contains { $0.path == "/upload" && $0.cancelled && !$0.bodyComplete }
                },
                "the upstream did not see the oversized upload aborted: \(upstream.requests.map(\.path))"
            )
            let upload = try #require(upstream.uploads.first, "the upload never reached the upstream")
            #expect(upload.closedMidway && !upload.completed)
            #expect(upload.bytes <= limit.bytes, "the upstream received \(upload.bytes) bytes")
        }
    }

    @Test("every other route keeps the 64 KiB body limit", arguments: [false, true])
    func otherRoutesKeepTheirLimit(chunked: Bool) async throws {
        try await Self.run { fixture, _ in
            let padding = String(repeating: "a", count: 65 * 1024)
            let body = Array(#"{"id":"padded","provider":"personio-v2","pad":"\#(padding)"}"#.utf8)
            for (method, target) in [("POST", "/v1/connections"), ("PATCH", "/v1/connections/\(Self.connection)")] {
                let client = try StreamingHTTPClient(socketPath: fixture.daemon.adminSocket, timeout: .seconds(10))
                defer { client.close() }
                let framing = chunked ? ("Transfer-Encoding", "chunked") : ("Content-Length", "\(body.count)")
                try client.sendHead(
                    method: method,
                    target: target,
                    headers: [("Content-Type", "application/json"), framing]
                )
                do {
                    if chunked {
                        for start in stride(from: 0, to: body.count, by: 8192) {
                            try body[start..<min(start + 8192, body.count)].withUnsafeBytes { try client.sendChunk($0) }
                        }
                        try client.sendLastChunk()
                    } else {
                        try client.send(body)
                    }
                } catch {
                    // The daemon may answer and close before the whole body is in; its answer is read below.
                }
                let answer = try client.readResponse(method: method)
                #expect(answer.head.status == 413, "\(method) \(target): \(answer.head.status) \(answer.body)")
                #expect(answer.body.contains(#""code":"payload_too_large""#), "\(answer.body)")
            }
            let list = try await fixture.ctl(["list", "--json"])
            #expect(list.status == 0 && !list.stdout.contains("padded"), "\(list)")
        }
    }

    // MARK: - Helpers

    /// A daemon with one `personio-v2` connection (granted to uid 0, the tests) whose `api_base_url` is a fresh
    /// ``ProxyUpstream``, added with `options` besides. Generous proxy and body time-outs: a debug build streaming
    /// 50 MB must not be cut short by them.
    static func run(
        options: [String] = [],
        _ body: (BrokerFixture, ProxyUpstream) async throws -> Void
    ) async throws {
        let upstream = try ProxyUpstream()
        defer { upstream.shutdown() }
        try await BrokerFixture.run(
            daemonArguments: ["--dev", "--log-level", "info", "--proxy-timeout", "120", "--body-timeout", "120"]
        ) { fixture in
            let added = try await fixture.ctl(
                [
                    "add", Self.connection, "--provider", "personio-v2", "--client-id", "CANARY-stream-client",
                    "--api-base-url", upstream.baseURL, "--allow-uid", "0",
                ] + options + ["--secret-stdin"],
                stdin: "CANARY-stream-secret\n"
            )
            try #require(added.status == 0, "\(added)")
            try await body(fixture, upstream)
        }
    }

    /// Sends a small upload and download through the proxy (the token, the upstream connection, the daemon's
    /// buffers all come into being), then starts measuring the daemon's memory from there.
    static func warmUp(_ fixture: BrokerFixture, _ upstream: ProxyUpstream) throws -> Memory {
        let client = try StreamingHTTPClient(socketPath: fixture.daemon.appSocket, timeout: .seconds(30))
        defer { client.close() }
        try client.sendHead(method: "GET", target: Self.proxy("/download/1000000"), headers: [])
        let head = try client.readHead()
        try #require(head.status == 200, "warm-up download: \(head.status)")
        try client.readBody(of: head)
        try client.sendHead(
            method: "POST",
            target: Self.proxy("/warm"),
            headers: [("Content-Type", "application/json"), ("Content-Length", "2")]
        )
        try client.send("{}")
        let answer = try client.readResponse(method: "POST")
        try #require(answer.head.status == 200, "warm-up upload: \(answer.head.status) \(answer.body)")
        return try Memory(pid: #require(fixture.daemon.pid))
    }

    /// What ``upload(_:size:chunked:)`` sent.
    struct Sent {
        var bytes = 0
        var sha256 = ""
        /// When half the body had been handed to the kernel.
        var halfSentAt: ContinuousClock.Instant?
        /// Why sending stopped early (the daemon closed), if it did.
        var failure: String?
    }

    /// Sends `POST /upload` through the proxy with a `size`-byte body made as it goes (64 KiB pieces of a seeded
    /// random block, each stamped with its index), hashing what it sends. Stops early, without an error, once the
    /// daemon has answered or closed.
    static func upload(_ client: StreamingHTTPClient, size: Int, chunked: Bool) throws -> Sent {
        var generator = SeededGenerator(seed: 0x5EED_0011)
        var block = (0..<65536).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let framing = chunked ? ("Transfer-Encoding", "chunked") : ("Content-Length", "\(size)")
        try client.sendHead(
            method: "POST",
            target: Self.proxy("/upload"),
            headers: [("Content-Type", "application/octet-stream"), framing]
        )
        var sent = Sent()
        var hash = StreamingSHA256()
        var index: UInt64 = 0
        while sent.bytes < size {
            if client.hasPendingInput { break }
            let count = min(block.count, size - sent.bytes)
            withUnsafeBytes(of: index.littleEndian) { stamp in
                block.withUnsafeMutableBytes { $0.copyMemory(from: stamp) }
            }
            index += 1
            do {
                try block.withUnsafeBytes { raw in
                    let piece = UnsafeRawBufferPointer(rebasing: raw[0..<count])
                    if chunked { try client.sendChunk(piece) } else { try client.send(piece) }
                    hash.update(piece)
                }
            } catch {
                sent.failure = "\(error)"
                break
            }
            sent.bytes += count
            if sent.halfSentAt == nil && sent.bytes >= size / 2 { sent.halfSentAt = .now }
        }
        if sent.bytes == size && chunked && sent.failure == nil {
            do { try client.sendLastChunk() } catch { sent.failure = "\(error)" }
        }
        sent.sha256 = hash.finish()
        return sent
    }

    /// The daemon's resident set, from `/proc/PID/status`, against a baseline taken when measuring starts.
    struct Memory {
        let pid: Int32
        /// `VmRSS` when measuring started, KiB.
        let baselineKiB: Int

        /// Resets the kernel's peak (`VmHWM`) to the current resident set, when it may (`clear_refs` 5), and takes
        /// the baseline.
        init(pid: Int32) throws {
            self.pid = pid
            let reset = open("/proc/\(pid)/clear_refs", O_WRONLY | O_CLOEXEC)
            if reset >= 0 {
                _ = write(reset, "5", 1)
                close(reset)
            }
            // Without the reset, the peak since start-up is the baseline: growth beyond it still counts.
            self.baselineKiB = try max(Self.field(pid, "VmRSS:"), reset >= 0 ? 0 : Self.field(pid, "VmHWM:"))
        }

        /// How far the peak resident set rose above the baseline, KiB.
        func peakGrowthKiB() throws -> Int { try Self.field(self.pid, "VmHWM:") - self.baselineKiB }

        /// How far the current resident set is above the baseline, KiB.
        func residentGrowthKiB() throws -> Int { try Self.field(self.pid, "VmRSS:") - self.baselineKiB }

        static func field(_ pid: Int32, _ name: String) throws -> Int {
            let status = try ProcFiles.text("/proc/\(pid)/status")
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name) }),
                let value = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) })
            else { throw TestSupportError("no \(name) in /proc/\(pid)/status") }
            return value
        }
    }

    /// Compares a download, piece by piece as it arrives, with ``ProxyUpstream/downloadByte(at:)``.
    struct PatternChecker {
        /// The pattern from every phase: `reference[phase..<phase + count]` is what `count` bytes starting at an
        /// offset with `offset % 251 == phase` must be.
        static let reference: [UInt8] = (0..<(251 + 65536)).map { ProxyUpstream.downloadByte(at: $0) }
        var offset = 0
        var mismatches = 0

        mutating func check(_ piece: UnsafeRawBufferPointer) {
            var start = 0
            while start < piece.count {
                let count = min(65536, piece.count - start)
                let phase = (self.offset + start) % 251
                let same = Self.reference.withUnsafeBytes { reference in
                    memcmp(piece.baseAddress! + start, reference.baseAddress! + phase, count) == 0
                }
                if !same { self.mismatches += 1 }
                start += count
            }
            self.offset += piece.count
        }
    }
}
