import Foundation
import Logging
import NIOCore
import NIOHTTP1
import TestSupport
import Testing
import VaultAPI
import VaultCore

@testable import VaultServer

@Suite("Errors become responses at one boundary")
struct ErrorResponseTests {
    static let statuses: [(VaultError.Code, UInt)] = [
        (.badRequest, 400), (.invalidJSON, 400), (.unknownField, 400), (.invalidID, 400), (.invalidProvider, 400),
        (.invalidSetting, 400), (.missingSecret, 400), (.invalidSecret, 400), (.invalidGrant, 400),
        (.forbidden, 403), (.notAllowed, 403), (.rateLimited, 429), (.notFound, 404), (.methodNotAllowed, 405),
        (.alreadyExists, 409), (.connectionDisabled, 409), (.connectionNeedsReset, 409), (.tokenNotExportable, 409),
        (.keyFileReadOnly, 409), (.payloadTooLarge, 413), (.unsupportedMediaType, 415),
        (.upstreamRejected, 502), (.upstreamUnavailable, 503), (.upstreamError, 502), (.secretsRequired, 400),
        (.decryptionFailed, 500), (.storageFailed, 500), (.internalError, 500),
    ]

    @Test("each problem code has its status", arguments: statuses)
    func status(_ code: VaultError.Code, _ status: UInt) {
        #expect(ErrorResponse.status(for: code).code == status)
    }

    @Test("the table above covers every code, and every code is a wire code clients know by name")
    func everyCode() {
        #expect(Set(Self.statuses.map(\.0)) == Set(VaultError.Code.allCases))
        let wire: Set<ProblemCode> = [
            .badRequest, .invalidJSON, .unknownField, .invalidID, .invalidProvider, .invalidSetting, .missingSecret,
            .invalidSecret, .secretsRequired, .invalidGrant, .payloadTooLarge, .notFound, .methodNotAllowed,
            .unsupportedMediaType, .forbidden, .notAllowed, .rateLimited, .alreadyExists, .connectionDisabled,
            .connectionNeedsReset,
            .tokenNotExportable, .keyFileReadOnly, .upstreamRejected, .upstreamUnavailable, .upstreamError,
            .decryptionFailed, .storageFailed, .internalError,
        ]
        #expect(Set(VaultError.Code.allCases.map(\.problemCode)) == wire)
    }

    func problem(_ response: Response) throws -> Problem {
        #expect(response.headers["Content-Type"] == ["application/problem+json"])
        let body = try #require(response.body)
        return try VaultJSON.decoder().decode(Problem.self, from: Data(body.readableBytesView))
    }

    @Test("a vault error keeps its code and message")
    func vaultError() throws {
        let response = ErrorResponse.response(
            for: VaultError(.alreadyExists, "connection 'acme' already exists"),
            requestID: "r1",
            logger: LogCapture().logger()
        )
        #expect(response.status == .conflict)
        let problem = try self.problem(response)
        #expect(problem.code == .alreadyExists)
        #expect(problem.status == 409)
        #expect(problem.detail == "connection 'acme' already exists")
        #expect(problem.type.hasSuffix("/already_exists"))
    }

    @Test("503 always carries Retry-After, the vault's figure when it has one")
    func retryAfter() {
        let logger = LogCapture().logger()
        let given = ErrorResponse.response(
            for: VaultError(.upstreamUnavailable, "down", retryAfter: 17),
            requestID: "r",
            logger: logger
        )
        #expect(given.headers["Retry-After"] == ["17"])
        let missing = ErrorResponse.response(
            for: VaultError(.upstreamUnavailable, "down"),
            requestID: "r",
            logger: logger
        )
        #expect(missing.headers["Retry-After"] == [String(ErrorResponse.defaultRetryAfter)])
    }

