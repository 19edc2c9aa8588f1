import Foundation
import TestSupport
import Testing

/// The proxy upstream stand-in itself, spoken to directly over TCP: tokens, streamed downloads and uploads,
/// scripted answers, the recording, back-pressure and cancellation, and a shutdown that ends blocked connections.
@Suite("Proxy upstream stand-in", .offCooperativePool, .timeLimit(.minutes(1)))
struct ProxyUpstreamTests {
    @Test("tokens count up and revocation answers 200, on one keep-alive connection")
    func tokens() throws {
        let upstream = try ProxyUpstream()
        defer { upstream.shutdown() }
        let client = try StreamingHTTPClient(port: upstream.port, timeout: .seconds(10))
        defer { client.close() }
        let form = "grant_type=client_credentials&client_id=CANARY-ID&client_secret=CANARY-SECRET"
        for number in 1...2 {
            try client.sendHead(
                method: "POST",
                target: "/v2/auth/token",
                headers: [
                    ("Content-Type", "application/x-www-form-urlencoded"), ("Content-Length", "\(form.utf8.count)"),
                ]
            )
            try client.send(form)
            let (head, body) = try client.readResponse(method: "POST")
            #expect(head.status == 200)
            #expect(body.contains("\"access_token\":\"upstream-token-\(number)\""), "\(body)")
            #expect(body.contains("\"token_type\":\"Bearer\"") && body.contains("\"expires_in\":3600"))
        }
        try client.sendHead(method: "POST", target: "/v2/auth/revoke", headers: [("Content-Length", "5")])
        try client.send("token")
        #expect(try client.readResponse(method: "POST").head.status == 200)
        // The upstream records an answer as sent once `send` has returned, which may be after the client read it.
        #expect(upstream.wait(timeout: .seconds(5)) { $0.requests.count == 3 && $0.requests.allSatisfy(\.answered) })
        let requests = upstream.requests
        #expect(requests.map(\.path) == ["/v2/auth/token", "/v2/auth/token", "/v2/auth/revoke"])
        #expect(requests.allSatisfy { $0.connection == 1 && !$0.cancelled })
        #expect(requests[0].bodyBytes == form.utf8.count && requests[0].body == Array(form.utf8))
    }

    @Test("downloads are the pattern, Content-Length and chunked", arguments: [false, true])
    func download(chunked: Bool) throws {
        let upstream = try ProxyUpstream()
        defer { upstream.shutdown() }
        let client = try StreamingHTTPClient(port: upstream.port, timeout: .seconds(10))
        defer { client.close() }
        let size = 3_000_017
        try client.sendHead(method: "GET", target: "/download/\(size)\(chunked ? "?chunked=1" : "")", headers: [])
        let head = try client.readHead()
        #expect(head.status == 200)
        #expect((head.header("Transfer-Encoding") == "chunked") == chunked)
        var offset = 0
        var mismatches = 0
        try client.readBody(of: head) { piece in
            for byte in piece {
                if byte != ProxyUpstream.downloadByte(at: offset) { mismatches += 1 }
                offset += 1
            }
        }
        #expect(offset == size && mismatches == 0)
        #expect(upstream.wait(timeout: .seconds(5)) { $0.downloads.first?.completed == true })
        let download = try #require(upstream.downloads.first)
        #expect(download.bytesAccepted == size && !download.closedMidway && download.chunked == chunked)
        #expect(upstream.wait(timeout: .seconds(5)) { $0.requests.first?.answered == true })
    }

    @Test("uploads are counted and hashed, never kept, Content-Length and chunked")
    func upload() throws {
        let upstream = try ProxyUpstream()
        defer { upstream.shutdown() }
        let client = try StreamingHTTPClient(port: upstream.port, timeout: .seconds(10))
        defer { client.close() }
        // SHA-256("abc"), FIPS 180-2's first example.
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        try client.sendHead(method: "POST", target: "/upload", headers: [("Transfer-Encoding", "chunked")])
        try Array("a".utf8).withUnsafeBytes { try client.sendChunk($0) }
        try Array("bc".utf8).withUnsafeBytes { try client.sendChunk($0) }
        try client.sendLastChunk()
        let chunked = try client.readResponse(method: "POST")
        #expect(chunked.head.status == 200)
        #expect(chunked.body == "{\"bytes\":3,\"sha256\":\"\(abc)\"}")

        let size = 2_000_000
        try client.sendHead(method: "PUT", target: "/upload", headers: [("Content-Length", "\(size)")])
        let zeros = [UInt8](repeating: 0, count: 100_000)
        for _ in 0..<(size / zeros.count) { try client.send(zeros) }
        let plain = try client.readResponse(method: "PUT")
        #expect(plain.head.status == 200)
        #expect(plain.body.hasPrefix("{\"bytes\":\(size),\"sha256\":\""), "\(plain.body)")
        let uploads = upstream.uploads
        #expect(uploads.count == 2 && uploads.allSatisfy(\.completed))
        #expect(uploads.first?.sha256 == abc && uploads.first?.chunked == true)
        let second = try #require(uploads.last)
        #expect(second.bytes == size && second.firstByteAt != nil && second.firstByteAt! <= second.lastByteAt!)
        #expect(upstream.requests.allSatisfy { $0.body.isEmpty && $0.bodyComplete })
    }

