import HTTP1Wire
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing
import VaultCrypto

@testable import PersonioClient

/// The allocation-free checks on every proxied answer's headers give the same verdicts as the plain ones they stand
/// in for: `isReturned` as the allow-list's set, `Redactor.isClean` as sanitizing and comparing, `scrub`'s look
/// before copying as scrubbing a copy.
@Suite struct HeaderFastPathTests {
    static let token = "test-token-not-a-secret-0123456789"

    @Test func isReturnedAgreesWithTheAllowList() {
        var names = Array(PersonioProxy.returnedResponseHeaderNames)
        names += ["Content-Length", "X-RateLimit-Limit", "x-ratelimit-remaining", "X-RATELIMIT-RESET", "x-ratelimit-a"]
        names += [
            "Server", "Date", "Connection", "Set-Cookie", "Transfer-Encoding", "x-ratelimit", "ETag2", "Locations",
        ]
        names += ["content-typ", "Content-Types", "Retry-After ", "Last-Modified", "CONTENT-DISPOSITION", "etag"]
        for name in names {
            for chunked in [false, true] {
                let lowercased = name.lowercased()
                let expected =
                    PersonioProxy.returnedResponseHeaderNames.contains(lowercased)
                    || lowercased.hasPrefix("x-ratelimit-") || (lowercased == "content-length" && !chunked)
                #expect(PersonioProxy.isReturned(name, chunked: chunked) == expected, "\(name), chunked: \(chunked)")
            }
        }
    }

    /// The server writes the headers of a proxied answer without NIO's outbound validator: whatever Personio sends,
    /// the ones returned must pass it. An attacker who controls an answer (a compromised or impersonated upstream)
    /// must not split the caller's response or smuggle a header into it.
    @Test func everyReturnedHeaderPassesNIOsValidator() throws {
        let hostile: [(String, String)] = [
            ("Content-Type", "application/json"), ("X-RateLimit-Limit", "60"), ("x-ratelimit-a b", "1"),
            ("x-ratelimit-(x)", "1"), ("X-RateLimit-a:b", "1"), ("Retry-After", "1\r\nSet-Cookie: a=b"),
            ("Location", "/a\nb"), ("ETag", "\"\u{7f}\""), ("Last-Modified", "a\u{0}b"),
            ("Content-Disposition", "tab\tx"),
        ]
        var headers = HTTPHeaders()
        for (name, value) in hostile { headers.add(name: name, value: value) }
        let (returned, _) = PersonioProxy.returnedResponseHeaders(headers, redactor: Redactor(secrets: []))
        #expect(returned.map(\.0) == ["Content-Type", "X-RateLimit-Limit"])
        let channel = EmbeddedChannel(handlers: [HTTPResponseEncoder(), NIOHTTPResponseHeadersValidator()])
        var head = HTTPResponseHead(version: .http1_1, status: .ok)
        for (name, value) in returned { head.headers.add(name: name, value: value) }
        try channel.writeOutbound(HTTPServerResponsePart.head(head))
        #expect(try channel.readOutbound(as: ByteBuffer.self) != nil)
        _ = try channel.finish()
    }

    /// A header that Personio's `Connection` names is for that hop only: every spelling of the list finds it.
    @Test func headersNamedByConnectionAreDropped() {
        let headers: HTTPHeaders = [
            "X-RateLimit-A": "1", "x-ratelimit-b": "2", "X-RateLimit-C": "3", "X-RateLimit-D": "4",
            "Connection": " close ,  X-RateLimit-A\t, ,KEEP-ALIVE,x-RATELIMIT-b", "connection": "X-RateLimit-D",
        ]
        let (returned, _) = PersonioProxy.returnedResponseHeaders(headers, redactor: Redactor(secrets: []))
        #expect(returned.map(\.0) == ["X-RateLimit-C"])
    }

