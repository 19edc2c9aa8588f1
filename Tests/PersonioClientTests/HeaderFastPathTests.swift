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
}
