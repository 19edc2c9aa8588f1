import Foundation
import PersonioClient
import PersonioStandIn
import TestSupport
import Testing

/// A canary client id and secret go through every path; neither may show up in an error or a log line, even when
/// the upstream echoes them.
@Suite struct SecretLeakTests {
    static let canaryID = "CANARY-client-id-51c9"
    static let canarySecret = "CANARY-secret-7f3a"
    /// Needs escaping in both a form and JSON, and has bytes outside ASCII.
    static let awkwardSecret = "CANARY secret+7f3a/\"é\""

    /// The texts a leak could hide in, in every encoding the secret travels in.
    static func forbidden(_ values: [String]) -> [String] {
        values.flatMap { value in
            [
                value,
                value.addingFormEncoding(),
                value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\""),
            ]
        }
    }

    struct Scenario: Sendable, CustomTestStringConvertible {
        var name: String
        var api: PersonioAPI
        var failure: PersonioStandIn.Failure = .none
        var wrongSecret = false
        var scope: String? = nil

        var testDescription: String { self.name }
    }

    static let scenarios: [Scenario] = [
        Scenario(name: "v2 success", api: .v2),
        Scenario(name: "v1 success", api: .v1),
        Scenario(name: "v2 wrong secret", api: .v2, wrongSecret: true),
        Scenario(name: "v1 wrong secret", api: .v1, wrongSecret: true),
        Scenario(name: "v2 rejection echoing the credentials", api: .v2, failure: .rejectEchoingCredentials),
        Scenario(name: "v1 rejection echoing the credentials", api: .v1, failure: .rejectEchoingCredentials),
        Scenario(name: "v2 invalid scope", api: .v2, scope: "personio:imaginary:read"),
        Scenario(name: "v2 server error", api: .v2, failure: .status(500)),
        Scenario(name: "v1 rate limited", api: .v1, failure: .tooManyRequests(retryAfter: 2)),
        Scenario(name: "v2 malformed", api: .v2, failure: .malformedJSON),
        Scenario(name: "v2 hang", api: .v2, failure: .hang),
        Scenario(name: "v2 oversized", api: .v2, failure: .oversizedBody(bytes: 70_000)),
    ]

    @Test(arguments: Self.scenarios, [Self.canarySecret, Self.awkwardSecret])
    func theSecretAppearsInNoErrorAndNoLogLine(scenario: Scenario, canary: String) async throws {
        // Only the hang waits out its time-out; the others get time for a loaded machine (the time-out is kept to
        // the letter, also while the cooperative pool is busy).
        let timeout: Duration = scenario.failure == .hang ? .milliseconds(400) : TimeScale.scaled(.seconds(30))
        try await withFixture(timeout: timeout) { fixture in
            fixture.standIn.register(clientID: Self.canaryID, clientSecret: canary)
            fixture.standIn.setFailure(scenario.failure)
            let credentials = fixture.credentials(
                scenario.api,
                clientID: Self.canaryID,
                clientSecret: scenario.wrongSecret ? canary + "-wrong" : canary,
                scope: scenario.scope
            )

            var texts: [String] = []
            var accessToken: String?
            do throws(PersonioAuthError) {
                let token = try await fixture.client.exchange(credentials)
                accessToken = token.accessToken
                texts += [token.description, String(describing: token), "\(credentials)"]
                try await fixture.client.revoke(token: token.accessToken, credentials: credentials)
            } catch {
                texts += [error.description, error.message, error.personioError ?? "", String(reflecting: error)]
                #expect(error.message.utf8.count <= PersonioAuthError.maximumMessageLength)
                #expect(error.message.utf8.allSatisfy { (0x20...0x7E).contains($0) })
                if scenario.failure == .rejectEchoingCredentials {
                    #expect(error.code == .credentialsRejected)
                    #expect(error.message.contains("[redacted]"))
                }
            }
            texts += fixture.logs.lines
            #expect(!fixture.logs.entries.isEmpty)

            var forbidden = Self.forbidden([canary, Self.canaryID])
            if let accessToken { forbidden.append(accessToken) }
            for text in texts {
                for value in forbidden {
                    #expect(
                        !text.contains(value),
                        "leaked into: \(text.replacingOccurrences(of: value, with: "<LEAK>"))"
                    )
                }
                #expect(!text.contains("7f3a"), "a fragment of the secret leaked")
            }
        }
    }
}

extension String {
    /// Percent-encoding as `application/x-www-form-urlencoded` bodies carry it (unreserved bytes kept).
    func addingFormEncoding() -> String {
        var result = ""
        for byte in self.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                result.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = String(byte, radix: 16, uppercase: true)
                result += "%" + (hex.count == 1 ? "0" : "") + hex
            }
        }
        return result
    }
}