    @Test("429 rate_limited carries the vault's Retry-After")
    func rateLimited() throws {
        let response = ErrorResponse.response(
            for: VaultError(.rateLimited, "too many proxied requests in flight", retryAfter: 1),
            requestID: "r",
            logger: LogCapture().logger()
        )
        #expect(response.status == .tooManyRequests)
        #expect(response.headers["Retry-After"] == ["1"])
        let problem = try self.problem(response)
        #expect(problem.code == .rateLimited)
        #expect(problem.title == "Rate limited")
    }

    @Test("405 carries Allow")
    func allow() {
        let error = HTTPError(.methodNotAllowed, "no", headers: ["Allow": "GET, POST"])
        let response = ErrorResponse.response(for: error, requestID: "r", logger: LogCapture().logger())
        #expect(response.status == .methodNotAllowed)
        #expect(response.headers["Allow"] == ["GET, POST"])
    }

    struct Unexpected: Error, CustomStringConvertible {
        var description: String { "the disk is on fire" }
    }

    @Test("an unexpected error is a generic 500 naming the request, and is logged with the request id")
    func unexpected() throws {
        let capture = LogCapture()
        var logger = capture.logger()
        logger[metadataKey: "request.id"] = "abc123"
        let response = ErrorResponse.response(for: Unexpected(), requestID: "abc123", logger: logger)
        #expect(response.status == .internalServerError)
        let problem = try self.problem(response)
        #expect(problem.code == .internalError)
        #expect(problem.detail.contains("abc123"))
        #expect(!problem.detail.contains("fire"))
        let line = try #require(capture.entries.first { $0.level == .error })
        #expect(line.metadata["request.id"] == "abc123")
        #expect(line.metadata["error"] == "the disk is on fire")
    }

    // MARK: - Decoding errors

    static let canary = "CANARY-7f3a"

    /// Decodes `json` as `T` through a request body, as a route does, and maps the failure.
    func decodingProblem<T: Decodable & Sendable>(_ type: T.Type, _ json: String) throws -> Problem {
        let body = RequestBody(ByteBuffer(string: json))
        let error = try #require(throws: RequestDecodingError.self) { try body.decode(type) }
        return try self.problem(ErrorResponse.response(for: error, requestID: "r", logger: LogCapture().logger()))
    }

    struct DecodingCase: Sendable, CustomTestStringConvertible {
        var name: String
        var json: String
        var code: ProblemCode
        var detail: String
        var testDescription: String { self.name }
    }

    static let decodingCases: [DecodingCase] = [
        DecodingCase(
            name: "type error right after the secret",
            json: #"{"id":"x","provider":"personio-v2","secrets":{"client_secret":"\#(canary)","client_id":7}}"#,
            code: .invalidJSON,
            detail: "'secrets.client_id' must be a string"
        ),
        DecodingCase(
            name: "syntax error right after the secret",
            json: #"{"id":"x","provider":"personio-v2","secrets":{"client_secret":"\#(canary)" 7}}"#,
            code: .invalidJSON,
            detail: "the body is not valid JSON"
        ),
        DecodingCase(
            name: "unterminated secret",
            json: #"{"id":"x","provider":"personio-v2","secrets":{"client_secret":"\#(canary)"#,
            code: .invalidJSON,
            detail: "the body is not valid JSON"
        ),
        DecodingCase(
            name: "secret as the unknown provider",
            json: #"{"id":"x","provider":"\#(canary)"}"#,
            code: .invalidProvider,
            detail: "provider must be one of personio-v2, personio-v1, personio-recruiting"
        ),
        DecodingCase(
            name: "grants of the wrong type after the secret",
            json:
                #"{"id":"x","provider":"personio-v2","secrets":{"client_id":"a","client_secret":"\#(canary)"},"grants":{"uids":"\#(canary)"}}"#,
            code: .invalidJSON,
            detail: "'grants.uids' must be an array"
        ),
        DecodingCase(
            name: "uid of the wrong type",
            json:
                #"{"id":"x","provider":"personio-v2","grants":{"uids":[1,"\#(canary)"]},"secrets":{"client_secret":"\#(canary)"}}"#,
            code: .invalidJSON,
            detail: "'grants.uids[1]' must be an integer"
        ),
        DecodingCase(
            // Foundation reports an out-of-range number without a coding path, so the detail cannot name the member.
            name: "negative uid",
            json:
                #"{"id":"x","provider":"personio-v2","grants":{"uids":[1,-1]},"secrets":{"client_secret":"\#(canary)"}}"#,
            code: .invalidJSON,
            detail: "the body is not valid JSON"
        ),
        DecodingCase(
            name: "missing id",
            json: #"{"provider":"personio-v2","secrets":{"client_secret":"\#(canary)"}}"#,
            code: .invalidJSON,
            detail: "member 'id' is required"
        ),
        DecodingCase(
            name: "null provider",
            json: #"{"id":"x","provider":null}"#,
            code: .invalidProvider,
            detail: "provider must be one of personio-v2, personio-v1, personio-recruiting"
        ),
        DecodingCase(
            name: "not an object",
            json: #"["\#(canary)"]"#,
            code: .invalidJSON,
            detail: "the body must be an object"
        ),
        DecodingCase(
            name: "unknown member after the secret",
            json: #"{"id":"x","provider":"personio-v2","secrets":{"client_secret":"\#(canary)"},"colour":"red"}"#,
            code: .unknownField,
            detail: "unknown field 'colour'"
        ),
        DecodingCase(
            name: "unknown nested member",
            json: #"{"id":"x","provider":"personio-v2","secrets":{"client_secret":"\#(canary)","pin":"1"}}"#,
            code: .unknownField,
            detail: "unknown field 'secrets.pin'"
        ),
    ]