    /// `HTTPBytes.hasPrefixIgnoringCase` compares eight bytes at a time: for every word the vault compares names
    /// with, it gives the byte-wise verdict for the word in any letter case, with any byte at any position, cut short
    /// and followed by more.
    @Test func caseInsensitiveComparisonAgreesWithComparingByteByByte() {
        let words: [StaticString] = [
            "etag", "close", "chunked", "location", "connection", "keep-alive", "retry-after", "x-personio-",
            "content-type", "x-ratelimit-", "last-modified", "content-length", "transfer-encoding",
            "content-disposition", "",
        ]
        func byteByByte(_ bytes: [UInt8], _ word: [UInt8]) -> Bool {
            bytes.count >= word.count
                && zip(bytes, word).allSatisfy { byte, letter in
                    byte == letter || ((0x41...0x5A).contains(byte) && byte | 0x20 == letter)
                }
        }
        func check(_ bytes: [UInt8], _ word: StaticString, _ letters: [UInt8]) {
            bytes.withUnsafeBytes { raw in
                #expect(
                    HTTPBytes.hasPrefixIgnoringCase(raw, word) == byteByByte(bytes, letters),
                    "\(bytes) starts with \(word)"
                )
                #expect(
                    HTTPBytes.equalsIgnoringCase(raw, word)
                        == (bytes.count == letters.count && byteByByte(bytes, letters)),
                    "\(bytes) is \(word)"
                )
            }
        }
        var compared = 0
        for word in words {
            let letters = Array("\(word)".utf8)
            check(letters, word, letters)
            check(Array("\(word)".uppercased().utf8), word, letters)
            check(letters + Array("x".utf8), word, letters)
            for length in 0..<letters.count { check(Array(letters.prefix(length)), word, letters) }
            for position in letters.indices {
                for byte in UInt8.min...UInt8.max {
                    var bytes = letters
                    bytes[position] = byte
                    check(bytes, word, letters)
                    compared += 1
                }
            }
        }
        #expect(compared == words.map(\.utf8CodeUnitCount).reduce(0, +) * 256)
    }

    @Test func isCleanAgreesWithSanitizing() {
        let redactor = Redactor(secrets: [secret(Self.token), secret("short")])
        let fragment = String(Self.token.dropFirst(5).prefix(12))
        var texts = ["", "2048", "application/json", "application/json; charset=utf-8", "nginx/1.22.1", "short"]
        texts += ["a short one", "Bearer \(Self.token)", "x\(fragment)y", String(fragment.dropLast()), "tab\there"]
        texts += ["caf\u{e9}", "line\nbreak", String(repeating: "a", count: 2048), String(repeating: "a", count: 2049)]
        texts += ["test-token-not-a-secret-0123456789".uppercased(), "test%2Dtoken", "sho", "xshortx"]
        for text in texts {
            let expected = redactor.sanitize(text, limit: Redactor.inspectedLength) == text
            #expect(redactor.isClean(text) == expected, "\(text.prefix(80))")
        }
    }

    @Test func scrubbingAStringFindsWhatScrubbingItsBytesFinds() {
        let scrubber = CredentialScrubber(secrets: [secret(Self.token)])
        let texts = ["", "2048", "Bearer \(Self.token)", "\(Self.token)\(Self.token)", String(Self.token.dropLast())]
        for text in texts {
            var bytes = Array(text.utf8)
            let found = bytes.withUnsafeMutableBytes { scrubber.scrub($0) }
            let (scrubbed, reported) = scrubber.scrub(text)
            #expect(reported == found, "\(text)")
            #expect(scrubbed == String(decoding: bytes, as: UTF8.self), "\(text)")
        }
    }

    /// The proxy reads a parsed head's headers where they arrived, through their offsets into the bytes read: it
    /// returns what it returns for the same headers written out as strings, with the white space around values
    /// gone, an echo scrubbed and reported, and a header named by `Connection` dropped.
    @Test func aParsedHeadReturnsWhatItsHeadersAsStringsReturn() throws {
        let scrubber = CredentialScrubber(secrets: [secret(Self.token)])
        let redactor = Redactor(secrets: [secret(Self.token)])
        let text =
            "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type:  application/json \r\nETag: \"x-\(Self.token)\"\r\n"
            + "X-RateLimit-Remaining:\t59\r\nConnection: keep-alive, X-RateLimit-Reset\r\nX-RateLimit-Reset: 5\r\n"
            + "Content-Length: 2\r\n\r\n{}"
        var parser = UpstreamResponseParser()
        parser.feed(ByteBuffer(string: text))
        guard case .head(let head) = try parser.next() else {
            Issue.record("the answer's head was not parsed")
            return
        }
        let stars = String(repeating: "*", count: Self.token.utf8.count)
        let expected = [
            "Content-Type: application/json", "ETag: \"x-\(stars)\"", "X-RateLimit-Remaining: 59", "Content-Length: 2",
        ]
        let fromBytes = PersonioProxy.returnedResponseHeaders(head, redactor: redactor, scrubber: scrubber)
        #expect(fromBytes.headers.map { "\($0.0): \($0.1)" } == expected)
        #expect(fromBytes.echoed)
        let asStrings = UpstreamResponseParser.Head(status: 200, headers: head.headers, keepAlive: true, chunked: false)
        let fromStrings = PersonioProxy.returnedResponseHeaders(asStrings, redactor: redactor, scrubber: scrubber)
        #expect(fromStrings.headers.map { "\($0.0): \($0.1)" } == expected)
        #expect(fromStrings.echoed)
    }
}

