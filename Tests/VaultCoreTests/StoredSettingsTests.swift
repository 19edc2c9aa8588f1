import Foundation
import TestSupport
import Testing
import VaultAPI

@testable import VaultCore

/// The stored settings are read without `JSONDecoder` when they are in the vault's own form (`StoredSettings`); the
/// value must be the decoder's, and anything else must be left to the decoder.
@Suite("Stored settings without JSONDecoder")
struct StoredSettingsTests {
    static func decoded(_ text: String) -> ConnectionSettings? {
        try? VaultJSON.decoder().decode(ConnectionSettings.self, from: Data(text.utf8))
    }

    static func encoded(_ settings: ConnectionSettings) throws -> String {
        String(decoding: try VaultJSON.encoder().encode(settings), as: UTF8.self)
    }

    @Test("every form the vault writes is read, to JSONDecoder's value (3,000 generated settings)")
    func ownForm() throws {
        var views = RandomConnectionViews(seed: 0x5E77_1465)
        var samples = [ConnectionSettings(), ConnectionSettings(permissions: []), ConnectionSettings(proxyMaxBody: 0)]
        samples += [Int.min, Int.max, -1, 1024].map { ConnectionSettings(proxyMaxBody: $0) }
        samples += (0..<3_000).map { _ in views.settings() }
        for settings in samples {
            let text = try Self.encoded(settings)
            let read = StoredSettings.decode(text)
            #expect(read != nil, "not read: \(text)")
            #expect(read == Self.decoded(text), "\(text)")
            #expect(read == settings, "\(text)")
        }
    }

    @Test("a text not in the vault's form is left to JSONDecoder, or read to its value (20,000 mutations)")
    func otherForms() throws {
        var views = RandomConnectionViews(seed: 0xD1FF_E4E7)
        var generator = SeededGenerator(seed: 77)
        let insertions = [
            " ", "\n", "\"", "\\", ",", ":", "{", "}", "[", "]", "null", "0", "-", ".5", "e3", "\\u", "\\ud800",
            "\\udc00", "\\u0000", "\"app_id\":\"x\",", "\"unknown\":1,", "\"scope\":null,", "\u{01}", "é",
            "\"proxy_max_body\":1,",
        ]
        var accepted = 0
        for _ in 0..<20_000 {
            var bytes = Array(try Self.encoded(views.settings()).utf8)
            for _ in 0..<Int.random(in: 1...3, using: &generator) {
                let at = Int.random(in: 0...bytes.count, using: &generator)
                switch Int.random(in: 0..<3, using: &generator) {
                case 0 where at < bytes.count: bytes.remove(at: at)
                case 1 where at < bytes.count: bytes[at] = UInt8.random(in: 0x20..<0x7F, using: &generator)
                default: bytes.insert(contentsOf: Array(insertions.randomElement(using: &generator)!.utf8), at: at)
                }
            }
            let text = String(decoding: bytes, as: UTF8.self)
            guard let read = StoredSettings.decode(text) else { continue }
            accepted += 1
            #expect(read == Self.decoded(text), "read otherwise than JSONDecoder: \(text)")
        }
        // Some mutations keep the form (a changed letter inside a string): those are read, and compared.
        #expect(accepted > 1_000)
    }

    @Test("repeated keys, null, white space, fractions and lone surrogates go to JSONDecoder")
    func refusals() {
        for text in [
            #"{"app_id":"a","app_id":"b"}"#, #"{"app_id":null}"#, #"{ "app_id":"a"}"#, #"{"proxy_max_body":1.0}"#,
            #"{"proxy_max_body":1e3}"#, #"{"proxy_max_body":01}"#, #"{"proxy_max_body":99999999999999999999}"#,
            #"{"scope":"\ud800"}"#, #"{"scope":"\udc00x"}"#, #"{"other":"x"}"#, "{", "",
            #"{"permissions":["a",]}"#, #"{"app_id":"a"} "#, "{\"scope\":\"a\u{01}\"}",
        ] {
            #expect(StoredSettings.decode(text) == nil, "\(text)")
        }
        #expect(
            StoredSettings.decode(#"{"scope":"\ud834\udd1e \u00e9 \/ \"\\\b\f\n\r\t"}"#)?.scope
                == "𝄞 é / \"\\\u{8}\u{c}\n\r\t"
        )
    }
}
