import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import TestSupport
import Testing

@testable import VaultServer

/// The vault's request parser against NIO's `HTTPRequestDecoder` (llhttp), on generated requests and mutations of
/// them: it may refuse more than llhttp, never accept what llhttp refuses, and where both accept they agree on the
/// method, the target, the version, every header and the body's bytes, request by request. Each stream is also
/// parsed in random pieces, which must not change the outcome.
///
/// A short fixed-seed run in `make test`; `make fuzz` sets `CONNVAULT_FUZZ_ITERATIONS` (and `CONNVAULT_FUZZ_SEED`
/// replays another seed).
@Suite struct HTTPRequestFuzzTests {
    static let iterations = FuzzProfile.iterations(standard: 3000)
    static let seed = FuzzProfile.seed(fixed: 0x5EED_0012)

    @Test func neverAcceptsWhatLlhttpRefusesAndAgreesWhereBothAccept() {
        var random = SeededGenerator(seed: Self.seed)
        var bothAccepted = 0
        var refusedByBoth = 0
        var refusedByTheVaultOnly = 0
        var failures = 0
        for iteration in 0..<Self.iterations {
            // One to three requests on one connection (pipelined).
            let requests = (0...random.below(3)).map { _ in GeneratedRequest.make(using: &random) }
            let wellFormed = requests.flatMap(\.bytes)
            let mutated = random.below(10) < 6
            let bytes =
                mutated ? HTTPMutations.mutate(wellFormed, framingLines: Self.framingLines, using: &random) : wellFormed
            let splits = (0..<random.below(4)).map { _ in random.below(bytes.count + 1) }
            let vault = ParsedRequests.vault(bytes)
            let pieces = ParsedRequests.vault(bytes, splits: splits)
            let nio = ParsedRequests.nio(bytes)
            let context = "iteration \(iteration) (seed \(Self.seed)): \(HTTPMutations.printable(bytes))"
            if pieces != vault {
                failures += 1
                Issue.record("pieces \(splits) change the outcome: \(pieces) vs \(vault); \(context)")
            }
            // Nothing is read after a request that ends its connection.
            let served = requests.prefix(through: requests.firstIndex { !$0.keepAlive } ?? requests.count - 1)
            if !mutated && vault != ParsedRequests(requests: served.map(\.expected), refusal: nil) {
                failures += 1
                Issue.record("well-formed requests parsed as \(vault); \(context)")
            }
            // Compared request by request: the vault stops at the first it refuses, llhttp may read further.
            let agreed = min(vault.requests.count, nio.requests.count)
            if Array(vault.requests.prefix(agreed)) != Array(nio.requests.prefix(agreed)) {
                failures += 1
                Issue.record("the parsers disagree: vault \(vault), NIO \(nio); \(context)")
            } else if vault.requests.count > nio.requests.count {
                failures += 1
                Issue.record("accepted what llhttp refuses (\(nio)): \(vault); \(context)")
            } else if vault.refusal == nil && nio.refusal == nil {
                bothAccepted += 1
            } else if vault.refusal != nil && nio.refusal != nil && vault.requests.count == nio.requests.count {
                refusedByBoth += 1
            } else if vault.refusal != nil {
                refusedByTheVaultOnly += 1
            }
            if failures >= 10 { break }
        }
        // The generator reaches both sides of the line: a run that only ever made garbage (or only valid requests)
        // would prove nothing.
        #expect(bothAccepted > Self.iterations / 4, "both accepted \(bothAccepted)")
        #expect(refusedByBoth > Self.iterations / 10, "both refused \(refusedByBoth)")
        // Where only the vault refuses, it is by design (the parser's documentation): bounded, not the usual case.
        #expect(refusedByTheVaultOnly < Self.iterations / 4, "refused by the vault only \(refusedByTheVaultOnly)")
    }

    /// The framing lines a mutation may slip in.
    static let framingLines = ["Content-Length: 3\r\n", "Transfer-Encoding: chunked\r\n", "Content-Length: 0\r\n"]
}

/// What a parser made of a stream of requests: the complete requests in order, and why it stopped, if it did.
struct ParsedRequests: Equatable, CustomStringConvertible {
    struct Request: Equatable {
        var method: String
        var uri: String
        var version: String
        var headers: [String]
        var body: [UInt8]
    }

    var requests: [Request]
    /// Why the parser refused the stream, or "incomplete" when it ended inside a request; nil when it ended between
    /// requests.
    var refusal: String?

    var description: String {
        let listed = self.requests.map { "\($0.method) \($0.uri) \($0.version) \($0.headers) body \($0.body.count)" }
        return "\(listed) " + (self.refusal.map { "then \($0)" } ?? "complete")
    }

    /// The vault's parser, fed `bytes` in the pieces `splits` cuts them into.
    static func vault(_ bytes: [UInt8], splits: [Int] = []) -> ParsedRequests {
        var parser = HTTPRequestParser()
        var parsed = ParsedRequests(requests: [], refusal: nil)
        var current: Request?
        var start = 0
        for end in splits.sorted() + [bytes.count] where end >= start {
            parser.feed(ByteBuffer(bytes: bytes[start..<end]))
            start = end
            do {
                while let event = try parser.next() {
                    switch event {
                    case .head(let head):
                        current = Request(head)
                    case .body(let piece):
                        current?.body += piece.readableBytesView
                    case .end:
                        if let current { parsed.requests.append(current) }
                        current = nil
                    }
                }
            } catch {
                parsed.refusal = "\(error)"
                return parsed
            }
        }
        if current != nil || parser.hasUnparsedBytes { parsed.refusal = "incomplete" }
        return parsed
    }

