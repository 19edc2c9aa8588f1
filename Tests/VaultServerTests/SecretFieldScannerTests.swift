import Foundation
import NIOCore
import Testing
import VaultAPI

@testable import VaultServer

/// Secret members are taken out of a request body, raw bytes to `SecretInput`, before `JSONDecoder` sees the rest.
@Suite struct SecretFieldScannerTests {
    static let canary = "CANARY-scan-5d1e"

    static func text(_ input: SecretInput?) -> String? {
        input.map { $0.withUnsafeBytes { String(decoding: $0, as: UTF8.self) } }
    }

    /// Extracts from `json` and returns the values and what is left of the body.
    static func extract(_ json: String) throws -> ([String: SecretInput], String) {
        var bytes = Array(json.utf8)
        let found = try bytes.withUnsafeMutableBytes { try SecretFieldScanner.extract($0) }
        return (found, String(decoding: bytes, as: UTF8.self))
    }

    @Test func resetMembersAtTheTopLevelAreTakenOutAndBlanked() throws {
        let (found, rest) = try Self.extract(#"{"client_id":"fake-id","client_secret":"\#(Self.canary)"}"#)
        #expect(Self.text(found["client_secret"]) == Self.canary)
        #expect(Self.text(found["client_id"]) == "fake-id")
        #expect(!rest.contains(Self.canary) && !rest.contains("fake-id"))
        #expect(rest.hasPrefix(#"{"client_id":"       ","client_secret":""#))
    }

    @Test func membersOfSecretsAreTakenOutAndTheRestIsLeftAlone() throws {
        let json = #"""
            {"id":"a","provider":"personio-v2","settings":{"client_secret":"not-a-secret-here"},
             "secrets": {"client_secret" : "\#(Self.canary)", "webhook_token":"CANARY-hook"},"grants":{"uids":[1,2.5e3]}}
            """#
        let (found, rest) = try Self.extract(json)
        #expect(Set(found.keys) == ["secrets.client_secret", "secrets.webhook_token"])
        #expect(Self.text(found["secrets.client_secret"]) == Self.canary)
        #expect(!rest.contains(Self.canary) && !rest.contains("CANARY-hook"))
        // Only the secrets object's members, not a look-alike elsewhere.
        #expect(rest.contains("not-a-secret-here"))
        #expect(rest.utf8.count == json.utf8.count)
    }

    @Test func escapesAreUnescapedStraightIntoTheSecret() throws {
        let escaped = #"\u0043ANARY-\"q\"\\\/\n-\u00e9-\ud83d\ude00"#
        let (found, rest) = try Self.extract(#"{"secrets":{"client_secret":"\#(escaped)"}}"#)
        #expect(Self.text(found["secrets.client_secret"]) == "CANARY-\"q\"\\/\n-é-😀")
        #expect(!rest.contains("ANARY"))
    }

    @Test func escapedMemberNamesAreRecognised() throws {
        let (found, rest) = try Self.extract(#"{"client\u005fsecret":"\#(Self.canary)"}"#)
        #expect(Self.text(found["client_secret"]) == Self.canary)
        #expect(!rest.contains(Self.canary))
    }

    @Test(arguments: [
        #"{"client_secret":"a","client_secret":"b"}"#,
        #"{"secrets":{"client_secret":"a","client_secret":"b"}}"#,
        #"{"client_secret":"unterminated}"#,
        #"{"client_secret":"bad \x escape"}"#,
        #"{"client_secret":"lone \ud800 surrogate"}"#,
        "{\"client_secret\":\"a\u{1}b\"}",
        #"{"a":01}"#,
        #"{"a":[1,]}"#,
        #"{"a":1,}"#,
        #"{"a":tru}"#,
        #"{"a":1} x"#,
        #"{"a" 1}"#,
        String(repeating: "[", count: 100) + String(repeating: "]", count: 100),
    ])
    func malformedBodiesAreRefusedWithoutDecoding(json: String) {
        #expect(throws: DecodingError.self) { try Self.extract(json) }
    }

    @Test func nonStringSecretsAreLeftForTheDecoderToRefuse() throws {
        let (found, rest) = try Self.extract(#"{"secrets":{"client_secret":42}}"#)
        #expect(found.isEmpty)
        #expect(rest == #"{"secrets":{"client_secret":42}}"#)
    }

    @Test func aDecodedRequestCarriesTheExtractedSecretsAndTheBodyKeepsNone() throws {
        let json =
            #"{"id":"a","provider":"personio-v2","secrets":{"client_id":"fake-id","client_secret":"\#(Self.canary)"}}"#
        let body = RequestBody(ByteBuffer(string: json))
        let request = try body.decode(CreateConnectionRequest.self, extractingSecrets: true)
        #expect(Self.text(request.secrets[.clientSecret]) == Self.canary)
        #expect(Self.text(request.secrets[.clientID]) == "fake-id")
        #expect(!String(decoding: body.snapshot(), as: UTF8.self).contains(Self.canary))

        let reset = RequestBody(ByteBuffer(string: #"{"client_secret":"\#(Self.canary)"}"#))
        let secrets = try reset.decode(ResetRequest.self, extractingSecrets: true)
        #expect(Self.text(secrets[.clientSecret]) == Self.canary)
    }

    @Test func unknownMembersBesideExtractedSecretsAreStillRefused() {
        let body = RequestBody(ByteBuffer(string: #"{"client_secret":"\#(Self.canary)","client_secrte":"x"}"#))
        #expect(throws: RequestDecodingError.self) { try body.decode(ResetRequest.self, extractingSecrets: true) }
    }
}