    @Test("scripted answers, the default answer, and the recording of target and headers as received")
    func scriptedAndRecorded() throws {
        let upstream = try ProxyUpstream()
        defer { upstream.shutdown() }
        upstream.register(
            path: "/moved",
            status: 302,
            headers: [("Location", "/elsewhere"), ("Retry-After", "7"), ("Keep-Alive", "timeout=5")],
            body: "{\"moved\":true}"
        )
        let client = try StreamingHTTPClient(port: upstream.port, timeout: .seconds(10))
        defer { client.close() }
        try client.sendHead(method: "GET", target: "/moved?a=1&b=%2F", headers: [("X-One", "1"), ("x-two", "2")])
        let moved = try client.readResponse()
        #expect(moved.head.status == 302 && moved.body == "{\"moved\":true}")
        #expect(moved.head.header("Location") == "/elsewhere" && moved.head.header("Retry-After") == "7")
        #expect(moved.head.header("Keep-Alive") == "timeout=5")
        try client.sendHead(method: "DELETE", target: "/v2/persons/1?x=\"y\"", headers: [])
        let fallback = try client.readResponse(method: "DELETE")
        #expect(fallback.head.status == 200)
        #expect(fallback.body == "{\"method\":\"DELETE\",\"target\":\"/v2/persons/1?x=\\\"y\\\"\"}")
        let first = try #require(upstream.requests.first)
        #expect(first.method == "GET" && first.target == "/moved?a=1&b=%2F" && first.path == "/moved")
        #expect(
            first.headers == [
                ProxyUpstream.Header("Host", "localhost"), ProxyUpstream.Header("X-One", "1"),
                ProxyUpstream.Header("x-two", "2"),
            ]
        )
        #expect(upstream.requests.count == 2 && upstream.requests.allSatisfy { $0.connection == 1 })
    }

    @Test("a client that closes during a delayed answer is recorded as cancelled")
    func cancelledDuringDelay() throws {
        let upstream = try ProxyUpstream()
        defer { upstream.shutdown() }
        upstream.register(path: "/slow", body: "late", delay: .seconds(20))
        let client = try StreamingHTTPClient(port: upstream.port, timeout: .seconds(10))
        try client.sendHead(method: "GET", target: "/slow", headers: [])
        #expect(upstream.waitForRequest(count: 1, timeout: .seconds(5)))
        client.close()
        let started = ContinuousClock.now
        #expect(upstream.waitForCancellation(timeout: .seconds(5)))
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(upstream.requests.first?.answered == false)
    }

    @Test("a stalled reader blocks the download's writes; its close cancels it; shutdown ends what is left")
    func backPressure() throws {
        let upstream = try ProxyUpstream()
        let client = try StreamingHTTPClient(port: upstream.port, timeout: .seconds(10))
        client.setReceiveBuffer(64 * 1024)
        let size = 1_000_000_000
        try client.sendHead(method: "GET", target: "/download/\(size)", headers: [])
        // Writes stop: the accepted count holds still for half a second, far short of the size.
        var last = -1
        var stableSince = ContinuousClock.now
        let stalled = upstream.wait(timeout: .seconds(10)) { snapshot in
            let accepted = snapshot.downloads.first?.bytesAccepted ?? -1
            if accepted != last {
                last = accepted
                stableSince = ContinuousClock.now
            }
            return accepted > 0 && ContinuousClock.now - stableSince > .milliseconds(500)
        }
        #expect(stalled && last < 64 * 1024 * 1024, "accepted \(last) bytes")
        client.close()
        #expect(upstream.waitForCancellation(timeout: .seconds(5)))
        #expect(upstream.downloads.first?.closedMidway == true)

        // A second stalled download is still blocked in send when the upstream shuts down.
        let other = try StreamingHTTPClient(port: upstream.port, timeout: .seconds(10))
        defer { other.close() }
        try other.sendHead(method: "GET", target: "/download/\(size)", headers: [])
        #expect(upstream.wait(timeout: .seconds(5)) { $0.downloads.count == 2 && $0.downloads[1].bytesAccepted > 0 })
        let started = ContinuousClock.now
        upstream.shutdown()
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(upstream.snapshot.openConnections == 0)
    }
}