    /// NIO's `HTTPRequestDecoder` (llhttp), as the server used it before, then the end of the input.
    static func nio(_ bytes: [UInt8]) -> ParsedRequests {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        var parsed = ParsedRequests(requests: [], refusal: nil)
        var current: Request?
        func drain() {
            while let part = try? channel.readInbound(as: HTTPServerRequestPart.self) {
                switch part {
                case .head(let head): current = Request(head)
                case .body(let piece): current?.body += piece.readableBytesView
                case .end:
                    if let current { parsed.requests.append(current) }
                    current = nil
                }
            }
        }
        do {
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPRequestDecoder()))
            try channel.writeInbound(ByteBuffer(bytes: bytes))
            drain()
            channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
            drain()
            try channel.throwIfErrorCaught()
        } catch {
            drain()
            parsed.refusal = "\(error)"
            return parsed
        }
        if current != nil { parsed.refusal = "incomplete" }
        return parsed
    }
}

extension ParsedRequests.Request {
    /// A head as either parser gave it. llhttp keeps the white space after a value, which RFC 9110 §5.5 says is not
    /// part of it, and the vault's parser drops: values are compared without it.
    init(_ head: HTTPRequestHead) {
        self.init(
            method: head.method.rawValue,
            uri: head.uri,
            version: "\(head.version)",
            headers: head.headers.map {
                "\($0.name): \($0.value.trimmingCharacters(in: CharacterSet(charactersIn: " \t")))"
            },
            body: []
        )
    }
}

/// A well-formed request of the kinds local programs send the vault, and what parsing it must give.
struct GeneratedRequest {
    var bytes: [UInt8]
    var expected: ParsedRequests.Request
    /// Whether another request may follow, as NIO reads `Connection` (the reading the server acts on): a single
    /// `keep-alive`, or none in HTTP/1.1; two options of any kind mean `close`.
    var keepAlive: Bool

    static func make(using random: inout SeededGenerator) -> GeneratedRequest {
        func pick<T>(_ choices: [T]) -> T { choices[random.below(choices.count)] }
        func chance(_ percent: Int) -> Bool { random.below(100) < percent }
        func ows() -> String { pick(["", "", "", " ", "\t", "  "]) }

        let method = pick(["GET", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
        let uri = pick([
            "/v1/token", "/v1/connections/acme/token", "/v1/connections/acme/proxy/v2/persons?limit=10&offset=0",
            "/v1/connections/acme/proxy/v1/company/employees/1/documents", "/", "/metrics", "/a%20b?x=%2F&y",
        ])
        let http10 = chance(10)
        var text = (chance(5) ? "\r\n" : "") + "\(method) \(uri) HTTP/1.\(http10 ? 0 : 1)\r\n"

        var headers: [(String, String)] = []
        if !http10 || chance(50) { headers.append(("Host", "localhost")) }
        for _ in 0..<random.below(6) {
            headers.append(
                pick([
                    ("Accept", "application/json"), ("User-Agent", "curl/7.88.1"), ("X-Empty", ""),
                    ("Content-Type", "application/json; charset=utf-8"), ("X-Spaced", "a  b\tc"),
                    ("Connection", "keep-alive"), ("Expect", "100-continue"), ("If-None-Match", "W/\"1\""),
                    ("X-Obs", "caf\u{00E9}"), ("x-lower", "v"), ("X-Tokens!#$%&'*+-.^_`|~", "v"),
                    ("Authorization", "Bearer not-a-real-token"),
                ])
            )
        }
        let body = (0..<(chance(50) ? 0 : random.below(300))).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        var bodyBytes: [UInt8] = []
        switch random.below(10) {
        case 0...5:
            if !body.isEmpty || chance(50) {
                headers.insert(("Content-Length", "\(body.count)"), at: random.below(headers.count + 1))
                bodyBytes = body
            }
        default:
            headers.insert(("Transfer-Encoding", pick(["chunked", "chunked", "Chunked"])), at: headers.count)
            var rest = body[...]
            while !rest.isEmpty {
                let size = min(rest.count, random.below(120) + 1)
                let extensions = chance(15) ? pick([";a", ";a=b", ";name=value;x"]) : ""
                bodyBytes += Array((String(size, radix: 16, uppercase: chance(30)) + extensions + "\r\n").utf8)
                bodyBytes += rest.prefix(size)
                bodyBytes += Array("\r\n".utf8)
                rest = rest.dropFirst(size)
            }
            bodyBytes += Array(("0" + (chance(10) ? ";end" : "") + "\r\n").utf8)
            if chance(15) { bodyBytes += Array("Expires: never\r\nX-Trailer:\(ows())1\r\n".utf8) }
            bodyBytes += Array("\r\n".utf8)
        }
        let hasBody = !bodyBytes.isEmpty
        for (name, value) in headers {
            // No tab around a framing header's value (or Connection's): llhttp reads one as part of it, the vault refuses it.
            let framing = name == "Content-Length" || name == "Transfer-Encoding" || name == "Connection"
            func space() -> String { framing ? pick(["", " ", "  "]) : ows() }
            text += "\(name):\(space())\(value)\(value.isEmpty ? "" : space())\r\n"
        }
        text += "\r\n"
        let expected = ParsedRequests.Request(
            method: method,
            uri: uri,
            version: http10 ? "HTTP/1.0" : "HTTP/1.1",
            headers: headers.map { "\($0.0): \($0.1)" },
            body: hasBody ? body : []
        )
        let options = headers.filter { $0.0 == "Connection" }.count
        let keepAlive = options == 0 ? !http10 : options == 1
        return GeneratedRequest(bytes: Array(text.utf8) + bodyBytes, expected: expected, keepAlive: keepAlive)
    }
}
