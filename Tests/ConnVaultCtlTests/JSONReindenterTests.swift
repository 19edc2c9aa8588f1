import TestSupport
import Testing
import VaultAPI

@testable import connvaultctl

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// `list --json` prints the daemon's compact answer re-indented, not decoded and encoded again: the bytes must be
/// those `VaultJSON.encoder(pretty: true)` prints for the value, and a broken answer an error.
@Suite("Re-indenting the daemon's JSON as JSONEncoder's pretty output")
struct JSONReindenterTests {
    static func pretty(_ value: some Encodable) throws -> [UInt8] {
        Array(try VaultJSON.encoder(pretty: true).encode(value))
    }
    static func compact(_ value: some Encodable) throws -> [UInt8] { Array(try VaultJSON.encoder().encode(value)) }

    static func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    @Test("500 generated connection lists, as the daemon writes them (JSONWriter) and as JSONEncoder does")
    func generatedLists() throws {
        var views = RandomConnectionViews(seed: 0x11_57)
        for _ in 0..<500 {
            let list = views.list()
            let expected = try Self.pretty(list)
            let fromEncoder = try JSONReindenter.reindent(try Self.compact(list))
            try #require(Self.text(fromEncoder.bytes) == Self.text(expected))
            #expect(try JSONReindenter.reindent(list.jsonBytes).bytes == expected)
            #expect(fromEncoder.rootMembers.map(\.name) == ["connections"])
            #expect(fromEncoder.rootMembers.map(\.valueStart) == [UInt8(ascii: "[")])
        }
    }

    @Test("empty and nested containers, scalars at the root, and other answers of the daemon")
    func shapes() throws {
        let values: [any Encodable] = [
            ConnectionList(connections: []), [Int](), [String: Int](), [[Int]()], ["a": [String: Int]()],
            [[[1, 2], []], [[3]]], 0, -12, "text \"q\" \\ / é", true, Optional<Int>.none as Int?,
            ["x": [1.5, -0.25, 1e-7, 12_345_678.9]],
            AuditActor(uid: 0, pid: 1, comm: "connvaultctl \"x\"", unit: nil),
        ]
        for value in values {
            let compact = try Self.compact(value)
            #expect(Self.text(try JSONReindenter.reindent(compact).bytes) == Self.text(try Self.pretty(value)))
        }
    }

    @Test("whitespace between tokens is dropped")
    func whitespace() throws {
        let spaced = Array(" {\n \"a\" :\t[ 1 , { } , [ ] , \"x\" ] ,\r\n \"b\" : null } ".utf8)
        let expected = try Self.pretty(Spaced())
        #expect(Self.text(try JSONReindenter.reindent(spaced).bytes) == Self.text(expected))
    }

    struct Spaced: Encodable {
        struct Empty: Encodable {}
        enum Element: Encodable {
            case number(Int)
            case object, array
            case text(String)
            func encode(to encoder: any Encoder) throws {
                var container = encoder.singleValueContainer()
                switch self {
                case .number(let value): try container.encode(value)
                case .object: try container.encode(Empty())
                case .array: try container.encode([Int]())
                case .text(let value): try container.encode(value)
                }
            }
        }
        var a: [Element] = [.number(1), .object, .array, .text("x")]
        var b: Int? = nil
        enum CodingKeys: CodingKey { case a, b }
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(self.a, forKey: .a)
            try container.encodeNil(forKey: .b)
        }
    }

    static let malformed: [String] = [
        "", " ", "{", "}", "[", "]", "[1,]", "{\"a\":1,}", "{\"a\"}", "{\"a\" 1}", "{1:2}", "{\"a\":1]", "[1}",
        "[1 2]", "\"unterminated", "\"bad \\x escape\"", "\"\\u12\"", "\"\\u12G4\"", "\"raw \n newline\"", "tru",
        "nul", "falsey", "01", "-", "1.", "1e", "1e+", ".5", "+1", "{\"connections\":[]}x", "[] []", "\u{1}",
        String(repeating: "[", count: JSONReindenter.maximumDepth + 1)
            + String(repeating: "]", count: JSONReindenter.maximumDepth + 1),
    ]

    @Test("a malformed document is an error", arguments: malformed)
    func malformedDocument(_ text: String) {
        #expect(throws: JSONReindenter.Malformed.self) { try JSONReindenter.reindent(Array(text.utf8)) }
    }

    @Test("invalid UTF-8 is an error")
    func invalidUTF8() {
        for bytes: [UInt8] in [[0x22, 0xFF, 0x22], [0x22, 0xC3, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22]] {
            #expect(throws: JSONReindenter.Malformed.self) { try JSONReindenter.reindent(bytes) }
        }
    }

    @Test("nesting up to the limit is accepted")
    func deepNesting() throws {
        let depth = JSONReindenter.maximumDepth
        let text = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
        #expect(try JSONReindenter.reindent(Array(text.utf8)).bytes.count > 2 * depth)
    }

    static let wrongAnswers: [String] = [
        "garbage", "[]", "{}", "{\"connections\":{}}", "{\"connections\":null}", "{\"connections\":[],\"x\":1}",
        "{\"other\":[]}", "{\"connections\":[",
    ]

    @Test(
        "list --json refuses an answer that is not one list of connections: invalid_response",
        arguments: wrongAnswers
    )
    func wrongAnswer(_ text: String) {
        let response = ClientResponse(
            status: 200,
            reason: "OK",
            headers: [HeaderField("Content-Type", "application/json")],
            body: Array(text.utf8),
            keepAlive: false
        )
        #expect(throws: DaemonError(.invalidResponse, "")) {
            try Console.json(
                reindenting: response.body,
                rootMember: "connections",
                of: "ConnectionList",
                response: response,
                socketPath: "/tmp/x.sock"
            )
        }
    }
}