    @Test(
        "a body that does not decode is a 400 naming the member and problem, never the input",
        arguments: decodingCases
    )
    func decoding(_ testCase: DecodingCase) throws {
        let problem = try self.decodingProblem(CreateConnectionRequest.self, testCase.json)
        #expect(problem.status == 400)
        #expect(problem.code == testCase.code)
        #expect(problem.detail == testCase.detail)
        #expect(!problem.detail.contains(Self.canary))
        #expect(!problem.title.contains(Self.canary))
    }

    @Test("decoding errors describe themselves as safely as they answer")
    func decodingDescription() throws {
        let body = RequestBody(
            ByteBuffer(string: #"{"id":"x","provider":"personio-v2","secrets":{"client_secret":"\#(Self.canary)" x"#)
        )
        let error = try #require(throws: RequestDecodingError.self) { try body.decode(CreateConnectionRequest.self) }
        #expect(!"\(error)".contains(Self.canary))
    }

    @Test("the body's bytes are zeroed right after a decode that holds secrets")
    func zeroing() throws {
        let body = RequestBody(ByteBuffer(string: #"{"client_id":"fake-id","client_secret":"\#(Self.canary)"}"#))
        let request = Request(
            id: RequestID.next(),
            method: .POST,
            path: "/v1/connections/x/reset",
            query: "",
            headers: [:],
            caller: Caller(uid: 0, gid: 0, pid: 1, comm: "test"),
            parameters: ["id": "x"],
            body: body,
            connectionLogger: LogCapture().logger()
        )
        let secrets = try request.decode(ResetRequest.self, containsSecrets: true)
        #expect(secrets[.clientSecret]?.count == Self.canary.utf8.count)
        let bytes = body.snapshot()
        #expect(bytes.count == body.count)
        #expect(bytes.allSatisfy { $0 == 0 })
    }

    @Test("a body without secrets is kept until the request ends")
    func notZeroedWithoutSecrets() throws {
        let body = RequestBody(ByteBuffer(string: #"{"reason":"maintenance"}"#))
        _ = try body.decode(DisableRequest.self)
        #expect(body.snapshot().contains { $0 != 0 })
    }

    @Test("names in details are printable and short")
    func printable() {
        #expect(DecodingProblem.printable("a\u{1B}[31mb\n") == "a?[31mb?")
        #expect(DecodingProblem.printable(String(repeating: "x", count: 100)).count == 65)
    }
}