/// The request head the proxy sends upstream, encoded by the vault: byte for byte what HTTP/1.1 wants, and for a
/// recruiting key in memory that is zeroed when freed, never in the destination's plain header lines.
@Suite struct UpstreamRequestHeadTests {
    static let key = "test-recruiting-key-not-a-secret"

    @Test func aBearerRequestIsEncodedAsHTTP11() throws {
        let destination = try ProxyDestination(
            baseURL: "https://api.example.test/gw",
            authorization: .bearer("test-token-not-a-secret"),
            appID: "app-1",
            partnerID: nil
        )
        let head = UpstreamRequestHead(
            method: .POST,
            target: destination.pathPrefix + "/v2/persons?limit=1",
            callerHeaders: [("Accept", "application/json")],
            destination: destination,
            body: .some(nil)
        )
        #expect(head.framing == .chunked)
        #expect(
            String(buffer: head.bytes)
                == "POST /gw/v2/persons?limit=1 HTTP/1.1\r\nAccept: application/json\r\nHost: api.example.test\r\n"
                + "X-Personio-App-ID: app-1\r\nAuthorization: Bearer test-token-not-a-secret\r\n"
                + "Transfer-Encoding: chunked\r\n\r\n"
        )
        let empty = UpstreamRequestHead(
            method: .PUT,
            target: "/x",
            callerHeaders: [],
            destination: destination,
            body: nil
        )
        #expect(String(buffer: empty.bytes).hasSuffix("Content-Length: 0\r\n\r\n") && empty.framing == .none)
        let get = UpstreamRequestHead(
            method: .GET,
            target: "/x",
            callerHeaders: [],
            destination: destination,
            body: nil
        )
        #expect(!String(buffer: get.bytes).contains("Content-Length") && get.framing == .none)
        let sized = UpstreamRequestHead(
            method: .PATCH,
            target: "/x",
            callerHeaders: [],
            destination: destination,
            body: .some(12)
        )
        #expect(String(buffer: sized.bytes).hasSuffix("Content-Length: 12\r\n\r\n") && sized.framing == .contentLength)
    }

    @Test func aRecruitingKeyGoesOnlyIntoZeroedMemory() throws {
        let destination = try ProxyDestination(
            baseURL: "https://api.example.test",
            authorization: .recruiting(key: secret(Self.key), companyID: "123"),
            appID: nil,
            partnerID: nil
        )
        #expect(!String(buffer: destination.headerLines).contains(Self.key))
        var address: UInt = 0
        do {
            let head = UpstreamRequestHead(
                method: .GET,
                target: "/v1/recruiting/positions",
                callerHeaders: [],
                destination: destination,
                body: nil
            )
            let text = String(buffer: head.bytes)
            #expect(text.contains("\r\nAuthorization: Bearer \(Self.key)\r\nX-Company-Id: 123\r\n"), "\(text.count)")
            address = RequestBodyTests.address(head.bytes)
            #expect(RequestBodyTests.isLive(address), "the head is not in the zeroing allocator's memory")
        }
        #expect(!RequestBodyTests.isLive(address))
    }
}
